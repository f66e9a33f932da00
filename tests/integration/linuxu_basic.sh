#!/usr/bin/env bash
# linuxu driver: static musl programs (and a dynamic host binary) run sandboxed under bubblewrap; console and
# exit status pass through exactly, argv arrives unchanged, no network, and a hanging program is killed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || skip "bubblewrap (bwrap) is not installed"
start_daemon runnerd

# check NAME WANT_RC WANT_EXIT_SOURCE [ukrun args...]: one run by the linuxu driver (expect_run).
check() {
	expect_run "$1" "$2" "$3" linuxu/linuxu "${@:4}"
}

check hello 0 process "$FX/lx_hello"
expect_out hello $'Hello from lx_hello\n'

check exit3 3 process "$FX/lx_exit" 3
expect_out exit3 $'exit 3\n'

run_ukrun segv "$FX/lx_segv"
expect_rc segv 139
expect_out segv $'about to segfault\n'
src=$(sql "SELECT exit_source FROM runs WHERE id = $(last_run_id)")
[[ $src == signal || $src == process ]] || fail "segv: exit_source '$src'"
expect_record "$(last_run_id)" done 139 "$src"

# The program's stdout reaches ukrun's stdout and its stderr ukrun's stderr (linuxu_streams.sh has the rest).
check stderr 0 process "$FX/lx_stderr"
expect_out stderr $'out1\nout2\n'
[[ $(cat "$T/stderr.err") == err1 ]] || fail "stderr: ukrun's stderr is '$(cat "$T/stderr.err")', want the program's err1"

# Arguments reach argv exactly: spaces, quotes, an empty string, and words that look like ukrun options.
check args 0 process "$FX/lx_args" 'a b' '' "q'\"x" '  lead' '$HOME' '*' --timeout 3 -- -v
{
	printf 'argc=11\n'
	printf 'argv[1]=a b\n'
	printf 'argv[2]=\n'
	printf "argv[3]=q'\"x\n"
	printf 'argv[4]=  lead\n'
	printf 'argv[5]=$HOME\n'
	printf 'argv[6]=*\n'
	printf 'argv[7]=--timeout\n'
	printf 'argv[8]=3\n'
	printf 'argv[9]=--\n'
	printf 'argv[10]=-v\n'
	# A plain Linux program gets no terminal: libtest must not colour its output.
	printf 'stdin_tty=0\nstdout_tty=0\nstderr_tty=0\n'
} >"$T/args.want"
expect_out_file args "$T/args.want"

printf '\nrunning 3 tests\ntest a ... ok\ntest b ... FAILED\ntest c ... ok\n\nfailures:\n\n---- b stdout ----\n' >"$T/libtest.want"
printf "thread 'b' panicked at src/lib.rs:10:5:\nassertion failed: false\n\nfailures:\n    b\n\n" >>"$T/libtest.want"
printf 'test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n' >>"$T/libtest.want"
check libtest 101 process "$FX/lx_libtest"
expect_out_file libtest "$T/libtest.want"

check libtest_ok 0 process "$FX/lx_libtest_ok"

# No network in the sandbox: only loopback.
check net 0 process "$FX/lx_net"
grep -qx 'nonloopback: 0' "$T/net.out" || { cat "$T/net.out" >&2; fail "net: the sandbox has a non-loopback interface"; }
grep -q '^net: 1.1.1.1:53 connected' "$T/net.out" && fail "net: reached an outside address"

# A dynamic host binary runs too (its libraries come from the host), with the platform forced.
cp /bin/echo "$T/echo"
check echo 0 process --platform linuxu "$T/echo" hi
expect_out echo $'hi\n'

# A hanging program is killed at the timeout: 124, state timeout, and nothing of it is left.
run_ukrun hang --timeout 2 "$FX/lx_hang"
expect_rc hang 124
expect_out hang $'hanging\n'
expect_record "$(last_run_id)" timeout 124 timeout
left=$(pgrep -f -- "$T/data/" || true)
[[ -z $left ]] || { ps -o pid,args -p "$(echo $left | tr ' ' ,)" >&2; fail "hang: processes left after the timeout"; }
healthy || fail "runnerd unhealthy after a timeout"
