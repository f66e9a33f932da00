#!/usr/bin/env bash
# Loader mode as a cargo runner: `cargo test` of a small crate (crate/) runs each test binary inside the Unikraft
# elfloader kernels, on both the exit-code kernel (status at isa-debug-exit) and the stock kernel (never exits:
# runnerd ends the run once libtest's summary was printed and the guest stayed silent). Checks exit statuses,
# libtest's output on stdout, the failure report, test filters and the UKRUN_LOADER form of the runner.
set -euo pipefail
. "$(dirname "$0")/lib_loader.sh"

need_cargo

start_daemon runnerd

CRATE=$T/crate
cp -r "$LOADER_SRC/crate" "$CRATE"
mkdir -p "$CRATE/.cargo"
export CARGO_TARGET_DIR=$T/target
# No colour codes from libtest (its stdout is not a terminal anyway) and no backtraces in the reference run.
unset RUST_BACKTRACE RUST_TEST_THREADS CARGO_BUILD_TARGET RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
export CARGO_TERM_COLOR=never

# write_config RUNNER_TOML: .cargo/config.toml with the given runner value and a static(-pie) build.
write_config() {
	cat >"$CRATE/.cargo/config.toml" <<-TOML
		[target.x86_64-unknown-linux-gnu]
		runner = $1
		rustflags = ["-C", "target-feature=+crt-static"]
	TOML
}

# cargo_run NAME [cargo test args...]: stdout → $T/NAME.out, stderr → $T/NAME.err, status → $RC.
cargo_run() {
	local name=$1
	shift
	set +e
	(cd "$CRATE" && "$CARGO" test --offline "$@") </dev/null >"$T/$name.out" 2>"$T/$name.err"
	RC=$?
	set -e
}

# failure_block FILE: libtest's report from the first "failures:" line up to (excluding) "test result:", CRs
# dropped and the thread id that newer Rust prints in panic messages ("thread 'x' (3) panicked") removed: it
# differs between the guest and the host reference, everything else must be identical.
failure_block() {
	tr -d '\r' <"$1" | sed -n '/^failures:$/,/^test result:/p' | sed '$d' |
		sed -E "s/^(thread '[^']*') \\([0-9]+\\) panicked/\\1 panicked/"
}

# Host reference for the failure report: the same test binary run natively.
write_config '["false"]'
(cd "$CRATE" && "$CARGO" test --offline --features fail --no-run --message-format=json) \
	</dev/null >"$T/build-fail.json" 2>"$T/build-fail.err" || { cat "$T/build-fail.err" >&2; fail "cargo build failed"; }
