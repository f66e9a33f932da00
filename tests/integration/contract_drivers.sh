#!/usr/bin/env bash
# One contract across drivers (DESIGN §4): the same fixture on the qemu driver and on the libvirt driver (local
# qemu:///system), and its musl twin on linuxu, gives the same ukrun exit code, the same console bytes on stdout and
# the same parsed test results — except where a driver cannot know, and then it reports the documented code with an
# exit_source saying so (libvirt never sees the isa-debug-exit value: 1, debug-exit-unknown). docs/design.md has
# the table of what each driver can and cannot know.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_libvirt.sh"

start_daemon runnerd
grep -q 'driver libvirt: libvirt' "$T/runnerd.log" || { cat "$T/runnerd.log" >&2; fail "the libvirt driver did not probe"; }

# tests_of RUN_ID: the parsed test cases as "name=outcome ..." in the order the run printed them.
tests_of() {
	api GET "/v1/runs/$1/tests"
	[[ $HTTP_STATUS == 200 ]] || fail "GET /v1/runs/$1/tests: HTTP $HTTP_STATUS"
	jget cases <<<"$API_BODY" | "$PYTHON" -c 'import json, sys; print(" ".join(c["name"] + "=" + c["outcome"] for c in json.load(sys.stdin)))'
}

# on NAME WANT PLATFORM/DRIVER [ukrun args...]: one run; WANT is "exit_code/exit_source", where the source may
# list alternatives ("0/console|lifecycle": a clean power-off racing the end of the test summary on the console).
on() {
	local name=$1 want=$2 pd=$3 got
	shift 3
	run_ukrun "$name" "$@"
	expect_rc "$name" "${want%%/*}"
	RUN_ID=$(last_run_id)
	got=$(sql "SELECT state || '|' || exit_code || '|' || exit_source || '|' || platform || '/' || driver FROM runs WHERE id = $RUN_ID")
	[[ $got =~ ^done\|${want%%/*}\|(${want#*/})\|$pd$ ]] || fail "$name: record '$got', want done|${want%%/*}|${want#*/}|$pd"
}

# contract NAME KERNEL TWIN QEMU LIBVIRT LINUXU [args...]: each of QEMU/LIBVIRT/LINUXU is the expected
# "exit_code/exit_source" on that driver, or "-" when the row does not apply (no twin). The console bytes and the
# test results of every driver that ran must equal those of the qemu run.
contract() {
	local name=$1 kernel=$2 twin=$3 want_q=$4 want_l=$5 want_x=$6
	shift 6
	on "$name.qemu" "$want_q" qemu/qemu "$FX/$kernel" "$@"
	local tq
	tq=$(tests_of "$RUN_ID")
	if [[ $want_l != - ]]; then
		on "$name.libvirt" "$want_l" qemu/libvirt --driver libvirt "$FX/$kernel" "$@"
		cmp "$T/$name.qemu.out" "$T/$name.libvirt.out" || fail "$name: console differs between qemu and libvirt"
		[[ $(tests_of "$RUN_ID") == "$tq" ]] || fail "$name: test results differ: qemu '$tq', libvirt '$(tests_of "$RUN_ID")'"
	fi
	if [[ $want_x != - ]]; then
		on "$name.linuxu" "$want_x" linuxu/linuxu "$FX/$twin" "$@"
		cmp "$T/$name.qemu.out" "$T/$name.linuxu.out" || fail "$name: console differs between qemu and linuxu"
		[[ $(tests_of "$RUN_ID") == "$tq" ]] || fail "$name: test results differ: qemu '$tq', linuxu '$(tests_of "$RUN_ID")'"
	fi
	log "$name: same contract on qemu ($want_q), libvirt ($want_l), linuxu ($want_x)"
}

#        name        kernel       twin           qemu              libvirt                 linuxu
contract echo        mb_echo      lx_echo        0/lifecycle       0/lifecycle             0/process        foo bar
expect_out echo.qemu $'arg[1]: foo\narg[2]: bar\n'
contract exit3       mb_exit      lx_exit        3/debug-exit      1/debug-exit-unknown    3/process        3
expect_out exit3.qemu $'exit 3\n'
contract panic       mb_panic     lx_panic       134/lifecycle     134/lifecycle           134/signal
expect_out panic.qemu $'about to panic\n'
contract crash       mb_crash     -              134/lifecycle     134/lifecycle           -
contract libtest     mb_libtest   lx_libtest     101/console       101/console             101/process
[[ $(tests_of "$RUN_ID") == "a=ok b=failed c=ok" ]] || fail "libtest: test results '$(tests_of "$RUN_ID")'"
contract libtest_ok  mb_libtest_ok lx_libtest_ok 0/console\|lifecycle 0/console\|lifecycle 0/process

lv_wait_no_domains 10 || fail "a domain is left: $(lv_owned_domains)"
