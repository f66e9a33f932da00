#!/usr/bin/env bash
# Remote image uploads and domain starts run on their host's own worker, off the one libvirt thread of the process:
# while r1's libvirtd holds a domain's start (a qemu hook), a run on r2 starts and ends; while a
# big image is on its way to r1 (whose libvirtd is held stopped mid-upload, so the upload cannot finish early), a
# run pinned to r2 starts and ends; r1's run then goes on from its upload and exits 0. A cancel during an upload
# ends the run cancelled once the upload is back; r1's libvirtd killed during an upload ends that run lost; runnerd
# stopped during an upload aborts it and exits cleanly; the volume left by a runnerd SIGKILLed during an upload is
# known unfinished: the next run uploads the image again, whole, instead of booting the partial one.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_libvirt.sh"

# r1's libvirtd holds a domain's start ("prepare begin", in its qemu hook) while $T/r1/hold exists (≤ 120 s).
cat >"$T/hook" <<HOOK
#!/bin/sh
if [ "\$2" = prepare ] && [ "\$3" = begin ] && [ -e "$T/r1/hold" ]; then
	touch "$T/r1/held"
	i=0
	while [ -e "$T/r1/hold" ] && [ \$i -lt 1200 ]; do sleep 0.1; i=\$((i + 1)); done
fi
exit 0
HOOK
lv_remote_start r1 "$T/hook"
lv_remote_start r2
R1=${LV_REMOTE_URI[r1]} R2=${LV_REMOTE_URI[r2]}
cat >"$T/runnerd.conf" <<CONF
[host r1]
uri = $R1
capacity = 2
labels = one

[host r2]
uri = $R2
capacity = 2
labels = two
CONF
start_daemon runnerd --config "$T/runnerd.conf" --max-concurrent 4

# big NAME MiB: a copy of mb_hello with MiB of zeros appended (still a multiboot ELF: the header is in the first
# 8 KiB, QEMU loads only the program headers); NAME's digest → BIG_SHA.
big() {
	cp "$FX/mb_hello" "$T/$1"
	head -c "$(($2 << 20))" /dev/zero >>"$T/$1"
	printf '%s' "$1" >>"$T/$1" # each its own digest
	BIG_SHA=$(sha256sum "$T/$1" | cut -d' ' -f1)
}
# bg_run NAME ukrun-args...: in the background; BG_PID
bg_run() {
	local name=$1
	shift
	"$UKRUN" "$@" </dev/null >"$T/$name.out" 2>"$T/$name.err" &
	BG_PID=$!
}
# wait_volume HOST SHA: bounded wait until the volume SHA exists in HOST's pool (its upload has begun).
wait_volume() {
	for _ in $(seq 600); do
		virsh -q -c "${LV_REMOTE_URI[$1]}" vol-list ukrun 2>/dev/null | grep -q "$2" && return 0
		sleep 0.1
	done
	fail "no volume $2 appeared on $1"
}
lvd_signal() { kill "-$2" "$(cat "$T/$1/libvirtd.pid")"; }

# ---- r2's run starts and ends while r1's libvirtd holds a domain start: starts go on each host's worker ----
touch "$T/r1/hold"
bg_run held --host r1 --timeout 300 "$FX/mb_hello"
held=$BG_PID
for _ in $(seq 600); do
	[[ -e $T/r1/held ]] && break
	sleep 0.1
done
[[ -e $T/r1/held ]] || fail "r1's libvirtd never reached the start of the held domain"
heldid=$(last_run_id)
bg_run free --host r2 "$FX/mb_hello"
free=$BG_PID
for _ in $(seq 600); do
	kill -0 "$free" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$free" 2>/dev/null && { rm -f "$T/r1/hold"; fail "r2's run did not end while r1's libvirtd held a start (60 s)"; }
wait_rc "$free"
expect_rc free 0
freeid=$(last_run_id)
expect_record "$freeid" done 0 lifecycle
rm -f "$T/r1/hold"
wait_rc "$held"
((RC == 0)) || { cat "$T/held.err" >&2; fail "the held run on r1 exited $RC"; }
expect_record "$heldid" done 0 lifecycle
grep -q '^Hello from mb_hello$' "$T/held.out" || fail "the held run's console: $(head -c 300 "$T/held.out")"
order=$(sql "SELECT f.ended_at <= h.started_at FROM runs f, runs h WHERE f.id = $freeid AND h.id = $heldid")
[[ $order == 1 ]] || fail "r2's run did not end before r1's held start: $(sql "SELECT id, started_at, ended_at FROM runs WHERE id IN ($freeid, $heldid)")"
log "r2's run ended while r1's libvirtd held a domain start"

# ---- r2 runs while r1 receives a big image ----
big mb_big1 400
bg_run big1 --host r1 --timeout 300 "$T/mb_big1"
big1=$BG_PID
wait_volume r1 "$BIG_SHA"
lvd_signal r1 STOP # the upload stays in progress: r1 answers nothing
big1id=$(last_run_id)
[[ $(sql "SELECT state FROM runs WHERE id = $big1id") == starting ]] ||
	fail "the big run is not at its start: $(sql "SELECT state FROM runs WHERE id = $big1id")"
# Bounded (120 s) wait: with one thread for every host, r2's start waits behind r1's upload for ever.
bg_run small --host r2 "$FX/mb_hello"
small=$BG_PID
for _ in $(seq 1200); do
	kill -0 "$small" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$small" 2>/dev/null && fail "r2's run did not end while r1's upload was held (120 s)"