native=$(python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
' <"$T/build-fail.json")
[[ -x $native ]] || fail "no test executable in cargo's build messages"
file -b "$native" | grep -q 'static-pie' || fail "the test binary is not static-pie: $(file -b "$native")"
set +e
"$native" >"$T/native.out" 2>"$T/native.err"
rc=$?
set -e
((rc == 101)) || fail "native reference run exited $rc, want 101"
failure_block "$T/native.out" >"$T/native.failures"
grep -q 'gamma fails on purpose' "$T/native.failures" || fail "native reference has no failure report"

# expect_last_run NAME STATE EXIT SOURCE: the newest run (the one cargo's runner just made) and its console.
expect_last_run() {
	local id
	id=$(last_run_id)
	expect_record "$id" "$2" "$3" "$4"
	[[ $(record_field "$id" mode) == loader ]] || fail "$1: run $id is not in loader mode"
	# cargo prints nothing of its own on stdout: it is ukrun's, i.e. the guest console byte for byte.
	expect_console_match "$1" "$id"
}

for kernel in "$K_EXIT" "$K_STOCK"; do
	k=$(basename "$kernel")
	k=${k#elfloader-}
	k=${k%%_*}
	# The stock kernel never exits: its runs must end through runnerd's console grace period ("console"),
	# well before this generous timeout (state done, not timeout).
	if [[ $k == stock ]]; then src=console; else src=debug-exit; fi
	log "kernel $k"
	write_config "[\"$UKRUN\", \"--timeout\", \"120\", \"--loader\", \"$kernel\"]"

	# passing tests: cargo exits 0, libtest's report on stdout.
	cargo_run "$k-ok"
	[[ $RC == 0 ]] || { cat "$T/$k-ok.err" "$T/$k-ok.out" >&2; fail "$k: cargo test exited $RC, want 0"; }
	out=$(tr -d '\r' <"$T/$k-ok.out")
	grep -qx 'running 3 tests' <<<"$out" || fail "$k-ok: no 'running 3 tests'"
	for t in alpha_thread_channel beta_tmp_file gamma_arith; do
		grep -qx "test tests::$t ... ok" <<<"$out" || fail "$k-ok: test $t did not pass"
	done
	grep -Eq '^test result: ok\. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in ' <<<"$out" ||
		fail "$k-ok: no passing summary"
	expect_last_run "$k-ok" done 0 "$src"

	# a failing test: cargo reports it, ukrun exited 101, the failure report is libtest's, unchanged.
	cargo_run "$k-fail" --features fail
	[[ $RC != 0 ]] || fail "$k: cargo test --features fail exited 0"
	grep -q 'test failed' "$T/$k-fail.err" || { cat "$T/$k-fail.err" >&2; fail "$k-fail: cargo did not report the failure"; }
	expect_last_run "$k-fail" done 101 "$src"
	out=$(tr -d '\r' <"$T/$k-fail.out")
	grep -qx 'test tests::gamma_arith ... FAILED' <<<"$out" || fail "$k-fail: gamma not reported as FAILED"
	failure_block "$T/$k-fail.out" >"$T/$k-fail.failures"
	cmp "$T/native.failures" "$T/$k-fail.failures" >&2 || {
		diff "$T/native.failures" "$T/$k-fail.failures" >&2 || true
		fail "$k-fail: the failure report differs from the host's"
	}
	want=$(tr -d '\r' <"$T/native.out" | grep '^test result: FAILED' | sed 's/finished in .*//')
	got=$(grep '^test result: FAILED' <<<"$out" | sed 's/finished in .*//')
	[[ -n $want && $got == "$want" ]] || fail "$k-fail: summary '$got', want '$want'"

	# a test filter reaches libtest: only alpha runs.
	cargo_run "$k-filter" -- alpha
	[[ $RC == 0 ]] || { cat "$T/$k-filter.err" >&2; fail "$k: cargo test -- alpha exited $RC"; }
	out=$(tr -d '\r' <"$T/$k-filter.out")
	grep -qx 'running 1 test' <<<"$out" || fail "$k-filter: not 'running 1 test'"
	grep -qx 'test tests::alpha_thread_channel ... ok' <<<"$out" || fail "$k-filter: alpha did not run"
	! grep -Eq 'beta|gamma' <<<"$out" || fail "$k-filter: filtered-out tests ran"
	grep -Eq '^test result: ok\. 1 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out;' <<<"$out" ||
		fail "$k-filter: summary"
	[[ $(record_field "$(last_run_id)" args) == *'"alpha"'* ]] || fail "$k-filter: 'alpha' is not among the run's args"
	expect_last_run "$k-filter" done 0 "$src"

	# the UKRUN_LOADER form: a plain `runner = "ukrun"` with the kernel (and timeout) from the environment.
	write_config "\"$UKRUN\""
	UKRUN_LOADER=$kernel UKRUN_TIMEOUT=120 cargo_run "$k-env" --features fail
	[[ $RC != 0 ]] || fail "$k-env: cargo test --features fail exited 0"
	expect_last_run "$k-env" done 101 "$src"
	[[ $(record_field "$(last_run_id)" loader) == $(sha256sum "$kernel" | cut -d' ' -f1) ]] ||
		fail "$k-env: the run's loader is not $kernel"
	[[ $(record_field "$(last_run_id)" timeout_s) == 120 ]] || fail "$k-env: UKRUN_TIMEOUT not applied"
	failure_block "$T/$k-env.out" | cmp - "$T/native.failures" >&2 || fail "$k-env: failure report differs"
done
