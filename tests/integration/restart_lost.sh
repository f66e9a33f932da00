#!/usr/bin/env bash
# A runnerd killed with SIGKILL leaves runs behind; the next runnerd on the same data dir marks them `lost` and
# kills their leftover guests (qemu through its pidfile, and nothing of a linuxu sandbox survives either).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd
old=$DAEMON_PID

start_hanging_pair
qclient=$HANG_QCLIENT lclient=$HANG_LCLIENT qid=$HANG_QID lid=$HANG_LID

[[ -f $T/data/runs/$qid/qemu.pid ]] || fail "no qemu pidfile in the run directory"
qemu_pid=$(tr -d ' \n' <"$T/data/runs/$qid/qemu.pid")
pid_alive "$qemu_pid" || fail "qemu ($qemu_pid) is not running"
[[ -n $(pgrep -f -- "$T/data/runs/" || true) ]] || fail "no guest process names the run directory"

kill -KILL "$old"
forget_daemon "$old"
wait "$old" 2>/dev/null || true

# The clients lose their daemon: an infrastructure error (125), not a guest verdict.
wait_rc "$qclient"; qrc=$RC
wait_rc "$lclient"; lrc=$RC
[[ $qrc == 125 ]] || { cat "$T/qhang.err" >&2; fail "the qemu client exited $qrc when runnerd died, want 125"; }
[[ $lrc == 125 ]] || { cat "$T/lhang.err" >&2; fail "the linuxu client exited $lrc when runnerd died, want 125"; }
if pid_alive "$qemu_pid"; then
	log "qemu $qemu_pid outlived its runnerd (the next daemon must kill it)"
fi

start_daemon runnerd
for id in "$qid" "$lid"; do
	row=$(sql "SELECT state || '|' || ifnull(exit_code, '') || '|' || ifnull(exit_source, '') FROM runs WHERE id = $id")
	[[ $row == lost'|'* ]] || fail "run $id after the restart: '$row', want state lost"
	[[ -n $(sql "SELECT ended_at FROM runs WHERE id = $id") ]] || fail "lost run $id has no ended_at"
done
api GET "/v1/runs/$qid"
[[ $(jget state <<<"$API_BODY") == lost ]] || fail "the API does not report run $qid as lost: $API_BODY"

# Bounded wait for every guest of the dead daemon to be gone.
for _ in $(seq 100); do
	[[ -z $(pgrep -f -- "$T/data/runs/" || true) ]] && ! pid_alive "$qemu_pid" && break
	sleep 0.1
done
left=$(pgrep -f -- "$T/data/runs/" || true)
[[ -z $left ]] || { ps -o pid,args -p "$(echo $left | tr ' ' ,)" >&2; fail "guests of the killed runnerd survive the restart"; }
pid_alive "$qemu_pid" && fail "qemu $qemu_pid survives the restart"

# The new daemon works normally.
run_ukrun after "$FX/mb_hello"
expect_rc after 0
expect_out after $'Hello from mb_hello\n'
[[ $(sql 'PRAGMA integrity_check') == ok ]] || fail "database integrity check failed"
