#!/usr/bin/env bash
# Stopping runnerd: SIGTERM ends runs with 125 "runnerd stopped" (never 130, which means a user cancelled);
# with --drain-timeout, running runs get that long to finish with their own verdicts while queued ones end at
# once and new ones are refused (503); a second SIGTERM ends the drain at once. SIGHUP reopens the log file.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# wait_out NAME TEXT: bounded wait until a background client's stdout holds TEXT.
wait_out() {
	for _ in $(seq 150); do
		grep -q "$2" "$T/$1.out" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "$1 never printed '$2'"
}
# client NAME ARGS...: ukrun in the background; its pid → $CLIENT.
client() {
	local name=$1
	shift
	"$UKRUN" "$@" </dev/null >"$T/$name.out" 2>"$T/$name.err" &
	CLIENT=$!
}
# expect_client PID NAME RC [STDERR-REGEX]
expect_client() {
	wait_rc "$1"
	[[ $RC == "$3" ]] || { cat "$T/$2.err" >&2; fail "$2: client exited $RC, want $3"; }
	[[ -z ${4:-} ]] || grep -Eq "$4" "$T/$2.err" || { cat "$T/$2.err" >&2; fail "$2: stderr does not match /$4/"; }
}

# 1. No drain (the default): a running guest is killed, its client gets 125 and the reason.
start_daemon runnerd
client hang1 --timeout 60 "$FX/lx_hang"
c1=$CLIENT
wait_out hang1 hanging
id1=$(last_run_id)
stop_daemon "$DAEMON_PID"
expect_client "$c1" hang1 125 'runnerd stopped before the run ended'
[[ $(sql "SELECT state || '|' || exit_code || '|' || exit_source FROM runs WHERE id = $id1") == 'error|125|runner' ]] ||
	fail "run $id1: $(sql "SELECT state, exit_code, exit_source FROM runs WHERE id = $id1")"

# 2. A drain: the running run finishes with its own verdict; the queued one ends at once; new runs get 503.
start_daemon runnerd --drain-timeout 60 --max-concurrent 1 --log "$T/drain.log"
d=$DAEMON_PID
client sleeper --timeout 60 "$FX/lx_sleep" 3
c2=$CLIENT
wait_out sleeper sleeping
client queued --timeout 60 "$FX/lx_exit" 5
c3=$CLIENT
qid=$(wait_run_id lx_exit)
wait_state "$qid" queued 10
kill -TERM "$d"
expect_client "$c3" queued 125 'runnerd stopped before the run started'
run_ukrun refused "$FX/lx_exit" 4
expect_rc refused 125
expect_err_grep refused 'shutting down'
kill -0 "$d" 2>/dev/null || fail "runnerd exited before its running run ended"
expect_client "$c2" sleeper 0
[[ $(cat "$T/sleeper.out") == $'sleeping\nawake' ]] || fail "the drained run's console: $(cat "$T/sleeper.out")"
wait_pid_gone "$d" 20 || fail "runnerd did not exit after the drain"
forget_daemon "$d"
_reap_daemon "$d" || fail "runnerd did not exit cleanly after the drain"
grep -q 'waiting up to 60 s for 2 active run(s)' "$T/drain.log" || fail "the log does not announce the drain"

# 3. A drain that runs out, and a second SIGTERM that cuts one short: both kill with 125.
start_daemon runnerd --drain-timeout 1
client hang2 --timeout 60 "$FX/lx_hang"
c4=$CLIENT
wait_out hang2 hanging
stop_daemon "$DAEMON_PID"
expect_client "$c4" hang2 125 'runnerd stopped before the run ended'

start_daemon runnerd --drain-timeout 600
d=$DAEMON_PID
client hang3 --timeout 60 "$FX/lx_hang"
c5=$CLIENT
wait_out hang3 hanging
kill -TERM "$d"
sleep 0.3
kill -0 "$d" 2>/dev/null || fail "runnerd did not wait for its running run"
stop_daemon "$d"
expect_client "$c5" hang3 125 'runnerd stopped before the run ended'

# 3b. The same on qemu: a stopped daemon's client exits 125 "runnerd stopped", never 130 "cancelled".
if command -v qemu-system-x86_64 >/dev/null; then
	start_daemon runnerd
	client qhang --timeout 60 "$FX/mb_hang"
	c6=$CLIENT
	wait_out qhang hanging
	qid=$(last_run_id)
	stop_daemon "$DAEMON_PID"
	expect_client "$c6" qhang 125 'runnerd stopped before the run ended'
	! grep -q 'cancelled' "$T/qhang.err" || fail "qhang: the client speaks of a cancel: $(cat "$T/qhang.err")"
	[[ $(sql "SELECT state || '|' || exit_code || '|' || exit_source FROM runs WHERE id = $qid") == 'error|125|runner' ]] ||
		fail "qemu run $qid: $(sql "SELECT state, exit_code, exit_source FROM runs WHERE id = $qid")"
else
	log "qemu-system-x86_64 not installed: the qemu stop case is skipped"
fi

# 4. SIGHUP reopens the log (logrotate moved it away).
start_daemon runnerd --log "$T/hup.log"
mv "$T/hup.log" "$T/hup.log.1"
kill -HUP "$DAEMON_PID"
for _ in $(seq 50); do [[ -s $T/hup.log ]] && break; sleep 0.1; done
grep -q 'SIGHUP: log reopened' "$T/hup.log" || fail "SIGHUP did not reopen the log at its path"
healthy || fail "runnerd stopped answering after SIGHUP"
run_ukrun after-hup "$FX/lx_exit" 7
expect_rc after-hup 7
grep -q 'run .* done: exit 7' "$T/hup.log" || fail "the reopened log does not get new lines"
log "ok"
