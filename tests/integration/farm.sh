#!/usr/bin/env bash
# The farm: one runnerd coordinating two more libvirtds on this machine, reached only through qemu+tcp:// (their
# guests run under TCG unless KVM is usable). 40 runs spread over both with neither ever over its capacity (counted
# on the hosts themselves, by their libvirtd), each image uploaded once per host, labels and pinning, priority,
# hosts added and removed at run time and kept across a restart, and a host's libvirtd killed mid-run: its runs
# end `lost` or are retried on the other host, the other host and local runs go on, the dead host shows down and
# is taken back when it returns.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_libvirt.sh"

lv_remote_start r1
lv_remote_start r2
R1=${LV_REMOTE_URI[r1]} R2=${LV_REMOTE_URI[r2]}
cat >"$T/runnerd.conf" <<CONF
[host local]
labels = local

[host r1]
uri = $R1
capacity = 2
labels = farm, x86_64, one

[host r2]
uri = $R2
capacity = 2
labels = farm, x86_64
CONF
start_daemon runnerd --config "$T/runnerd.conf" --max-concurrent 4

host_field() { # NAME FIELD: a field of GET /v1/hosts/NAME (in $(...): API_BODY is not kept)
	api GET "/v1/hosts/$1"
	jget "$2" <<<"$API_BODY"
}
[[ $(host_field r1 health) == up && $(host_field r2 health) == up ]] || fail "the remote hosts are not up: $API_BODY"

bg_run() { # NAME ukrun-args...: in the background; sets BG_PID and BG_ID
	local name=$1 before
	shift
	before=$(last_run_id)
	"$UKRUN" "$@" >"$T/$name.out" 2>"$T/$name.err" &
	BG_PID=$!
	for _ in $(seq 300); do
		BG_ID=$(last_run_id)
		((BG_ID > before)) && return 0
		sleep 0.1
	done
	fail "$name: no run was created"
}
# ---- 40 runs over the farm hosts, none over capacity (sampled on each libvirtd while they run) ----
# UKRUN_FARM_RUNS: fewer in the sanitizer stage of scripts/test (each run is a TCG guest on a 2-core machine).
N=${UKRUN_FARM_RUNS:-40}
((N >= 20)) || N=20
prev=$(last_run_id)
prev=${prev:-0}
pids=()
for i in $(seq "$N"); do
	"$UKRUN" --require farm "$FX/mb_hello" >"$T/flood.$i.out" 2>"$T/flood.$i.err" &
	pids+=($!)
done
over=
while :; do
	alive=0
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1 && break; done
	for n in r1 r2; do
		c=$(lv_remote_domains "$n" | wc -l)
		((c <= 2)) || over="$over $n:$c"
	done
	((alive)) || break
	sleep 0.2
done
[[ -z $over ]] || fail "a host ran more guests than its capacity of 2:$over"
bad=0
for i in $(seq "$N"); do
	wait_rc "${pids[i - 1]}"
	((RC == 0)) || { bad=$((bad + 1)); log "flood run $i: exit $RC: $(tail -2 "$T/flood.$i.err")"; }
done
((bad == 0)) || fail "$bad of $N farm runs did not exit 0"
exact=$(cat "$T"/flood.*.out | grep -c '^Hello from mb_hello$' || true)
# Known limit (docs/design.md, libvirt): a remote console can lose its last bytes when the guest ends right after
# printing; the verdict never depends on it. Most consoles must be whole.
((exact * 4 >= N * 3)) || fail "only $exact of $N remote consoles arrived whole"
sql "SELECT host, count(*) FROM runs WHERE id > $prev GROUP BY host" >"$T/spread"
n1=$(sql "SELECT count(*) FROM runs WHERE id > $prev AND host = 'r1'")
n2=$(sql "SELECT count(*) FROM runs WHERE id > $prev AND host = 'r2'")
((n1 + n2 == N && n1 * 5 >= N && n2 * 5 >= N)) || fail "$N runs not spread over r1 and r2: $(cat "$T/spread")"
# Each image reached each host once: one upload per host, every other run a cache hit.
for n in r1 r2; do
	up=$(sql "SELECT count(*) FROM run_facts f JOIN runs r ON r.id = f.run_id WHERE r.id > $prev AND r.host = '$n' AND f.key = 'image_upload'")
	hit=$(sql "SELECT count(*) FROM run_facts f JOIN runs r ON r.id = f.run_id WHERE r.id > $prev AND r.host = '$n' AND f.key = 'image_cache'")
	((up == 1)) || fail "host $n: the image was uploaded $up times, want once"
	[[ $hit == $(sql "SELECT count(*) - 1 FROM runs WHERE id > $prev AND host = '$n'") ]] ||
		fail "host $n: $hit cache hits"
