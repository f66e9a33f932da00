#!/usr/bin/env bash
# cargo-nextest's runner protocol, emulated exactly (nextest itself cannot be installed here): per binary two list
# calls `RUNNER BIN --list --format terse [--ignored]` whose stdout must be `NAME: test` lines only, LF-terminated,
# then one `RUNNER BIN --exact NAME --nocapture [--ignored]` per test with nextest's variables, and on timeout
# SIGTERM to the runner's process group, after which ukrun must exit promptly and nothing may still hold its stdout
# (nextest's "leaky" test). On linuxu, in loader mode (elfloader kernel with env.vars) and for a real Unikraft image.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd
BIN=$FX/lx_testbin
S=$UKRUN_SHARED_FIXTURES
NX=(env NEXTEST=1 NEXTEST_RUN_ID=0b5ab4e0-4f59-4c6e-9d2f-5b0a1c2d3e4f NEXTEST_BINARY_ID=ukrun-fixture::lx_testbin
	NEXTEST_EXECUTION_MODE=process-per-test)

# nx_list NAME WANT RUNNER... : both list calls; stdout must be exactly WANT (normal) and WANT_IGNORED (--ignored).
nx_list() {
	local name=$1 want=$2 want_ign=$3
	shift 3
	run_capture "$name" "${NX[@]}" "$@" --list --format terse
	expect_rc "$name" 0
	expect_out "$name" "$want"
	run_capture "$name-ign" "${NX[@]}" "$@" --list --format terse --ignored
	expect_rc "$name-ign" 0
	expect_out "$name-ign" "$want_ign"
	# What nextest checks: every line ends in ": test" or ": benchmark".
	if grep -Evq ': (test|benchmark)$' "$T/$name.out" "$T/$name-ign.out"; then fail "$name: a line nextest cannot parse"; fi
}
# nx_test NAME TEST RUNNER... : the per-test call with nextest's per-test variables.
nx_test() {
	local name=$1 test=$2
	shift 2
	run_capture "$name" "${NX[@]}" NEXTEST_TEST_NAME="$test" NEXTEST_ATTEMPT=1 NEXTEST_TEST_GLOBAL_SLOT=0 \
		RUST_BACKTRACE=1 "$@" --exact "$test" --nocapture
}
# nx_timeout NAME RUNNER... : tests::hang in its own process group; once it printed "hanging", SIGTERM to the group
# as nextest's timeout does. ukrun must exit and its stdout reach EOF (no process left holding it) within the
# bounds, and the guest is gone (lib.sh's cleanup fails the test on any leftover process naming $T).
nx_timeout() {
	local name=$1
	shift
	"${NX[@]}" NEXTEST_TEST_NAME=tests::hang NEXTEST_ATTEMPT=1 NEXTEST_TEST_GLOBAL_SLOT=1 "$PYTHON" - "$@" \
		--exact tests::hang --nocapture >"$T/$name.py" 2>"$T/$name.err" <<'PY' || { cat "$T/$name.err" >&2; fail "$name: $(cat "$T/$name.py")"; }
import os, select, signal, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
out = b""
deadline = time.monotonic() + 120
while b"hanging" not in out:
    if time.monotonic() > deadline or p.poll() is not None:
        print("never printed 'hanging': %r" % out); sys.exit(1)
    if select.select([p.stdout], [], [], 1)[0]:
        out += os.read(p.stdout.fileno(), 4096)
os.killpg(p.pid, signal.SIGTERM)
# EOF on stdout: every writer is gone (ukrun and anything it might have left behind).
deadline = time.monotonic() + 30
while True:
    if time.monotonic() > deadline:
        print("stdout still held open 30 s after SIGTERM"); sys.exit(1)
    if select.select([p.stdout], [], [], 1)[0]:
        if not os.read(p.stdout.fileno(), 4096):
            break
try:
    rc = p.wait(timeout=30)
except subprocess.TimeoutExpired:
    print("ukrun still running 30 s after SIGTERM"); sys.exit(1)
print("rc=%d" % rc)
PY
	grep -qx 'rc=130' "$T/$name.py" || fail "$name: ukrun after SIGTERM: $(cat "$T/$name.py")"
	local id
	id=$(last_run_id)
	wait_state "$id" cancelled 30
}

env_want() {
	printf '%s\n' NEXTEST=1 NEXTEST_RUN_ID=0b5ab4e0-4f59-4c6e-9d2f-5b0a1c2d3e4f NEXTEST_BINARY_ID=ukrun-fixture::lx_testbin \
		NEXTEST_EXECUTION_MODE=process-per-test NEXTEST_TEST_NAME=tests::env_check NEXTEST_ATTEMPT=1 \
		NEXTEST_TEST_GLOBAL_SLOT=0 RUST_BACKTRACE=1
}

