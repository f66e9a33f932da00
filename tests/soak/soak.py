#!/usr/bin/env python3
"""soak.py — a bounded, loopback-only soak of runnerd (tests/soak/README.md).

One real runnerd on a private Unix socket; for --duration seconds, workers in parallel drive it through the
real ukrun client and raw HTTP: linuxu runs with random exit codes, qemu runs (hello and a failing libtest),
console followers of flooding runs, uploads/HEAD/DELETE of unique images, runs cancelled mid-flight, and hostile
connections (garbage, truncated and oversized requests, bad JSON, half-sent headers). Every run must end with its
exact verdict. The daemon's descriptors, RSS and sqlite files are sampled throughout; at the end, once idle, they
must be flat: descriptors back at the baseline, RSS and the WAL bounded, the database growing by at most a few
KiB per run. Exit 0 when every check holds (prints 'N passed, 0 failed'), 1 otherwise.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--duration", type=float, default=float(os.environ.get("UKRUN_SOAK_SECONDS", "120")))
ap.add_argument("--bin-dir", default=os.environ.get("UKRUN_BIN_DIR"))
ap.add_argument("--fixture-dir", default=os.environ.get("UKRUN_FIXTURE_DIR"))
ap.add_argument("--keep", action="store_true", help="keep the temp dir")
args = ap.parse_args()
if not args.bin_dir or not args.fixture_dir:
    sys.exit("soak: --bin-dir and --fixture-dir (or UKRUN_BIN_DIR, UKRUN_FIXTURE_DIR) are required")

UKRUN = os.path.join(args.bin_dir, "ukrun")
RUNNERD = os.path.join(args.bin_dir, "runnerd")
FX = args.fixture_dir
T = tempfile.mkdtemp(prefix="ukrun-soak.")
SOCK = os.path.join(T, "runnerd.sock")
DATA = os.path.join(T, "data")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("UKRUN_")}
ENV.update(UKRUN_SOCKET=SOCK, XDG_RUNTIME_DIR=os.path.join(T, "xdg"), XDG_DATA_HOME=os.path.join(T, "xdgd"),
           XDG_CONFIG_HOME=os.path.join(T, "xdgc"))
os.makedirs(ENV["XDG_RUNTIME_DIR"], mode=0o700)

lock = threading.Lock()
counts = {}
failures = []
stop = threading.Event()


def note(kind, ok=True, why=""):
    with lock:
        counts[kind] = counts.get(kind, 0) + 1
        if not ok:
            failures.append(f"{kind}: {why}")
            print(f"soak: FAIL {kind}: {why}", file=sys.stderr, flush=True)


def http(method, path, body=None, headers=None, timeout=30):
    """One request on a new Unix-socket connection; returns (status, body bytes)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(SOCK)
    h = {"Host": "runnerd", "Connection": "close"}
    if body is not None:
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    s.sendall(req.encode() + (body or b""))
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    if b"transfer-encoding: chunked" in head.lower():
        out, buf = b"", rest
        while buf:
            line, _, buf = buf.partition(b"\r\n")
            n = int(line.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, buf = out + buf[:n], buf[n + 2:]
        rest = out
    return status, rest


def ukrun(*argv, timeout=120):
    return subprocess.run([UKRUN, *argv], env=ENV, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def loop(fn):
    def body():
        while not stop.is_set():
            try:
                fn()
            except Exception as e:  # a worker that breaks is a failure, not a silent stop
                note(fn.__name__, False, repr(e))
                time.sleep(0.5)
    return threading.Thread(target=body, name=fn.__name__, daemon=True)


def linuxu():
    code = random.randrange(0, 10)
    r = ukrun(os.path.join(FX, "lx_exit"), str(code))
    note("linuxu", r.returncode == code, f"exit {r.returncode}, want {code}: {r.stderr[-300:]!r}")


def qemu():
    if random.random() < 0.5:
        r = ukrun("--timeout", "60", os.path.join(FX, "mb_hello"))
        note("qemu", r.returncode == 0 and r.stdout == b"Hello from mb_hello\n",
             f"mb_hello exit {r.returncode} out {r.stdout[:80]!r}")
    else:
        r = ukrun("--timeout", "60", os.path.join(FX, "mb_libtest"))
        note("qemu", r.returncode == 101, f"mb_libtest exit {r.returncode}, want 101")


FLOOD_LINES = 3000
FLOOD = "".join(f"line {i:06d} abcdefghijklmnopqrstuvwxyz0123456789\n" for i in range(1, FLOOD_LINES + 1)) + "flood done\n"


def follower():
    # The run's own client streams it; a second follower reads the same console through the API.
    sha = sha_of(os.path.join(FX, "lx_flood"))
    p = subprocess.Popen([UKRUN, os.path.join(FX, "lx_flood"), str(FLOOD_LINES)], env=ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_id = None
    for _ in range(200):
        st, body = http("GET", f"/v1/runs?image={sha}&limit=1")
        runs = json.loads(body).get("runs", []) if st == 200 else []
        if runs and runs[0]["id"] not in seen_flood:
            run_id = runs[0]["id"]
            seen_flood.add(run_id)
            break
        time.sleep(0.02)
    out, err = p.communicate(timeout=120)
    note("flood-client", p.returncode == 0 and out.decode() == FLOOD, f"exit {p.returncode}, {len(out)} bytes")
    if run_id is not None:
        st, body = http("GET", f"/v1/runs/{run_id}/console?follow=1")
        note("follower", st == 200 and body.decode() == FLOOD, f"status {st}, {len(body)} bytes")


seen_flood = set()


def sha_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def uploads():
    blob = os.urandom(64 * 1024)
    sha = hashlib.sha256(blob).hexdigest()
    st, _ = http("HEAD", f"/v1/images/{sha}")
    note("upload", st == 404, f"HEAD of a new image {st}")
    st, _ = http("PUT", f"/v1/images/{sha}", blob, {"Content-Type": "application/octet-stream"})
    note("upload", st == 201, f"PUT {st}")
    st, _ = http("HEAD", f"/v1/images/{sha}")
    note("upload", st == 200, f"HEAD after PUT {st}")
    bad = hashlib.sha256(blob + b"x").hexdigest()
    st, _ = http("PUT", f"/v1/images/{bad}", blob, {"Content-Type": "application/octet-stream"})
    note("upload", st == 400, f"PUT with a wrong digest {st}")
    st, _ = http("DELETE", f"/v1/images/{sha}")
    note("upload", st == 204, f"DELETE {st}")


def cancels():
    p = subprocess.Popen([UKRUN, "--timeout", "60", os.path.join(FX, "lx_hang")], env=ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = p.stdout.read(8)  # "hanging\n" once the guest really runs
    sha = sha_of(os.path.join(FX, "lx_hang"))
    st, body = http("GET", f"/v1/runs?image={sha}&state=running&limit=10")
    ids = [r["id"] for r in json.loads(body).get("runs", [])] if st == 200 else []
    for i in ids:
        http("POST", f"/v1/runs/{i}/cancel")
    p.wait(timeout=60)
    note("cancel", got == b"hanging\n" and p.returncode == 130, f"client exit {p.returncode}, read {got!r}")


def hostile():
    kind = random.randrange(6)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    try:
        if kind == 0:
            s.sendall(b"GARBAGE\r\n\r\n")
        elif kind == 1:
            s.sendall(b"GET /v1/runs HTTP/1.1\r\nHost: x\r\nX-Half: ")  # then vanish mid-header
            s.close()
            note("hostile")
            return
        elif kind == 2:
            try:  # the daemon may answer 431 and close before the whole header is sent
                s.sendall(b"GET /v1/runs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif kind == 3:
            body = b'{"image": [1, 2, {"nested": ' * 50
            s.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
        elif kind == 4:
            s.sendall(b"PUT /v1/images/" + b"0" * 64 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
        else:
            s.sendall(b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while len(data) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if kind in (0, 2, 3, 4) and b"\r\n\r\n" in data:
                    break
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            note("hostile", False, f"kind {kind}: no answer in 10 s ({data[:120]!r})")
            return
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        note("hostile", 400 <= status < 500 or (kind == 2 and status in (0, 431)),
             f"kind {kind}: status {status} {data[:120]!r}")
    finally:
        s.close()
    time.sleep(0.05)


def sample(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    db = os.path.getsize(os.path.join(DATA, "runnerd.db"))
    walp = os.path.join(DATA, "runnerd.db-wal")
    wal = os.path.getsize(walp) if os.path.exists(walp) else 0
    return {"fds": fds, "rss_kb": rss, "db": db, "wal": wal}


def healthy():
    try:
        st, body = http("GET", "/healthz", timeout=5)
        return st == 200
    except OSError:
        return False


def main():
    log = open(os.path.join(T, "runnerd.stdio.log"), "wb")
    d = subprocess.Popen([RUNNERD, "--socket", SOCK, "--data-dir", DATA, "--idle-timeout", "0", "--log",
                          os.path.join(T, "runnerd.log"), "--max-concurrent", "4"], env=ENV,
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(150):
        if healthy():
            break
        time.sleep(0.1)
    else:
        sys.exit("soak: runnerd did not start")
    ukrun(os.path.join(FX, "lx_exit"), "0")  # warm: images, lazily allocated state
    base = sample(d.pid)
    samples = [base]
    workers = [loop(f) for f in (linuxu, linuxu, qemu, follower, uploads, cancels, hostile)]
    for w in workers:
        w.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.duration:
        time.sleep(2)
        if d.poll() is not None:
            failures.append(f"runnerd exited with {d.returncode} during the soak")
            break
        samples.append(sample(d.pid))
    stop.set()
    for w in workers:
        w.join(timeout=150)
    ok = d.poll() is None
    # Idle again: every run ended, connections closed.
    for _ in range(100):
        st, body = http("GET", "/v1/runs?state=running&limit=5")
        st2, body2 = http("GET", "/v1/runs?state=queued&limit=5")
        if not json.loads(body)["runs"] and not json.loads(body2)["runs"]:
            break
        time.sleep(0.2)
    time.sleep(1)
    end = sample(d.pid)
    st, body = http("GET", "/v1/runs?limit=1")
    nruns = int(json.loads(body)["runs"][0]["id"])
    warm = samples[min(len(samples) - 1, max(1, len(samples) // 5))]
    checks = [
        ("runnerd alive and healthy", ok and healthy(), ""),
        ("descriptors back at the baseline", end["fds"] <= base["fds"] + 2, f"{base['fds']} → {end['fds']}"),
        ("RSS flat after warm-up", end["rss_kb"] <= warm["rss_kb"] * 1.5 + 4096,
         f"warm {warm['rss_kb']} KiB → end {end['rss_kb']} KiB"),
        ("WAL bounded", max(s["wal"] for s in samples + [end]) <= 16 << 20, f"max {max(s['wal'] for s in samples)}"),
        ("database growth per run bounded", (end["db"] - base["db"]) <= 8192 * max(nruns, 1),
         f"{base['db']} → {end['db']} bytes over {nruns} runs"),
    ]
    # Every run in the store ended with a final state (no queued/starting/running/lost left).
    st, body = http("GET", "/v1/runs?limit=1000")
    states = {}
    for r in json.loads(body)["runs"]:
        states[r["state"]] = states.get(r["state"], 0) + 1
    checks.append(("every run final", set(states) <= {"done", "cancelled"}, str(states)))
    d.send_signal(signal.SIGTERM)
    rc = d.wait(timeout=30)
    checks.append(("runnerd stops cleanly", rc == 0, f"exit {rc}"))
    with open(os.path.join(T, "runnerd.stdio.log"), "rb") as f:
        tail = f.read()
    checks.append(("no sanitizer report", b"Sanitizer" not in tail and b"runtime error:" not in tail, ""))
    print(f"soak: {args.duration:.0f} s, {nruns} runs, operations: {json.dumps(counts, sort_keys=True)}")
    print(f"soak: samples fds {[s['fds'] for s in samples]}")
    print(f"soak: samples rss_kb {[s['rss_kb'] for s in samples]}")
    print(f"soak: db {base['db']} → {end['db']} bytes, wal max {max(s['wal'] for s in samples)} bytes")
    passed = failed = 0
    for name, good, detail in checks:
        print(f"soak: {'ok  ' if good else 'FAIL'} {name} {detail}")
        passed, failed = passed + good, failed + (not good)
    for f in failures:
        print(f"soak: FAIL {f}")
    failed += len(failures)
    passed += sum(counts.values()) - len(failures)
    print(f"{passed} passed, {failed} failed")
    if not args.keep:
        shutil.rmtree(T, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
