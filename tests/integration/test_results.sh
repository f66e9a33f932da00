#!/usr/bin/env bash
# Per-test results (issue 8 item 3) from real programs: a Rust test binary in pretty and terse output, the same
# binary aborting in the middle of its run, libtest JSON output, and the real uktest Unikraft image. Each run's
# cases with their panic messages through `ukrun tests ID [--json]`, and JUnit XML from `--junit FILE` and
# `ukrun tests ID --junit FILE`, validated against tests/fixtures/junit/junit.xsd with xmllint.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

XSD=$(cd "$(dirname "$0")/../fixtures/junit" && pwd)/junit.xsd
command -v xmllint >/dev/null || skip "xmllint (libxml2-utils) is not installed"

# validate FILE: a JUnit report that the schema accepts.
validate() {
	xmllint --noout --schema "$XSD" "$1" 2>"$T/xmllint.err" || { cat "$T/xmllint.err" "$1" >&2; fail "$1 does not validate"; }
}

# case_field JSON NAME FIELD: FIELD of the case called NAME in a GET /tests document.
case_field() {
	"$PYTHON" -c '
import json, sys
d = json.loads(sys.argv[1])
c = [c for c in d["cases"] if c["name"] == sys.argv[2]]
print(c[0].get(sys.argv[3]) or "" if c else "<no such case>")
' "$1" "$2" "$3"
}

# xpath FILE EXPR: a string XPath of a report.
xpath() {
	xmllint --xpath "$2" "$1" 2>/dev/null || true
}

start_daemon runnerd
export UKRUN_SOCKET=$T/runnerd.sock

FAILS_EQ_MSG=$'assertion `left == right` failed: math is broken\n  left: 2\n right: 3'

# ---- libtest JSON (a musl program printing a real test binary's --format json output) ----
run_ukrun json --platform linuxu --junit "$T/json.xml" "$FX/lx_libtest_json"
expect_rc json 101
id=$(last_run_id)
api GET "/v1/runs/$id/tests"
[[ $(jget framework <<<"$API_BODY") == libtest && $(jget summary.failed <<<"$API_BODY") == 2 &&
	$(jget summary.ok <<<"$API_BODY") == 1 && $(jget summary.ignored <<<"$API_BODY") == 1 ]] ||
	fail "json: parsed tests: $API_BODY"
[[ $(case_field "$API_BODY" tests::fails_eq message) == "$FAILS_EQ_MSG" ]] || fail "json: fails_eq message: $API_BODY"
[[ $(case_field "$API_BODY" tests::fails_eq location) == src/lib.rs:11:9 ]] || fail "json: fails_eq location"
[[ $(case_field "$API_BODY" tests::fails_eq output) == "about to compare"* ]] || fail "json: fails_eq output"
validate "$T/json.xml"
[[ $(xpath "$T/json.xml" 'string(//testcase[@name="fails_eq"]/failure/@message)') == "$FAILS_EQ_MSG" ]] ||
	fail "json.xml: no failure message for fails_eq"
[[ $(xpath "$T/json.xml" 'string(//testcase[@name="fails_eq"]/@classname)') == tests ]] || fail "json.xml: classname"
[[ $(xpath "$T/json.xml" 'count(//testcase[@name="skipped"]/skipped)') == 1 ]] || fail "json.xml: skipped"
[[ $(xpath "$T/json.xml" 'string(//testsuite/@failures)') == 2 ]] || fail "json.xml: failures count"