done
api GET /metrics
for n in r1 r2; do
	grep -qx "ukrun_host_image_uploads_total{host=\"$n\"} 1" <<<"$API_BODY" || fail "metrics: uploads to $n: $API_BODY"
	grep -qx "ukrun_host_up{host=\"$n\"} 1" <<<"$API_BODY" || fail "metrics: $n not up"
done
grep -Eq "^ukrun_host_image_cache_hits_total\\{host=\"r1\"\\} $((n1 - 1))$" <<<"$API_BODY" || fail "metrics: r1 cache hits"
grep -Eq "^ukrun_host_image_bytes_sent_total\\{host=\"r1\"\\} $(stat -c %s "$FX/mb_hello")$" <<<"$API_BODY" ||
	fail "metrics: bytes sent to r1"
log "$N runs: r1 $n1, r2 $n2, $exact consoles whole"

# ---- labels and pinning ----
expect_run one 0 lifecycle qemu/libvirt --require one "$FX/mb_hello"
[[ $(sql "SELECT host FROM runs WHERE id = $RUN_ID") == r1 ]] || fail "--require one did not run on r1"
expect_run pin2 0 lifecycle qemu/libvirt --host r2 "$FX/mb_hello"
[[ $(sql "SELECT host FROM runs WHERE id = $RUN_ID") == r2 ]] || fail "--host r2 did not run on r2"
expect_run loc 0 lifecycle qemu/qemu --require local "$FX/mb_hello"
[[ $(sql "SELECT host FROM runs WHERE id = $RUN_ID") == local ]] || fail "--require local did not run locally"
# A label no host has: the run waits (it is not refused), saying why; a host added at run time with that label
# takes it; the host is stored and comes back after a restart; removed, it is gone for good.
bg_run gpu --require gpu "$FX/mb_hello"; gpu=$BG_PID gid=$BG_ID
for _ in $(seq 100); do
	api GET "/v1/runs/$gid"
	[[ $(jget waiting <<<"$API_BODY") == "waiting for a host with label gpu" ]] && break
	sleep 0.1
done
[[ $(jget waiting <<<"$API_BODY") == "waiting for a host with label gpu" ]] || fail "no wait reason: $API_BODY"
[[ $(jget state <<<"$API_BODY") == queued ]] || fail "the gpu run is not queued: $API_BODY"
# A guest running on r2 while g1 (the same libvirtd) is added and probed: the new host's probe must leave it alone.
bg_run r2hang --host r2 --timeout 300 "$FX/mb_hang"; r2hang=$BG_PID r2hangid=$BG_ID
wait_state "$r2hangid" running 60
run_ukrun addg1 hosts add g1 "$R2" --capacity 1 --memory 512 --label gpu
expect_rc addg1 0
wait_rc "$gpu"
((RC == 0)) || { cat "$T/gpu.err" >&2; fail "the gpu run exited $RC after g1 was added"; }
[[ $(sql "SELECT host FROM runs WHERE id = $gid") == g1 ]] || fail "the gpu run did not run on g1"
[[ $(sql "SELECT state FROM runs WHERE id = $r2hangid") == running ]] ||
	fail "r2's guest did not survive g1's probe: $(sql "SELECT state, reason FROM runs WHERE id = $r2hangid")"