# 1. linuxu: the list in both calls, the per-test run sees nextest's variables, SIGTERM ends it at once.
nx_list lx $'tests::env_check: test\ntests::hang: test\n' $'tests::ignored_one: test\n' "$UKRUN" "$BIN"
nx_test lx-env tests::env_check "$UKRUN" "$BIN"
expect_rc lx-env 0
expect_out lx-env "$(env_want)"$'\n'
nx_test lx-ign tests::ignored_one "$UKRUN" "$BIN" --ignored
expect_rc lx-ign 0
nx_timeout lx-term "$UKRUN" "$BIN"

# 2. loader mode: the same program as static-pie inside the env-capable elfloader kernel; its console lines end
# in CR LF and start with the kernel's banner, which the list request's app view removes.
K_ENV=${S:+$S/elfloader/elfloader-exitcode-env_qemu-x86_64}
if [[ -n $S && -f $K_ENV ]] && command -v gcc >/dev/null &&
	gcc -static-pie -O2 -o "$T/lx_testbin" "$(dirname "$0")/../fixtures/lx/lx_testbin.c" 2>"$T/gcc.err"; then
	nx_list ld $'tests::env_check: test\ntests::hang: test\n' $'tests::ignored_one: test\n' \
		"$UKRUN" --loader "$K_ENV" "$T/lx_testbin"
	# Raw stays the default outside list requests (and can be asked for): the banner and CR LF are there.
	run_ukrun ld-raw --console raw --loader "$K_ENV" "$T/lx_testbin" --list --format terse
	grep -q $'^Powered by Unikraft.*\r$' "$T/ld-raw.out" || fail "ld-raw: --console raw lost the kernel's banner"
	nx_test ld-env tests::env_check "$UKRUN" --loader "$K_ENV" "$T/lx_testbin"
	expect_rc ld-env 0
	tr -d '\r' <"$T/ld-env.out" | grep -v '^Powered by' >"$T/ld-env.lf"
	[[ $(cat "$T/ld-env.lf") == "$(env_want)" ]] || { cat "$T/ld-env.out" >&2; fail "ld-env: the variables in loader mode"; }
	nx_timeout ld-term "$UKRUN" --loader "$K_ENV" "$T/lx_testbin"
else
	log "SKIP loader mode: no env-capable elfloader kernel or no gcc -static-pie ($(head -c 200 "$T/gcc.err" 2>/dev/null))"
fi

# 3. a real Unikraft image: a list request gets the program's lines only (no banner, no CR), LF-terminated; the
# image has no env.vars parameter, which one note in the run record says (under nextest ukrun prints notes only
# with -v).
if [[ -n $S && -f $S/helloworld_qemu-x86_64-norng ]]; then
	run_capture uk "${NX[@]}" "$UKRUN" "$S/helloworld_qemu-x86_64-norng" --list --format terse
	expect_rc uk 0
	expect_out uk $'Hello world!\nArguments:  "helloworld_qemu-x86_64-norng" "--list" "--format" "terse"\n'
	grep -q 'cannot take an environment' "$T/uk.err" && { cat "$T/uk.err" >&2; fail "uk: a note on stderr under nextest without -v"; }
	[[ $(sql "SELECT count(*) FROM run_notes WHERE run_id = $(last_run_id) AND message LIKE '%cannot take an environment%'") == 1 ]] ||
		fail "uk: not one environment note in the run record"
	run_ukrun uk-raw "$S/helloworld_qemu-x86_64-norng" --list
	grep -q $'^Powered by\r$' "$T/uk-raw.out" && fail "uk-raw: a list request is not in the app view by default"
	run_ukrun uk-raw2 --console raw "$S/helloworld_qemu-x86_64-norng" --list
	grep -q $'^Powered by\r$' "$T/uk-raw2.out" || fail "uk-raw2: --console raw lost the banner"
	if [[ -f $S/helloworld_linuxu-x86_64 ]]; then
		# Unikraft linuxu image: it still gets its pseudo-terminal (else it exits 1), LF already.
		run_capture uklx "${NX[@]}" "$UKRUN" "$S/helloworld_linuxu-x86_64" --list --format terse
		expect_rc uklx 0
		expect_out uklx $'Hello world!\nArguments:  "helloworld_linuxu-x86_64" "--list" "--format" "terse"\n'
	fi
else
	log "SKIP Unikraft image: $S/helloworld_qemu-x86_64-norng is absent"
fi
