#!/usr/bin/env bash
# Without a Xen host: GET /v1/hosts shows the xen driver unavailable with a one-line reason naming Xen and what
# is missing, and `ukrun IMAGE_xen-x86_64` exits 125 with that reason (the real Unikraft Xen image when
# ../shared/fixtures is present, and a synthetic Xen PV ELF always). `--xen-uri` reaches the driver's probe:
# on libvirt's test:///default the driver is available and a run goes through it to its timeout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[[ ! -e /proc/xen ]] || skip "this machine is a Xen host (/proc/xen exists)"

# A static x86-64 ELF64 with one "Xen" GUEST_OS note: detect routes it to platform xen.
"$PYTHON" - "$T/synth_xen-x86_64" <<'PY'
import struct, sys
b = bytearray(4096)
b[0:16] = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
b[16:64] = struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x100000, 64, 0, 0, 64, 56, 2, 0, 0, 0)
b[64:120] = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x100000, 0x100000, 4096, 4096, 4096)
b[120:176] = struct.pack("<IIQQQQQQ", 4, 4, 512, 0, 0, 20, 20, 4)
b[512:532] = struct.pack("<III4sI", 4, 4, 6, b"Xen\0", 0)
open(sys.argv[1], "wb").write(b)
PY

start_daemon runnerd
api GET /v1/hosts
[[ $HTTP_STATUS == 200 ]] || fail "GET /v1/hosts: $HTTP_STATUS"
"$PYTHON" - "$API_BODY" <<'PY' || fail "GET /v1/hosts: $API_BODY"
import json, sys
d = {x["name"]: x for x in json.loads(sys.argv[1])["hosts"][0]["drivers"]}
x = d["xen"]
assert x["available"] is False and x["platforms"] == ["xen"] and "info" not in x, x
assert x["reason"].startswith("no Xen hypervisor: /proc/xen absent"), x
assert "\n" not in x["reason"], x
PY

images=("$T/synth_xen-x86_64")
real=$UKRUN_SHARED_FIXTURES/helloworld_xen-x86_64
if [[ -r $real ]]; then
	images+=("$real")
else
	log "the real Unikraft Xen image is absent ($real): only the synthetic one is run"
fi
for img in "${images[@]}"; do
	run_ukrun refused "$img"
	expect_rc refused 125
	expect_err_grep refused 'driver xen is not usable here: no Xen hypervisor: /proc/xen absent'
done

# The URI setting reaches the probe: libvirt's test driver stands in for a Xen host.
start_daemon testxen --xen-uri test:///default
API_SOCKET=$T/testxen.sock api GET /v1/hosts
"$PYTHON" - "$API_BODY" <<'PY' || fail "GET /v1/hosts with --xen-uri test:///default: $API_BODY"
import json, sys
d = {x["name"]: x for x in json.loads(sys.argv[1])["hosts"][0]["drivers"]}
assert d["xen"]["available"] is True and "at test:///default (Xen " in d["xen"]["info"], d
PY
# A run through the whole path (core → xen driver → libvirt thread): the test driver's domain never ends by
# itself and has no console, so the timeout kills it (124) and the notes say what the run could not see.
run_ukrun viatest --socket "$T/testxen.sock" --timeout 2 "$T/synth_xen-x86_64" hello
expect_rc viatest 124
expect_err_grep viatest 'xen at test:///default offers no console'
expect_err_grep viatest 'domain ukrun-[0-9a-z]+-[0-9a-f]{8} on test:///default \(Xen\)'
log "ok"