"$UKRUN" cancel "$r2hangid" >/dev/null
wait_rc "$r2hang"
((RC == 130)) || fail "r2's cancelled guest exited $RC"
api POST /v1/hosts -H 'Content-Type: application/json' -d "{\"name\": \"g1\", \"uri\": \"$R2\"}"
[[ $HTTP_STATUS == 409 ]] || fail "a second g1: $HTTP_STATUS $API_BODY"
api POST /v1/hosts -H 'Content-Type: application/json' -d '{"name": "Bad Name", "uri": "qemu+tcp://x/system"}'
[[ $HTTP_STATUS == 400 && $(jget error.message <<<"$API_BODY") == *name* ]] || fail "a bad name: $HTTP_STATUS $API_BODY"
api POST /v1/hosts -H 'Content-Type: application/json' -d '{"name": "x1", "uri": "qemu+tcp://x/system", "cpus": 2}'
[[ $HTTP_STATUS == 400 && $API_BODY == *"unknown field 'cpus'"* ]] || fail "an unknown field: $HTTP_STATUS $API_BODY"
api DELETE /v1/hosts/r1
[[ $HTTP_STATUS == 409 ]] || fail "DELETE of a runnerd.conf host: $HTTP_STATUS $API_BODY"
# Memory capacity: g1 holds 512 MB, a run of 1024 can never fit there.
run_ukrun big --host g1 --memory 1024 "$FX/mb_hello"
expect_rc big 2
expect_err_grep big "1024 MB of guest memory: host g1 holds 512 MB"
stop_daemon "$DAEMON_PID"
start_daemon runnerd --config "$T/runnerd.conf" --max-concurrent 4
[[ $(host_field g1 origin) == api && $(host_field g1 health) == up ]] || fail "g1 after a restart: $API_BODY"
run_ukrun rmg1 hosts rm g1 --json
expect_rc rmg1 0
[[ $(jget removed <"$T/rmg1.out") == true ]] || fail "hosts rm g1: $(cat "$T/rmg1.out")"
run_ukrun rmg1again hosts rm g1
expect_rc rmg1again 1
expect_err_grep rmg1again "no host g1"
api GET /v1/hosts/g1
[[ $HTTP_STATUS == 404 ]] || fail "g1 after DELETE: $HTTP_STATUS"
stop_daemon "$DAEMON_PID"
start_daemon runnerd --config "$T/runnerd.conf" --max-concurrent 4
api GET /v1/hosts/g1
[[ $HTTP_STATUS == 404 ]] || fail "g1 came back after a restart"

# ---- priority: on a full host the higher priority run starts first, whatever its age ----
bg_run h1 --host r1 --timeout 300 "$FX/mb_hang"; h1=$BG_PID h1id=$BG_ID
bg_run h2 --host r1 --timeout 300 "$FX/mb_hang"; h2=$BG_PID h2id=$BG_ID
wait_state "$h1id" running 60
wait_state "$h2id" running 60
bg_run low --host r1 --timeout 300 "$FX/mb_hang"; low=$BG_PID lowid=$BG_ID
bg_run high --host r1 --priority 10 --timeout 300 "$FX/mb_hang"; high=$BG_PID highid=$BG_ID
api GET "/v1/runs/$lowid"
[[ $(jget waiting <<<"$API_BODY") == "waiting for a free slot on host r1 (2 of 2 running)" ]] ||
	fail "the low priority run's wait reason: $API_BODY"
"$UKRUN" cancel "$h1id" >/dev/null
wait_state "$highid" running 60
[[ $(sql "SELECT state FROM runs WHERE id = $lowid") == queued ]] || fail "the older, lower priority run started first"
"$UKRUN" cancel "$h2id" >/dev/null
wait_state "$lowid" running 60

# ---- a host lost mid-run ----
# r1 runs `low` (no retries); r2 runs p2, pinned there. With one slot free on each, a run that may be retried
# goes to the first listed, r1; local runs one more.
bg_run p2 --host r2 --timeout 300 "$FX/mb_hang"; p2=$BG_PID p2id=$BG_ID
wait_state "$p2id" running 60
"$UKRUN" cancel "$highid" >/dev/null
wait_rc "$high"
((RC == 130)) || fail "the cancelled high priority run exited $RC"
bg_run retry --require farm --retries 1 --timeout 300 "$FX/mb_hang"; retry=$BG_PID retryid=$BG_ID
wait_state "$retryid" running 60
[[ $(sql "SELECT host FROM runs WHERE id = $retryid") == r1 ]] || fail "the retriable run is not on r1"
bg_run lh --host local --timeout 300 "$FX/mb_hang"; lh=$BG_PID lhid=$BG_ID
wait_state "$lhid" running 60
lv_remote_kill r1 KILL
wait_rc "$low"
((RC == 125)) || { cat "$T/low.err" >&2; fail "a run on the lost host exited $RC, want 125"; }
grep -qF "lost the connection to libvirtd at $R1" "$T/low.err" || { cat "$T/low.err" >&2; fail "no reason naming r1's URI"; }
[[ $(sql "SELECT state || ' ' || exit_code || ' ' || exit_source FROM runs WHERE id = $lowid") == "lost 125 host" ]] ||
	fail "the lost run's record: $(sql "SELECT state, exit_code, exit_source FROM runs WHERE id = $lowid")"
# The retriable run goes again, to r2 (its second slot is free).
for _ in $(seq 300); do
	[[ $(sql "SELECT host || ' ' || attempts || ' ' || state FROM runs WHERE id = $retryid") == "r2 2 running" ]] && break
	sleep 0.1