wait_rc "$small"
expect_rc small 0
smallid=$(last_run_id)
expect_record "$smallid" done 0 lifecycle
[[ $(sql "SELECT host FROM runs WHERE id = $smallid") == r2 ]] || fail "the small run did not run on r2"
grep -q '^Hello from mb_hello$' "$T/small.out" || fail "the small run's console: $(head -c 300 "$T/small.out")"
lvd_signal r1 CONT
wait_rc "$big1"
((RC == 0)) || { cat "$T/big1.err" >&2; fail "the big run on r1 exited $RC"; }
expect_record "$big1id" done 0 lifecycle
[[ $(sql "SELECT value FROM run_facts WHERE run_id = $big1id AND key = 'image_upload'") == $(stat -c %s "$T/mb_big1") ]] ||
	fail "the big image was not uploaded to r1 by its run"
order=$(sql "SELECT s.ended_at < b.started_at FROM runs s, runs b WHERE s.id = $smallid AND b.id = $big1id")
[[ $order == 1 ]] || fail "r2's run did not end before r1's upload did: $(sql "SELECT id, started_at, ended_at FROM runs WHERE id IN ($smallid, $big1id)")"
log "r2's run ended before r1's run, at its upload, started"

# ---- a cancel during the upload: the run ends cancelled when the upload is back ----
big mb_big2 200
bg_run big2 --host r2 --timeout 300 "$T/mb_big2"
big2=$BG_PID
wait_volume r2 "$BIG_SHA"
lvd_signal r2 STOP
big2id=$(last_run_id)
"$UKRUN" cancel "$big2id" >/dev/null
lvd_signal r2 CONT
wait_rc "$big2"
((RC == 130)) || { cat "$T/big2.err" >&2; fail "the run cancelled at its upload exited $RC, want 130"; }
[[ $(sql "SELECT state FROM runs WHERE id = $big2id") == cancelled ]] ||
	fail "the cancelled run's state: $(sql "SELECT state FROM runs WHERE id = $big2id")"
[[ -z $(lv_remote_domains r2) ]] || fail "a domain was left on r2: $(lv_remote_domains r2)"

# ---- r1's libvirtd killed during an upload: the run ends lost, naming the connection ----
big mb_big3 400
bg_run big3 --host r1 --timeout 300 "$T/mb_big3"
big3=$BG_PID
wait_volume r1 "$BIG_SHA"
big3id=$(last_run_id)
lv_remote_kill r1 KILL
wait_rc "$big3"
((RC == 125)) || { cat "$T/big3.err" >&2; fail "the run whose host was lost at its upload exited $RC, want 125"; }
grep -qF "lost the connection to libvirtd at $R1" "$T/big3.err" || { cat "$T/big3.err" >&2; fail "no reason naming r1"; }
[[ $(sql "SELECT state || ' ' || exit_code || ' ' || exit_source FROM runs WHERE id = $big3id") == "lost 125 host" ]] ||
	fail "the lost run's record: $(sql "SELECT state, exit_code, exit_source FROM runs WHERE id = $big3id")"
# r2 is still served.
expect_run after 0 lifecycle qemu/libvirt --host r2 "$FX/mb_hello"

# ---- runnerd stopped during an upload: the worker is stopped (the upload aborted), a clean exit ----
big mb_big4 400
bg_run big4 --host r2 --timeout 300 "$T/mb_big4"
big4=$BG_PID
wait_volume r2 "$BIG_SHA"
stop_daemon "$DAEMON_PID"
wait_rc "$big4"
((RC != 0)) || fail "the run whose upload runnerd stopped exited 0"

# ---- runnerd SIGKILLed during an upload: the volume it left is not the image; the next run uploads it again ----
start_daemon runnerd --config "$T/runnerd.conf" --max-concurrent 4
big mb_big5 400
big5_sha=$BIG_SHA
bg_run big5 --host r2 --timeout 300 "$T/mb_big5"
big5=$BG_PID
wait_volume r2 "$big5_sha"
lvd_signal r2 STOP # the upload cannot finish before runnerd dies (a local 400 MiB copy can take < 1 s)
kill -KILL "$DAEMON_PID"
wait_pid_gone "$DAEMON_PID" 20 || { lvd_signal r2 CONT; fail "runnerd did not die on SIGKILL"; }
forget_daemon "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
lvd_signal r2 CONT
wait_rc "$big5"
((RC != 0)) || fail "the run whose runnerd was killed at its upload exited 0"
vols=$(virsh -q -c "$R2" vol-list ukrun 2>/dev/null)
grep -q "$big5_sha " <<<"$vols" || fail "no unfinished volume was left on r2: $vols"
! grep -q "$big5_sha.complete" <<<"$vols" || fail "the upload finished before runnerd was killed: $vols"
start_daemon runnerd --config "$T/runnerd.conf" --max-concurrent 4
expect_run big5again 0 lifecycle qemu/libvirt --host r2 "$T/mb_big5"
id=$(last_run_id)
[[ $(sql "SELECT value FROM run_facts WHERE run_id = $id AND key = 'image_upload'") == $(stat -c %s "$T/mb_big5") ]] ||
	fail "the unfinished volume was taken for the image: run $id did not upload it again ($(sql "SELECT key || '=' || value FROM run_facts WHERE run_id = $id AND key LIKE 'image%'"))"
virsh -q -c "$R2" vol-download --pool ukrun "$big5_sha" "$T/big5.down" >/dev/null
[[ $(sha256sum "$T/big5.down" | cut -d' ' -f1) == "$big5_sha" ]] || fail "r2's volume $big5_sha does not hold the image"
rm -f "$T/big5.down"
log "ok"
