#!/usr/bin/env bash
# systemd socket activation: runnerd serves the listening Unix socket passed as fd 3 (LISTEN_PID/LISTEN_FDS),
# started on the first connection by systemd-socket-activate (the same protocol systemd's .socket units use);
# runs work through it, and at a stop the socket file (systemd's) is left in place.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate (package systemd) is not installed"
sock=$T/act/runnerd.sock
mkdir -m 0700 "$T/act"
systemd-socket-activate -l "$sock" -- "$RUNNERD" --socket "$sock" --data-dir "$T/act-data" --idle-timeout 0 \
	--log "$T/act.log" </dev/null >>"$T/act.stdio.log" 2>&1 &
pid=$!
adopt_daemon "$pid"
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
[[ -S $sock ]] || fail "systemd-socket-activate did not create the socket"
export UKRUN_SOCKET=$sock
# The first connection starts runnerd on the passed socket (ping never spawns a daemon of its own).
for _ in $(seq 100); do "$UKRUN" ping >/dev/null 2>&1 && break; sleep 0.1; done
run_ukrun ping ping
expect_rc ping 0
grep -q "listening on unix:$sock (socket activation)" "$T/act.log" || { cat "$T/act.log" >&2; fail "runnerd did not take the activated socket"; }
run_ukrun exit3 "$FX/lx_exit" 3
expect_rc exit3 3
kill -TERM "$pid"
wait_pid_gone "$pid" 20 || fail "runnerd did not stop"
forget_daemon "$pid"
wait "$pid" 2>/dev/null || fail "runnerd exited non-zero"
[[ -S $sock ]] || fail "runnerd removed systemd's socket file"
log "ok"
