#!/usr/bin/env bash
# libvirt driver clean-up when runnerd dies: SIGKILL mid-run → libvirtd destroys the domain (autodestroy) and the
# next runnerd marks the run `lost`; domains that a dead daemon left (e.g. across a libvirtd restart) are reaped at
# the next start — only those whose metadata names this daemon, never another daemon's.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_libvirt.sh"

start_daemon runnerd
pid=$DAEMON_PID
"$UKRUN" --driver libvirt "$FX/mb_hang" >"$T/hang.out" 2>"$T/hang.err" &
cpid=$!
id=$(wait_run_id mb_hang)
wait_state "$id" running 60
[[ -n $(lv_owned_domains) ]] || fail "no libvirt domain for the running run"
kill -KILL "$pid"
wait_pid_gone "$pid" 10 || fail "runnerd survived SIGKILL"
forget_daemon "$pid"
wait "$pid" 2>/dev/null || true
wait_rc "$cpid" # the client loses its daemon
lv_wait_no_domains 20 || fail "the domain outlived its runnerd: $(lv_owned_domains)"

# A leftover of ours and one of another daemon, as a libvirtd that outlived runnerd would hold them.
runs=$(realpath "$T/data/runs")
mkxml() { # name owner
	cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <metadata><ukrun:run xmlns:ukrun='$LV_NS'><owner>$2</owner><id>0</id></ukrun:run></metadata>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$runs/$id/image/mb_hang</kernel></os>
  <devices><controller type='usb' model='none'/><memballoon model='none'/></devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
XML
}
tag=$$
mkxml "ukrun-ours-$tag" "$(hostname):$runs" >"$T/ours.xml"
mkxml "ukrun-theirs-$tag" "$(hostname):$T/other-daemon/runs" >"$T/theirs.xml"
virsh -q -c "$LV_URI" create "$T/ours.xml" >/dev/null || fail "cannot create the leftover domain"
virsh -q -c "$LV_URI" create "$T/theirs.xml" >/dev/null || fail "cannot create the foreign domain"

start_daemon runnerd
expect_record_state=$(sql "SELECT state FROM runs WHERE id = $id")
[[ $expect_record_state == lost ]] || fail "run $id is '$expect_record_state' after the restart, want lost"
virsh -q -c "$LV_URI" domstate "ukrun-ours-$tag" >/dev/null 2>&1 && fail "our leftover domain was not reaped"
st=$(virsh -q -c "$LV_URI" domstate "ukrun-theirs-$tag" 2>/dev/null || true)
virsh -q -c "$LV_URI" destroy "ukrun-theirs-$tag" >/dev/null 2>&1 || true
[[ $st == running ]] || fail "another daemon's domain was touched (state '$st')"
grep -q 'removed 1 guest' "$T/runnerd.log" || fail "the reap is not logged"
