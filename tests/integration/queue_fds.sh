#!/usr/bin/env bash
# Queued runs hold no descriptors: under a hard limit of 128 open files, 300 runs wait behind one running guest
# (the default queue of 1000 used to need one open console log per waiting run and failed with "too many open
# files"), the daemon's descriptor count stays small, and once the slot frees every queued run gets its verdict.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v prlimit >/dev/null || skip "prlimit (util-linux) is not installed"
# The daemon itself under the low limit (prlimit execs it, so $! is runnerd).
prlimit --nofile=128:128 -- "$RUNNERD" --socket "$T/runnerd.sock" --data-dir "$T/data" --idle-timeout 0 \
	--log "$T/runnerd.log" --max-concurrent 1 </dev/null >>"$T/runnerd.stdio.log" 2>&1 &
pid=$!
adopt_daemon "$pid"
for _ in $(seq 150); do healthy && break; sleep 0.1; done
healthy || fail "runnerd did not start"

"$UKRUN" --timeout 120 "$FX/lx_hang" </dev/null >"$T/hang.out" 2>"$T/hang.err" &
hang_client=$!
hid=$(wait_run_id lx_hang)
wait_state "$hid" running 30

# Queue runs of an uploaded program straight through the API.
sha=$(sha256sum "$FX/lx_exit" | cut -d' ' -f1)
api PUT "/v1/images/$sha" --data-binary "@$FX/lx_exit" -H 'Content-Type: application/octet-stream'
[[ $HTTP_STATUS == 201 ]] || fail "upload of lx_exit: $HTTP_STATUS $API_BODY"
n=300
ids=()
for ((i = 0; i < n; i++)); do
	api POST /v1/runs -H 'Content-Type: application/json' -d "{\"image\": \"$sha\", \"args\": [\"$((i % 7))\"]}"
	[[ $HTTP_STATUS == 201 ]] || fail "queued run $i: $HTTP_STATUS $API_BODY"
	ids+=("$(jget id <<<"$API_BODY")")
done
[[ $(sql "SELECT count(*) FROM runs WHERE state = 'queued'") == "$n" ]] || fail "not all $n runs are queued"
fds=$(ls "/proc/$pid/fd" | wc -l)
log "$n queued runs, runnerd holds $fds descriptors"
((fds < 64)) || fail "runnerd holds $fds descriptors with $n queued runs (queued runs must hold none)"

"$UKRUN" cancel "$hid" >/dev/null 2>&1 || fail "cancel $hid"
wait_rc "$hang_client"
[[ $RC == 130 ]] || fail "the hanging client exited $RC after cancel, want 130"
for _ in $(seq 600); do
	[[ $(sql "SELECT count(*) FROM runs WHERE state IN ('queued', 'starting', 'running')") == 0 ]] && break
	sleep 0.2
done
[[ $(sql "SELECT count(*) FROM runs WHERE state IN ('queued', 'starting', 'running')") == 0 ]] || fail "queued runs did not drain"
bad=$(sql "SELECT count(*) FROM runs WHERE id >= ${ids[0]} AND (state != 'done' OR exit_code != (id - ${ids[0]}) % 7)")
[[ $bad == 0 ]] || fail "$bad queued runs did not end done with their own exit code"
log "ok"
