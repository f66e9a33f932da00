#!/usr/bin/env bash
# qemu driver: a guest that never ends is killed at --timeout; ukrun exits 124 like timeout(1) and the guest's
# QEMU is gone by the time the run is recorded as ended.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd

run_ukrun hang --timeout 2 "$FX/mb_hang"
expect_rc hang 124
expect_out hang $'hanging\n'
expect_err_grep hang 'tim(e|ed) ?out'
id=$(last_run_id)
expect_record "$id" timeout 124 timeout
[[ $(sql "SELECT timeout_s FROM runs WHERE id = $id") == 2 ]] || fail "timeout_s not recorded as 2"

# The run is over: its QEMU (whose command line names the run's directory) must be gone already.
left=$(pgrep -f -- "$T/data/runs/" || true)
[[ -z $left ]] || { ps -o pid,args -p "$(echo $left | tr ' ' ,)" >&2; fail "QEMU still running after the timeout"; }

# The daemon is still healthy and idle afterwards.
healthy || fail "runnerd unhealthy after a timeout"
[[ $(curl -sS --unix-socket "$UKRUN_SOCKET" http://runnerd/healthz | jget active) == 0 ]] || fail "runs still active"