# `ukrun tests` table: every case, the panic message under each failed one.
run_ukrun table tests "$id"
expect_rc table 0
grep -q '^FAILED   tests::fails_eq' "$T/table.out" || { cat "$T/table.out" >&2; fail "table: no FAILED fails_eq"; }
grep -q '^         assertion `left == right` failed: math is broken$' "$T/table.out" || fail "table: no message"
grep -q '^         boom$' "$T/table.out" || fail "table: no panics_plain message"
grep -q '^ignored  tests::skipped' "$T/table.out" || fail "table: no ignored case"
grep -q '^libtest: 1 ok, 2 failed, 1 ignored (4 tests)$' "$T/table.out" || fail "table: summary line"
run_ukrun tjson tests --json "$id"
expect_rc tjson 0
[[ $(jget summary.total <"$T/tjson.out") == 4 ]] || fail "tests --json: $(cat "$T/tjson.out")"
run_ukrun nosuch tests 999999
expect_rc nosuch 1
run_ukrun noid tests --json
expect_rc noid 2
run_ukrun nofile tests "$id" --junit
expect_rc nofile 2
run_ukrun badjunit --platform linuxu --junit "$T/no/such/dir/r.xml" "$FX/lx_libtest_json"
expect_rc badjunit 101 # a failing run keeps its status when the report cannot be written
expect_err_grep badjunit "--junit: cannot write '$T/no/such/dir/r.xml'"

# ---- a panic=abort test run crashing a guest (qemu): the running test crashed, the rest not run ----
run_ukrun mbabort --junit "$T/mbabort.xml" "$FX/mb_libtest_abort"
expect_rc mbabort 134
id=$(last_run_id)
api GET "/v1/runs/$id/tests"
[[ $(case_field "$API_BODY" tests::alpha outcome) == ok && $(case_field "$API_BODY" tests::beta outcome) == crashed ]] ||
	fail "mbabort: outcomes: $API_BODY"
[[ $(case_field "$API_BODY" tests::beta message) == "beta broke" &&
	$(case_field "$API_BODY" tests::beta location) == src/lib.rs:9:5 ]] || fail "mbabort: beta's panic: $API_BODY"
[[ $(jget summary.not_run <<<"$API_BODY") == 1 && $(jget summary.total <<<"$API_BODY") == 3 &&
	$(jget summary.crashed_in <<<"$API_BODY") == tests::beta ]] || fail "mbabort: summary: $API_BODY"
validate "$T/mbabort.xml"
[[ $(xpath "$T/mbabort.xml" 'string(//testcase[@name="beta"]/error/@message)') == "beta broke" ]] ||
	fail "mbabort.xml: beta's <error>"

