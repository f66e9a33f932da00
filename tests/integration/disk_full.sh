#!/usr/bin/env bash
# A full disk never leaves a run unfinished: with the data directory on a small tmpfs, a run whose console fills
# the disk still reaches `done` with its true exit code and a note saying what was not stored; the client gets
# the verdict (not 125); cancel answers 409 for the ended run and its image can be deleted; later runs work.
# (Before the fix, the run's end could not be written and it stayed `running` until a restart.)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || skip "needs root to mount a small tmpfs as the data directory"
mkdir -p "$T/data"
mount -t tmpfs -o size=6m,mode=0700 ukrun-disk-full "$T/data" || skip "cannot mount a tmpfs here"
unmount_data() { umount "$T/data"; }
at_cleanup unmount_data

metric() {
	curl -sS --unix-socket "$UKRUN_SOCKET" http://runnerd/metrics | awk -v n="$1" '$1 == n { print $2; exit }'
}

start_daemon runnerd
[[ -f $T/data/runnerd.db.reserve ]] || fail "no disk reserve beside the database"

# 200000 lines of 44 bytes: about 8.8 MB of console for a 6 MB disk.
run_ukrun flood "$FX/lx_flood" 200000
expect_rc flood 0
id=$(last_run_id)
expect_record "$id" done 0 process
sql "SELECT message FROM run_notes WHERE run_id = $id" | grep -q 'console log: cannot write (No space left on device)' ||
	fail "no note says the console could not be stored"
[[ $(metric ukrun_store_reserve_releases_total) -ge 1 ]] || fail "the reserve was not used"
api POST "/v1/runs/$id/cancel"
[[ $HTTP_STATUS == 409 ]] || fail "cancel of an ended run: $HTTP_STATUS, want 409"

# The disk is still nearly full: the next runs still get their verdicts.
expect_run exit3 3 process linuxu/linuxu "$FX/lx_exit" 3
expect_run hello 0 process linuxu/linuxu "$FX/lx_hello"
sha=$(sha256sum "$FX/lx_flood" | cut -d' ' -f1)
api DELETE "/v1/images/$sha"
[[ $HTTP_STATUS == 204 ]] || fail "DELETE of the flood image: $HTTP_STATUS $API_BODY, want 204"
[[ $(sql "SELECT count(*) FROM runs WHERE state IN ('queued', 'starting', 'running')") == 0 ]] || fail "a run was left unfinished"
healthy || fail "runnerd stopped answering"
log "ok"
