#!/usr/bin/env bash
# detect + qemu driver, one test per boot protocol QEMU's -kernel offers (hw/i386/x86.c, QEMU 7.2): PVH ELF64
# kernels run on the qemu driver with the exit contract of the multiboot ones; a multiboot2-only kernel is refused
# before anything runs (126, saying what is missing), and one that also carries a PVH note boots through PVH.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd

expect_run pvh_hello 0 lifecycle qemu/qemu "$FX/pvh_hello"
expect_out pvh_hello $'Hello from mb_hello\n'

expect_run pvh_exit 9 debug-exit qemu/qemu "$FX/pvh_exit" 9
expect_out pvh_exit $'exit 9\n'

# PVH passes the -append string alone (multiboot v1 puts the kernel path in front): the words are the arguments.
expect_run pvh_args 0 lifecycle qemu/qemu "$FX/pvh_args" foo bar
expect_out pvh_args $'cmdline: foo bar\narg[1]: foo\narg[2]: bar\n'

expect_run pvh_crash 134 lifecycle qemu/qemu "$FX/pvh_crash"
expect_out pvh_crash $'about to triple fault\n'

expect_run pvh_libtest 101 console qemu/qemu "$FX/pvh_libtest"
grep -q '^test result: FAILED. 2 passed; 1 failed;' "$T/pvh_libtest.out" || fail "pvh_libtest: no libtest summary"
[[ $(sql "SELECT group_concat(name || '=' || outcome, ' ') FROM (SELECT name, outcome FROM test_cases WHERE run_id = $RUN_ID ORDER BY name)") == "a=ok b=failed c=ok" ]] ||
	fail "pvh_libtest: test results not recorded as a=ok b=failed c=ok"

# multiboot2 + PVH note: QEMU takes the PVH entry.
expect_run mb2_pvh 0 lifecycle qemu/qemu "$FX/mb2_pvh_hello"
expect_out mb2_pvh $'Hello from mb_hello\n'

# multiboot2 alone: QEMU would fail with "Error loading uncompressed kernel without PVH ELF Note"; ukrun refuses
# it first, naming what is missing, and never takes its ELF64 header for a Linux program.
before=$(sql "SELECT count(*) FROM runs")
run_ukrun mb2 "$FX/mb2_hello"
expect_rc mb2 126
expect_err_grep mb2 "multiboot2 kernel: QEMU's -kernel cannot boot multiboot2; the kernel needs a multiboot v1 header or a PVH entry note"
[[ ! -s $T/mb2.out ]] || fail "mb2: console output from a refused image"
[[ $(sql "SELECT count(*) FROM runs") == "$before" ]] || fail "mb2: a run was created for a refused image"
# Forcing a platform does not get it run either: linuxu's own check refuses it with the same reason, and
# QEMU, made to try, refuses it too (126 with QEMU's words).
run_ukrun mb2_linuxu --platform linuxu "$FX/mb2_hello"
expect_rc mb2_linuxu 126
expect_err_grep mb2_linuxu "multiboot2 kernel: QEMU's -kernel cannot boot multiboot2"
run_ukrun mb2_forced --platform qemu "$FX/mb2_hello"
expect_rc mb2_forced 126
expect_err_grep mb2_forced 'not runnable: .*Error loading uncompressed kernel without PVH ELF Note'
[[ $(sql "SELECT state || '|' || exit_code || '|' || exit_source FROM runs WHERE id = $(last_run_id)") == 'error|126|image' ]] ||
	fail "mb2_forced: record is not error|126|image"
