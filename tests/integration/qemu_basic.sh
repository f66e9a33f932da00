#!/usr/bin/env bash
# qemu driver, tiny multiboot kernels: console byte-exact on stdout, every end of a guest mapped to the exit-status
# contract (DESIGN §4), and the run record saying where the status came from.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd

# check NAME WANT_RC WANT_EXIT_SOURCE [ukrun args...]: one run, its status, its record.
check() {
	local name=$1
	# The record stores the verdict after --success-code, i.e. what ukrun exits with.
	expect_run "$name" "$2" "$3" qemu/qemu "${@:4}"
	# Without a usable /dev/kvm the guest runs under TCG, and ukrun says so on stderr.
	local accel
	accel=$(sql "SELECT ifnull(accel, '') FROM runs WHERE id = $RUN_ID")
	if ! kvm_usable; then
		[[ $accel == tcg ]] || fail "$name: no /dev/kvm here, but the record's accel is '$accel'"
	fi
	if [[ $accel == tcg ]]; then
		expect_err_grep "$name" 'TCG'
	fi
}

check hello 0 lifecycle "$FX/mb_hello"
expect_out hello $'Hello from mb_hello\n'
[[ $(sql "SELECT console_bytes || '/' || console_truncated FROM runs WHERE id = $(last_run_id)") == 20/0 ]] ||
	fail "hello: console_bytes/console_truncated wrong"

check exit7 7 debug-exit "$FX/mb_exit7"
expect_out exit7 $'exit 7\n'

check exit9 9 debug-exit "$FX/mb_exit" 9
expect_out exit9 $'exit 9\n'

check exit0 0 debug-exit "$FX/mb_exit" 0
expect_out exit0 $'exit 0\n'

check args 0 lifecycle "$FX/mb_args" foo bar
grep -q '^cmdline: .* foo bar$' "$T/args.out" || fail "args: no cmdline line ending in 'foo bar'"
# every word after the kernel path, in order, and nothing else
grep '^arg\[' "$T/args.out" >"$T/args.lines"
printf 'arg[1]: foo\narg[2]: bar\n' >"$T/args.want"
cmp "$T/args.lines" "$T/args.want" || fail "args: argument lines differ"
[[ $(sql "SELECT group_concat(value, ' ') FROM (SELECT value FROM run_args WHERE run_id = $(last_run_id) AND kind = 'arg' ORDER BY pos)") == "foo bar" ]] ||
	fail "args: run_args not recorded"

check crash 134 lifecycle "$FX/mb_crash"
expect_out crash $'about to triple fault\n'

check panic 134 lifecycle "$FX/mb_panic"
expect_out panic $'about to panic\n'

# The libtest text of the fixtures (tests/fixtures/common/libtest_text.h), byte for byte.
printf '\nrunning 3 tests\ntest a ... ok\ntest b ... FAILED\ntest c ... ok\n\nfailures:\n\n---- b stdout ----\n' >"$T/libtest.want"
printf "thread 'b' panicked at src/lib.rs:10:5:\nassertion failed: false\n\nfailures:\n    b\n\n" >>"$T/libtest.want"
printf 'test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n' >>"$T/libtest.want"
check libtest 101 console "$FX/mb_libtest"
expect_out_file libtest "$T/libtest.want"

printf '\nrunning 3 tests\ntest a ... ok\ntest b ... ok\ntest c ... ok\n\n' >"$T/libtest_ok.want"
printf 'test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n' >>"$T/libtest_ok.want"
run_ukrun libtest_ok "$FX/mb_libtest_ok"
expect_rc libtest_ok 0
expect_out_file libtest_ok "$T/libtest_ok.want"
# A clean power-off whose console holds a passing libtest summary: lifecycle or console may claim it.
src=$(sql "SELECT exit_source FROM runs WHERE id = $(last_run_id)")
[[ $src == console || $src == lifecycle ]] || fail "libtest_ok: exit_source '$src'"
expect_record "$(last_run_id)" done 0 "$src"

check success_code 0 debug-exit --success-code 7 "$FX/mb_exit7"
expect_out success_code $'exit 7\n'
[[ $(sql "SELECT success_code FROM runs WHERE id = $(last_run_id)") == 7 ]] || fail "success_code not recorded"

# Nothing of these runs is left running, and the daemon counted them all.
[[ $(sql "SELECT count(*) FROM runs WHERE state != 'done'") == 0 ]] || fail "a run is not done"
[[ $(sql "SELECT count(*) FROM runs") == 10 ]] || fail "expected 10 run records"
