#!/usr/bin/env bash
# GET /v1/hosts lists the local host with its capacity, load and every driver: `available` with the probe's
# summary, or `available: false` with a one-line reason (here: the qemu binary named by UKRUN_QEMU is missing),
# and a run for an unavailable driver is refused with that reason.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd --max-concurrent 3
api GET /v1/hosts
[[ $HTTP_STATUS == 200 ]] || fail "GET /v1/hosts: $HTTP_STATUS"
"$PYTHON" - "$API_BODY" <<'PY' || fail "GET /v1/hosts: $API_BODY"
import json, sys
h = json.loads(sys.argv[1])["hosts"]
assert len(h) == 1 and h[0]["name"] == "local" and h[0]["capacity"] == 3, h
assert h[0]["active"] == 0 and h[0]["queued"] == 0, h
d = {x["name"]: x for x in h[0]["drivers"]}
assert d["qemu"]["available"] is True and d["qemu"]["platforms"] == ["qemu"] and d["qemu"]["info"].startswith("qemu "), d
assert d["linuxu"]["available"] is True and d["linuxu"]["platforms"] == ["linuxu"] and "bubblewrap" in d["linuxu"]["info"], d
PY

UKRUN_QEMU=$T/no-such-qemu start_daemon noqemu
API_SOCKET=$T/noqemu.sock api GET /v1/hosts
"$PYTHON" - "$API_BODY" <<'PY' || fail "GET /v1/hosts without qemu: $API_BODY"
import json, sys
d = {x["name"]: x for x in json.loads(sys.argv[1])["hosts"][0]["drivers"]}
assert d["qemu"]["available"] is False and "no-such-qemu" in d["qemu"]["reason"] and "info" not in d["qemu"], d
assert "\n" not in d["qemu"]["reason"], d
assert d["linuxu"]["available"] is True, d
PY
api GET /metrics
grep -qx 'ukrun_host_capacity{host="local"} 3' <<<"$API_BODY" || fail "metrics: local capacity: $API_BODY"
grep -qx 'ukrun_host_runs{host="local",state="queued"} 0' <<<"$API_BODY" || fail "metrics: local queued: $API_BODY"
run_ukrun refused --socket "$T/noqemu.sock" "$FX/mb_hello"
expect_rc refused 125
expect_err_grep refused 'driver qemu is not usable here: .*no-such-qemu'
# --host: local is accepted, any other name refused with the list.
run_ukrun pinned --host local "$FX/lx_exit" 4
expect_rc pinned 4
run_ukrun elsewhere --host farm-7 "$FX/lx_exit" 4
expect_rc elsewhere 2
expect_err_grep elsewhere "unknown host 'farm-7' \\(this runnerd has: local\\)"
log "ok"
