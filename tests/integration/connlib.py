"""connlib.py — raw client connections for conn_limits.sh: idle, slow, half-closed and trickling
peers against a real runnerd. Every wait is bounded (a safety net against a hung test, never a
timing assertion); a failed check exits 1 with a message."""
import hashlib
import json
import socket
import sys
import time

SAFETY_S = 20


def fail(msg):
    print("connlib: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def tcp(port):
    return socket.create_connection(("127.0.0.1", port))


def read_until_eof(s, limit=SAFETY_S):
    """Everything the server sends until it closes; None if it is still open after `limit` s."""
    s.settimeout(limit)
    data = b""
    deadline = time.monotonic() + limit
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
        if time.monotonic() > deadline:
            return None
        s.settimeout(max(0.1, deadline - time.monotonic()))


def closed_now(s, wait=0.0):
    """True when the server has closed `s` (EOF or reset) within `wait` s."""
    s.settimeout(wait if wait > 0 else 0.0001)
    try:
        return s.recv(65536, socket.MSG_PEEK) == b""
    except (socket.timeout, BlockingIOError):
        return False
    except ConnectionResetError:
        return True


def parse(data):
    """(status, headers dict, body) of one Content-Length or chunked response."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            body += rest[:n]
            rest = rest[n + 2:]
        return status, headers, body
    return status, headers, rest[: int(headers.get("content-length", "0"))]


def request(s, raw):
    """Send `raw` and read one response (the connection may stay open)."""
    s.sendall(raw)
    s.settimeout(SAFETY_S)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            fail("connection closed before a response: %r" % data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            fail("connection closed inside a response")
        body += chunk
    return parse(head + b"\r\n\r\n" + body)


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def put_trickled(s, path, pieces, pause):
    """PUT the file at `path` as an image, its body in `pieces` pieces `pause` s apart."""
    data = open(path, "rb").read()
    sha = hashlib.sha256(data).hexdigest()
    s.sendall(b"PUT /v1/images/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (sha.encode(), len(data)))
    step = (len(data) + pieces - 1) // pieces
    for off in range(0, len(data), step):
        time.sleep(pause)
        s.sendall(data[off:off + step])
    return request(s, b""), sha