# ---- a real Rust test binary (linuxu): pretty, terse, and aborting mid-run ----
rust_part() {
	need_cargo
	command -v bwrap >/dev/null || { log "skipping the Rust part: bubblewrap is not installed"; return; }
	[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || { log "skipping the Rust part: no static glibc"; return; }
	cp -r "$(dirname "$0")/results-crate" "$T/crate"
	export CARGO_TARGET_DIR=$T/target CARGO_TERM_COLOR=never RUSTFLAGS="-C target-feature=+crt-static"
	local bin abin
	bin=$(cd "$T/crate" && "$CARGO" test --offline -q --no-run --message-format=json 2>/dev/null |
		"$PYTHON" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][0])')
	abin=$(cd "$T/crate" && "$CARGO" test --offline -q --no-run --features abort --message-format=json 2>/dev/null |
		"$PYTHON" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][0])')
	[[ -x $bin && -x $abin ]] || fail "the results crate did not build"

	local mode
	for mode in pretty terse; do
		local extra=()
		[[ $mode == terse ]] && extra=(-q)
		run_ukrun "$mode" --platform linuxu --junit "$T/$mode.xml" "$bin" --test-threads=1 "${extra[@]}"
		expect_rc "$mode" 101
		id=$(last_run_id)
		api GET "/v1/runs/$id/tests"
		[[ $(case_field "$API_BODY" tests::fails_eq message) == "$FAILS_EQ_MSG" ]] ||
			fail "$mode: fails_eq message: $API_BODY"
		[[ $(case_field "$API_BODY" tests::panics_plain message) == boom &&
			$(case_field "$API_BODY" tests::panics_plain location) == src/lib.rs:* ]] ||
			fail "$mode: panics_plain message/location: $API_BODY"
		[[ $(case_field "$API_BODY" tests::fails_eq output) == "about to compare"* ]] || fail "$mode: fails_eq output"
		[[ $(jget summary.failed <<<"$API_BODY") == 2 ]] || fail "$mode: summary: $API_BODY"
		validate "$T/$mode.xml"
		[[ $(xpath "$T/$mode.xml" 'string(//testcase[@name="panics_plain"]/failure/@message)') == boom ]] ||
			fail "$mode.xml: panics_plain failure message"
		[[ $(xpath "$T/$mode.xml" 'string(//testcase[@name="fails_eq"]/system-out)') == *"about to compare"* ]] ||
			fail "$mode.xml: fails_eq system-out"
	done
	# pretty names every case; terse only the failed ones
	[[ $(xpath "$T/pretty.xml" 'count(//testcase)') == 4 ]] || fail "pretty.xml: not 4 test cases"

	run_ukrun abort --platform linuxu --junit "$T/abort.xml" "$abin" --test-threads=1
	expect_rc abort 134
	id=$(last_run_id)
	api GET "/v1/runs/$id/tests"
	[[ $(case_field "$API_BODY" tests::m_aborts outcome) == crashed ]] || fail "abort: m_aborts not crashed: $API_BODY"
	[[ $(case_field "$API_BODY" tests::fails_eq outcome) == failed ]] || fail "abort: fails_eq not failed"
	[[ $(jget summary.not_run <<<"$API_BODY") == 3 && $(jget summary.crashed_in <<<"$API_BODY") == tests::m_aborts ]] ||
		fail "abort: summary: $API_BODY"
	run_ukrun atable tests "$id"
	grep -q '^CRASHED  tests::m_aborts' "$T/atable.out" || { cat "$T/atable.out" >&2; fail "abort table: no CRASHED"; }
	grep -q '3 not run (5 tests); the run crashed during tests::m_aborts, the tests after it did not run$' \
		"$T/atable.out" || fail "abort table: the summary does not say the run crashed"
	validate "$T/abort.xml"
	[[ $(xpath "$T/abort.xml" 'string(//testcase[@name="m_aborts"]/error/@type)') == crash ]] ||
		fail "abort.xml: m_aborts has no <error type=crash>"
	# the same report again, from the stored run
	run_ukrun again tests --junit "$T/again.xml" "$id"
	expect_rc again 0
	validate "$T/again.xml"
	cmp -s "$T/abort.xml" "$T/again.xml" || fail "tests --junit differs from the run's --junit"
}
rust_part

# ---- the real uktest image (qemu, TCG) ----
S=$UKRUN_SHARED_FIXTURES
if [[ -n $S && -f $S/uktest_qemu-x86_64-norng ]]; then
	run_ukrun uk --accel tcg --junit "$T/uk.xml" "$S/uktest_qemu-x86_64-norng"
	expect_rc uk 101
	id=$(last_run_id)
	expect_record "$id" done 101 console
	[[ $(sql "SELECT reason FROM runs WHERE id = $id") == *"uktest reported 1 failed case of 11"* ]] ||
		fail "uktest: reason: $(sql "SELECT reason FROM runs WHERE id = $id")"
	api GET "/v1/runs/$id/tests"
	[[ $(jget framework <<<"$API_BODY") == uktest && $(jget summary.total <<<"$API_BODY") == 11 &&
		$(jget summary.failed <<<"$API_BODY") == 1 ]] || fail "uktest: parsed tests: $API_BODY"
	[[ $(case_field "$API_BODY" 'ukrun_demo->fails_on_purpose' message) == 'expected `1 + 1` to be 3 but was 2' &&
		$(case_field "$API_BODY" 'ukrun_demo->fails_on_purpose' location) == tests.c:18 ]] ||
		fail "uktest: fails_on_purpose: $API_BODY"
	[[ $(case_field "$API_BODY" 'ukrun_demo->adds' outcome) == ok ]] || fail "uktest: adds not ok"
	validate "$T/uk.xml"
	[[ $(xpath "$T/uk.xml" 'string(//testcase[@classname="ukrun_demo"][@name="fails_on_purpose"]/failure/@message)') == \
		'expected `1 + 1` to be 3 but was 2' ]] || fail "uk.xml: no failure for ukrun_demo fails_on_purpose"
else
	log "skipping the uktest image part: ${S:-UKRUN_SHARED_FIXTURES}/uktest_qemu-x86_64-norng is absent"
fi
