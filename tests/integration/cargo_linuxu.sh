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
