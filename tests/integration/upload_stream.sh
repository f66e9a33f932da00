#!/usr/bin/env bash
# Image uploads large enough to go through runnerd's worker in several chunks (and so through its backpressure:
# the connection is held while the worker is behind): a 24 MiB upload is stored byte for byte while /healthz on
# another connection keeps answering, and the same keep-alive connection serves its next request (a hold from the
# body's last bytes is released); a body that does not hash to its claimed digest is refused (400
# digest_mismatch) and one cut short by the client is dropped, both leaving nothing in the store or its temporary
# directory; the daemon goes on serving and stops cleanly.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd

CONNLIB=$(dirname "$0")/connlib.py
PYTHONPATH=$(dirname "$CONNLIB") "$PYTHON" - "$UKRUN_SOCKET" "$T/data/images" <<'PY'
import hashlib, os, socket, sys, threading, time
import connlib as c

sock, images = sys.argv[1], sys.argv[2]
tmpdir = os.path.join(images, ".tmp")
MIB = 1 << 20


def stored(sha):
    s = c.unix(sock)
    st, _, _ = c.request(s, b"GET /v1/images/%s HTTP/1.1\r\nHost: x\r\n\r\n" % sha.encode())
    s.close()
    return st


def healthz(s):
    st, _, body = c.request(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    if st != 200:
        c.fail("/healthz: %d %r" % (st, body))


def put_head(sha, length):
    return b"PUT /v1/images/%s?name=big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (sha.encode(), length)


def send_body(s, data, upto=None):
    view = memoryview(data)[: len(data) if upto is None else upto]
    for off in range(0, len(view), 256 * 1024):
        s.sendall(view[off:off + 256 * 1024])


def tmp_empty():
    """The temporary directory empties (an aborted chunk's file goes once the worker returns): bounded wait."""
    deadline = time.monotonic() + c.SAFETY_S
    while os.listdir(tmpdir):
        if time.monotonic() > deadline:
            c.fail("left in %s: %s" % (tmpdir, os.listdir(tmpdir)))
        time.sleep(0.05)


# 1. A 24 MiB upload while another client asks /healthz over and over.
data = os.urandom(24 * MIB)
sha = hashlib.sha256(data).hexdigest()
up = c.unix(sock)
up.sendall(put_head(sha, len(data)))
sender = threading.Thread(target=send_body, args=(up, data))
sender.start()
probe = c.unix(sock)
answered = 0
while sender.is_alive():
    healthz(probe)
    answered += 1
sender.join()
healthz(probe)
st, _, body = c.request(up, b"")
if st != 201:
    c.fail("PUT of 24 MiB: %d %r" % (st, body))
with open(os.path.join(images, sha), "rb") as f:
    if f.read() != data:
        c.fail("the stored image differs from what was sent")
healthz(up)  # the upload's own keep-alive connection reads on after the body
up.close()
if stored(sha) != 200:
    c.fail("GET /v1/images/SHA after the upload is not 200")
tmp_empty()
print("stored 24 MiB; /healthz answered %d times during the upload" % answered)

# 2. A corrupt body: the claimed digest is of other bytes.
bad = bytearray(os.urandom(8 * MIB))
claimed = hashlib.sha256(bad).hexdigest()
bad[5 * MIB] ^= 1
s = c.unix(sock)
s.sendall(put_head(claimed, len(bad)))
send_body(s, bad)
st, _, body = c.request(s, b"")
if st != 400 or c.error_code(body) != "digest_mismatch":
    c.fail("corrupt body: %d %r" % (st, body))
s.close()
if stored(claimed) != 404 or os.path.exists(os.path.join(images, claimed)):
    c.fail("a corrupt body was stored")
tmp_empty()

# 3. A body cut short: the client sends 5 of 8 MiB and goes away (chunks are on the worker when it does).
short = os.urandom(8 * MIB)
ssha = hashlib.sha256(short).hexdigest()
s = c.unix(sock)
s.sendall(put_head(ssha, len(short)))
send_body(s, short, upto=5 * MIB)
s.close()
tmp_empty()
if stored(ssha) != 404 or os.path.exists(os.path.join(images, ssha)):
    c.fail("a short body was stored")
healthz(probe)
probe.close()
PY
healthy "$UKRUN_SOCKET" || fail "runnerd stopped answering"
log "ok"