done
[[ $(sql "SELECT host || ' ' || attempts || ' ' || state FROM runs WHERE id = $retryid") == "r2 2 running" ]] ||
	fail "the retriable run was not run again on r2: $(sql "SELECT host, attempts, state FROM runs WHERE id = $retryid")"
sql "SELECT message FROM run_notes WHERE run_id = $retryid" | grep -q "attempt 1 on host r1 lost" ||
	fail "no note of the retry"
api GET /v1/hosts/r1
# (last_error: the lost connection, or by now the failed re-probe: either names r1's URI)
[[ $(jget health <<<"$API_BODY") == down && $(jget last_error <<<"$API_BODY") == *"$R1"* ]] ||
	fail "r1 is not shown down: $API_BODY"
# Everything else goes on: r2's run, the local run, the API.
[[ $(sql "SELECT state FROM runs WHERE id = $p2id") == running ]] || fail "r2's run did not survive r1's loss"
[[ $(sql "SELECT state FROM runs WHERE id = $lhid") == running ]] || fail "the local run did not survive r1's loss"
healthy || fail "runnerd unhealthy after losing r1"
# A run pinned to the dead host waits, saying why, and runs once r1 is back.
bg_run back --host r1 "$FX/mb_hello"; back=$BG_PID backid=$BG_ID
for _ in $(seq 100); do
	api GET "/v1/runs/$backid"
	[[ $(jget waiting <<<"$API_BODY") == "waiting for host r1, which is down: "* ]] && break
	sleep 0.1
done
[[ $(jget waiting <<<"$API_BODY") == "waiting for host r1, which is down: "* ]] || fail "pinned to a dead host: $API_BODY"
lv_remote_restart r1
wait_rc "$back"
((RC == 0)) || { cat "$T/back.err" >&2; fail "the run on the returned r1 exited $RC, want 0"; }
[[ $(host_field r1 health) == up ]] || fail "r1 is not up again: $API_BODY"
for id in "$p2id" "$lhid" "$retryid"; do "$UKRUN" cancel "$id" >/dev/null; done
for p in "$p2" "$lh" "$retry" "$h1" "$h2"; do wait_rc "$p"; ((RC == 130)) || fail "a cancelled run exited $RC"; done
api GET /metrics
grep -qx 'ukrun_host_lost_runs_total{host="r1"} 2' <<<"$API_BODY" || fail "metrics: lost runs on r1: $(grep lost <<<"$API_BODY")"
# The restarted libvirtd destroys the lost connection's domains as it reconnects to their QEMU (bounded wait).
for _ in $(seq 200); do
	[[ -z $(lv_remote_domains r1) ]] && break
	sleep 0.1
done
[[ -z $(lv_remote_domains r1) ]] || fail "domains left on r1: $(lv_remote_domains r1)"

# ---- an image quota: a host keeps at most image_quota_mb of image volumes, the least recently used go first ----
cp "$FX/mb_hello" "$T/big_a" && truncate -s 700K "$T/big_a"
cp "$FX/mb_hello" "$T/big_b" && printf 'b' >>"$T/big_b" && truncate -s 700K "$T/big_b"
run_ukrun addq1 hosts add q1 "$R2" --capacity 1 --image-quota 1 --label quota
expect_rc addq1 0
expect_run biga 0 lifecycle qemu/libvirt --host q1 "$T/big_a"
sha_a=$(sql "SELECT image FROM runs WHERE id = $RUN_ID")
virsh -q -c "$R2" vol-list ukrun | grep -q "$sha_a" || fail "quota: big_a's volume is not in r2's pool"
expect_run bigb 0 lifecycle qemu/libvirt --host q1 "$T/big_b"
sha_b=$(sql "SELECT image FROM runs WHERE id = $RUN_ID")
vols=$(virsh -q -c "$R2" vol-list ukrun | awk '{print $1}')
grep -qx "$sha_b" <<<"$vols" || fail "quota: the newest image's volume was removed: $vols"
grep -qx "$sha_a" <<<"$vols" && fail "quota: the least recently used volume is still there: $vols"
grep -q "image quota of .*removed" "$T/bigb.err" || grep -q "image quota of .*removed" <(sql "SELECT message FROM run_notes WHERE run_id = $RUN_ID") ||
	fail "quota: no note of the removed volumes"
run_ukrun rmq1 hosts rm q1
expect_rc rmq1 0
