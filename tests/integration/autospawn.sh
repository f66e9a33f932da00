#!/usr/bin/env bash
# With no daemon running, ukrun starts a per-user runnerd (XDG paths, private socket), later clients reuse it,
# concurrent first clients start only one, and a runnerd with an idle timeout exits by itself.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

unset UKRUN_SOCKET
export XDG_RUNTIME_DIR=$T/rt XDG_DATA_HOME=$T/xdg
mkdir -m 0700 "$XDG_RUNTIME_DIR"
SOCK=$XDG_RUNTIME_DIR/ukrun/runnerd.sock

# user_daemons: pids of runnerd processes serving this test's XDG socket.
user_daemons() {
	pgrep -f -- "runnerd.* --socket $SOCK" || true
}

# health_pid: the pid the daemon on $SOCK reports.
health_pid() {
	curl -sS --max-time 5 --unix-socket "$SOCK" http://runnerd/healthz | jget pid
}

[[ -z $(user_daemons) ]] || fail "a runnerd for this test's socket exists before the test"
run_ukrun first "$FX/lx_hello"
expect_rc first 0
expect_out first $'Hello from lx_hello\n'
[[ -S $SOCK ]] || fail "no socket at $SOCK"
pid1=$(health_pid)
[[ -n $pid1 ]] || fail "no daemon answers on $SOCK"
adopt_daemon "$pid1"
[[ $(readlink "/proc/$pid1/exe") == "$(readlink -f "$RUNNERD")" ]] || fail "pid $pid1 is not $RUNNERD"
[[ $(stat -c %a "$SOCK") == 600 ]] || fail "socket mode $(stat -c %a "$SOCK"), want 600"
[[ $(stat -c %a "$(dirname "$SOCK")") == 700 ]] || fail "socket dir mode $(stat -c %a "$(dirname "$SOCK")"), want 700"
[[ -f $XDG_DATA_HOME/ukrun/runnerd.db ]] || fail "no database under \$XDG_DATA_HOME/ukrun"
[[ $(user_daemons) == "$pid1" ]] || fail "runnerd processes: '$(user_daemons | tr '\n' ' ')', want only $pid1"

# A second client reuses the daemon.
run_ukrun second "$FX/lx_exit" 5
expect_rc second 5
expect_out second $'exit 5\n'
[[ $(health_pid) == "$pid1" ]] || fail "the second ukrun did not reuse runnerd $pid1"
[[ $(user_daemons) == "$pid1" ]] || fail "a second runnerd appeared"
[[ $(sql 'SELECT count(*) FROM runs' "$XDG_DATA_HOME/ukrun/runnerd.db") == 2 ]] || fail "both runs are not in the user database"
# `ukrun ping` never starts a daemon, but sees this one.
run_ukrun ping ping
expect_rc ping 0

# Stop it; now two clients start at once with no daemon: both succeed, one runnerd serves them.
stop_daemon "$pid1"
[[ -z $(user_daemons) ]] || fail "runnerd still running after SIGTERM"
run_ukrun ping_none ping
expect_rc ping_none 125
[[ -z $(user_daemons) ]] || fail "ukrun ping started a daemon"

"$UKRUN" "$FX/lx_exit" 3 </dev/null >"$T/c1.out" 2>"$T/c1.err" &
c1=$!
"$UKRUN" "$FX/lx_hello" </dev/null >"$T/c2.out" 2>"$T/c2.err" &
c2=$!
wait_rc "$c1"; rc1=$RC
wait_rc "$c2"; rc2=$RC
pid2=$(health_pid)
[[ -n $pid2 ]] && adopt_daemon "$pid2"
[[ $rc1 == 3 ]] || { cat "$T/c1.err" >&2; fail "concurrent client 1 exited $rc1, want 3"; }
[[ $rc2 == 0 ]] || { cat "$T/c2.err" >&2; fail "concurrent client 2 exited $rc2, want 0"; }
[[ $(cat "$T/c1.out") == 'exit 3' && $(cat "$T/c2.out") == 'Hello from lx_hello' ]] || fail "concurrent clients' output wrong"
[[ $(user_daemons) == "$pid2" ]] || fail "runnerd processes after a concurrent start: '$(user_daemons | tr '\n' ' ')', want only $pid2"
[[ $pid2 != "$pid1" ]] || fail "pid reuse confuses this test"
stop_daemon "$pid2"

# --idle-timeout: a daemon with nothing to do exits on its own (bounded wait, not a timing assertion).
"$RUNNERD" --socket "$T/idle.sock" --data-dir "$T/idle-data" --idle-timeout 1 --log "$T/idle.log" </dev/null \
	>"$T/idle.stdio.log" 2>&1 &
idle_pid=$!
_daemon_pids+=("$idle_pid")
for _ in $(seq 100); do
	healthy "$T/idle.sock" && break
	sleep 0.1
done
for _ in $(seq 150); do
	kill -0 "$idle_pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$idle_pid" 2>/dev/null && fail "runnerd --idle-timeout 1 still running after 15 s"
forget_daemon "$idle_pid"
wait_rc "$idle_pid"
idle_rc=$RC
[[ $idle_rc == 0 ]] || fail "idle runnerd exited $idle_rc, want 0"
[[ ! -e $T/idle.sock ]] || fail "the idle runnerd left its socket behind"
