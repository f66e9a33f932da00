#!/usr/bin/env bash
# ukrun as a cargo runner for the host target (linuxu): `cargo run` passes stdout and the exit status through,
# `cargo test` passes or fails with libtest's own output, and libtest's arguments (a name filter) reach the binary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_cargo
command -v rustc >/dev/null || skip "rustc not found beside $CARGO"
command -v bwrap >/dev/null || skip "bubblewrap (bwrap) is not installed"
# +crt-static on the gnu target links glibc statically (libc.a from libc6-dev).
[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || skip "no static glibc (libc.a): cannot link +crt-static binaries"

# mktemp made $T 0700: a root daemon runs programs as uids of their own, which must reach the crate.
chmod 755 "$T"
start_daemon runnerd

cp -r "$(dirname "$0")/cargo-crate" "$T/crate"
mkdir -p "$T/crate/.cargo"
cat >"$T/crate/.cargo/config.toml" <<TOML
[target.x86_64-unknown-linux-gnu]
runner = ["$UKRUN", "--platform", "linuxu"]
rustflags = ["-C", "target-feature=+crt-static"]
TOML
export CARGO_TARGET_DIR=$T/target CARGO_TERM_COLOR=never
cd "$T/crate"

# cargo_run NAME [cargo args...]: stdout → $T/NAME.out, stderr → $T/NAME.err, status → $RC.
cargo_run() {
	run_capture "$1" "$CARGO" "${@:2}"
}

cargo_run run run --offline -q -- a 'b c' 7
expect_rc run 7
expect_out run $'arg 1: a\narg 2: b c\narg 3: 7\nexiting with 7\n'
id=$(last_run_id)
expect_record "$id" done 7 process
[[ $(sql "SELECT platform FROM runs WHERE id = $id") == linuxu ]] || fail "cargo run did not run on linuxu"

cargo_run run0 run --offline -q
expect_rc run0 0
expect_out run0 $'exiting with 0\n'

cargo_run test test --offline
expect_rc test 0
grep -q '^running 3 tests$' "$T/test.out" || { cat "$T/test.out" >&2; fail "cargo test: not 3 tests"; }
grep -q '^test result: ok. 3 passed; 0 failed' "$T/test.out" || { cat "$T/test.out" >&2; fail "cargo test: no passing summary"; }
id=$(last_run_id)
expect_record "$id" done 0 "$(sql "SELECT exit_source FROM runs WHERE id = $id")"
api GET "/v1/runs/$id/tests"
[[ $(jget summary.ok <<<"$API_BODY") == 3 ]] || fail "the passing test run's parsed cases: $API_BODY"

cargo_run fail test --offline --features fail
[[ $RC != 0 ]] || fail "cargo test --features fail succeeded"
grep -q '^test result: FAILED. 2 passed; 1 failed' "$T/fail.out" || { cat "$T/fail.out" "$T/fail.err" >&2; fail "cargo test --features fail: no FAILED summary on stdout"; }
grep -q '^test tests::gamma_checks_feature ... FAILED$' "$T/fail.out" || fail "the failing test is not reported"
id=$(last_run_id)
expect_record "$id" done 101 process
api GET "/v1/runs/$id/tests"
cases=$(jget cases <<<"$API_BODY" | "$PYTHON" -c 'import json,sys; print(" ".join(c["name"] + "=" + c["outcome"] for c in json.load(sys.stdin)))')
[[ $cases == *"tests::gamma_checks_feature=failed"* && $cases == *"tests::alpha_adds=ok"* ]] ||
	fail "parsed test cases: '$cases'"

cargo_run filter test --offline -- alpha
expect_rc filter 0
grep -q '^running 1 test$' "$T/filter.out" || { cat "$T/filter.out" >&2; fail "filter: not exactly one test ran"; }
grep -q '^test tests::alpha_adds ... ok$' "$T/filter.out" || fail "filter: alpha_adds did not run"
grep -q 'beta\|gamma' "$T/filter.out" && fail "filter: a non-matching test ran"
grep -q '2 filtered out' "$T/filter.out" || fail "filter: libtest does not report 2 filtered out"
[[ $(sql "SELECT group_concat(value, ' ') FROM (SELECT value FROM run_args WHERE run_id = $(last_run_id) AND kind = 'arg' ORDER BY pos)") == alpha ]] ||
	fail "the filter is not the run's only argument"

# ---- tests that touch their surroundings behave as natively (tests/native.rs) ----
# The same test binary natively and under ukrun, in libtest's pretty, terse and JSON formats and with
# --nocapture: stdout, stderr and the exit status compared separately, after only the timings (and a panicking
# thread's id) are masked. Its
# tests read a fixture file (relative to the package directory, and by CARGO_MANIFEST_DIR), check a variable
# (passed with UKRUN_ENV, as a user would) and RUST_BACKTRACE=1 (the failing test's backtrace), write to stderr,
# read stdin, and fail with a panic.
cargo_run native_build test --offline --features native --test native --no-run
expect_rc native_build 0
bin=$(sed -n 's/^ *Executable tests\/native.rs (\(.*\))$/\1/p' "$T/native_build.err")
[[ -n $bin ]] || { cat "$T/native_build.err" >&2; fail "no native test executable in cargo's output"; }
[[ $bin == /* ]] || bin=$T/crate/$bin

# same NAME ARGS...: one native run and one ukrun run of $bin ARGS (stdin "hello from stdin"), compared.
same() {
	local name=$1 how
	shift
	for how in native ukrun; do
		local runner=()
		[[ $how == ukrun ]] && runner=("$UKRUN" -q)
		set +e
		printf 'hello from stdin\n' | env UKRUN_IT_VALUE=42 UKRUN_ENV=UKRUN_IT_VALUE RUST_BACKTRACE=1 \
			RUSTC_BOOTSTRAP=1 CARGO_MANIFEST_DIR="$T/crate" "${runner[@]}" "$bin" --test-threads 1 "$@" \
			>"$T/$name.$how.out" 2>"$T/$name.$how.err"
		echo "$?" >"$T/$name.$how.rc"
		set -e
		# Masked: timings, and the thread id in a panic message (the sandbox has a pid namespace of its own).
		sed -i -E 's/finished in [0-9.]+s/finished in Xs/; s/"exec_time": ?[0-9.e-]+/"exec_time": X/;
			s/thread '"'"'([^'"'"']*)'"'"' \([0-9]+\) panicked/thread '"'"'\1'"'"' (N) panicked/g' \
			"$T/$name.$how.out" "$T/$name.$how.err"
	done
	local f
	for f in rc out err; do
		cmp -s "$T/$name.native.$f" "$T/$name.ukrun.$f" || {
			diff "$T/$name.native.$f" "$T/$name.ukrun.$f" | head -40 >&2
			fail "$name: ukrun's $f differs from the native run's"
		}
	done
	[[ $(cat "$T/$name.native.rc") == 101 ]] || { cat "$T/$name.native.out" >&2; fail "$name: native exit $(cat "$T/$name.native.rc"), want 101"; }
}
cd "$T/crate"
same pretty
grep -q '^test reads_fixture \.\.\. ok$' "$T/pretty.ukrun.out" || fail "pretty: reads_fixture did not pass"
grep -q '^test reads_stdin \.\.\. ok$' "$T/pretty.ukrun.out" || fail "pretty: reads_stdin did not pass"
grep -q '^test checks_env \.\.\. ok$' "$T/pretty.ukrun.out" || fail "pretty: checks_env did not pass"
grep -q "deliberate failure: answer 42" "$T/pretty.ukrun.out" || fail "pretty: no panic message"
grep -q '^stack backtrace:' "$T/pretty.ukrun.out" || fail "pretty: RUST_BACKTRACE=1 shows no backtrace"
grep -q '^test result: FAILED. 4 passed; 1 failed' "$T/pretty.ukrun.out" || fail "pretty: summary"
native_id=$(last_run_id)
same terse -q
same json -Z unstable-options --format json
grep -q '"name": *"reads_stdin"' "$T/json.ukrun.out" || fail "json: no event for reads_stdin"
same nocapture --nocapture
grep -q '^a line on stderr$' "$T/nocapture.ukrun.err" || fail "nocapture: the test's stderr is not on ukrun's stderr"
! grep -q 'a line on stderr' "$T/nocapture.ukrun.out" || fail "nocapture: the test's stderr is on ukrun's stdout"
grep -q 'deliberate failure: answer 42' "$T/nocapture.ukrun.err" || fail "nocapture: the panic message is not on stderr"

# The run records the failed test with its panic message.
run_ukrun native_tests tests --json "$native_id"
expect_rc native_tests 0
"$PYTHON" - "$T/native_tests.out" <<'PY' || fail "ukrun tests: $(cat "$T/native_tests.out")"
import json, sys
d = json.load(open(sys.argv[1]))
c = {x["name"]: x for x in d["cases"]}
assert c["fails_with_panic"]["outcome"] == "failed", c
assert "deliberate failure: answer 42" in json.dumps(c["fails_with_panic"]), c["fails_with_panic"]
assert all(c[n]["outcome"] == "ok" for n in ("reads_fixture", "reads_stdin", "checks_env", "writes_stderr")), c
PY

# And through cargo itself, as the runner (cargo sets the directory and CARGO_MANIFEST_DIR).
set +e
printf 'hello from stdin\n' | UKRUN_IT_VALUE=42 UKRUN_ENV=UKRUN_IT_VALUE RUST_BACKTRACE=1 \
	"$CARGO" test --offline --features native --test native -- --test-threads 1 >"$T/cargo_native.out" 2>"$T/cargo_native.err"
RC=$?
set -e
expect_rc cargo_native 101
grep -q '^test result: FAILED. 4 passed; 1 failed' "$T/cargo_native.out" || fail "cargo test (native): $(cat "$T/cargo_native.out")"
log "ok"
