#!/usr/bin/env bash
# One runnerd per data directory: a second runnerd started on a live daemon's data directory (through another
# socket) is refused before it touches anything, naming the running pid and its socket; the live daemon's runs
# and guests are unaffected (before the lock, the second daemon marked them `lost` and killed their guests).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd
first=$DAEMON_PID

start_hanging_pair
qclient=$HANG_QCLIENT lclient=$HANG_LCLIENT qid=$HANG_QID lid=$HANG_LID
qemu_pid=$(tr -d ' \n' <"$T/data/runs/$qid/qemu.pid")
pid_alive "$qemu_pid" || fail "qemu ($qemu_pid) is not running"

# The second daemon: same data directory, its own socket. It must exit at once with status 3.
set +e
timeout 20 "$RUNNERD" --socket "$T/second.sock" --data-dir "$T/data" --idle-timeout 0 --log "$T/second.log" \
	</dev/null >"$T/second.out" 2>"$T/second.err"
rc=$?
set -e
[[ $rc == 3 ]] || { cat "$T/second.err" >&2; fail "the second runnerd exited $rc, want 3"; }
grep -q "another runnerd (pid $first, socket $T/runnerd.sock) already uses the data directory '$T/data'" "$T/second.err" ||
	{ cat "$T/second.err" >&2; fail "the refusal does not name the running daemon"; }
[[ ! -e $T/second.sock ]] || fail "the refused daemon created its socket"
[[ ! -s $T/second.log ]] || { cat "$T/second.log" >&2; fail "the refused daemon logged (it must stop before anything else)"; }

# Nothing of the live daemon was touched.
pid_alive "$qemu_pid" || fail "the second daemon killed the first one's qemu guest"
wait_state "$qid" running 5
wait_state "$lid" running 5
[[ $(sql "SELECT count(*) FROM runs WHERE state = 'lost'") == 0 ]] || fail "runs were marked lost"
healthy || fail "the first daemon stopped answering"

# The live runs still end with their true verdicts.
"$UKRUN" cancel "$qid" >/dev/null 2>&1 || fail "cancel $qid"
"$UKRUN" cancel "$lid" >/dev/null 2>&1 || fail "cancel $lid"
wait_rc "$qclient"; [[ $RC == 130 ]] || fail "the qemu client exited $RC after cancel, want 130"
wait_rc "$lclient"; [[ $RC == 130 ]] || fail "the linuxu client exited $RC after cancel, want 130"

# Once the first daemon is gone, the data directory can be used again.
stop_daemon "$first"
start_daemon again --socket "$T/again.sock" --data-dir "$T/data"
log "ok"
