#!/usr/bin/env python3
"""Coordinator capacity: one runnerd driven to saturation through its HTTP API.

Measures what bounds one runnerd acting as a farm coordinator (docs/farm.md):
  runs      sustained runs/s end to end (upload once, then per run: POST /v1/runs, follow the
            console to its end, GET the record) with C clients at once (1, 2, 4, 8, 16) for
            lx_exit (static program, linuxu driver) and mb_exit7 (multiboot kernel, qemu driver).
  store     sqlite: (a) through the API, POST /v1/runs rate while every run stays queued (the
            one slot held by lx_hang) and the cancel rate of those queued runs (a finish each);
            (b) in-process floor: python's sqlite3 on the schema files (schema/*.sql), WAL +
            synchronous=NORMAL + foreign_keys=ON as runnerd/store.c opens the store, the same
            statements per run as runnerd (insert transaction, image touch, state starting,
            facts, state running, note, finish), one connection, autocommit like runnerd.
  console   bytes/s absorbed: N lx_flood runs at once (each followed by one client), and N
            followers of one lx_flood run.
  hosts     runnerd.conf with H `[host hN]` sections (uri test:///default: libvirt's in-process
            test driver, accepted by the libvirt driver's probe without any daemon): start-up
            time, GET /v1/hosts and /metrics latency, linuxu runs/s with H hosts configured, and a
            burst of 2 runs pinned per test host (ended by a 1 s timeout): the libvirt thread's own
            cost per start, with no network and no QEMU.
  remote    (root, unshare, libvirtd) --remote N extra libvirtds in private mount namespaces, reached
            only as qemu+tcp://127.0.0.1:PORT/system (as tests/integration/libvirt_remote.sh): pinned
            runs round-robin, a burst of starts (their spacing on the one libvirt thread), the same
            burst split over two runnerds, and another host's console gaps while a --big-mb image
            uploads to one host.
Event-loop latency: one client polls GET /healthz (keep-alive, every 20 ms) during every load;
p50/p99/max are printed beside each figure.

Numbers only; it fails only when something does not work (wrong exit code, wrong console bytes,
runnerd does not start). --quick: fewer runs, fewer concurrency levels.
"""

import hashlib
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchlib as bl

MB = 1e6
RUNNER_ERRORS = []  # (run id, reason) of runs that ended in a runner error (exit 125)


class UConn(http.client.HTTPConnection):
	"""HTTP/1.1 over runnerd's Unix socket."""

	def __init__(self, path, timeout=600):
		super().__init__("ukrun", timeout=timeout)
		self.path = path

	def connect(self):
		s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		s.settimeout(self.timeout)
		s.connect(self.path)
		self.sock = s


def req(c, method, url, body=None, headers=None):
	"""One request on connection c; returns (status, body bytes)."""
	h = dict(headers or {})
	if isinstance(body, (dict, list)):
		body = json.dumps(body).encode()
		h["Content-Type"] = "application/json"
	c.request(method, url, body=body, headers=h)
	r = c.getresponse()
	return r.status, r.read()


def upload(sock, path):
	with open(path, "rb") as f:
		data = f.read()
	sha = hashlib.sha256(data).hexdigest()
	c = UConn(sock)
	st, b = req(c, "PUT", f"/v1/images/{sha}?name={os.path.basename(path)}", body=data)
	bl.check(st in (200, 201), f"PUT {path}: {st} {b[:200]}")
	c.close()
	return sha


def post_run(c, spec):
	st, b = req(c, "POST", "/v1/runs", body=spec)
	bl.check(st == 201, f"POST /v1/runs: {st} {b[:300]}")
	return json.loads(b)["id"]


def follow(c, rid):
	"""Read the console with follow=1 to its end; returns the bytes."""
	c.request("GET", f"/v1/runs/{rid}/console?follow=1")
	r = c.getresponse()
	bl.check(r.status == 200, f"console of run {rid}: {r.status}")
	out = []
	while True:
		chunk = r.read1(1 << 16) if hasattr(r, "read1") else r.read(1 << 16)
		if not chunk:
			break
		out.append(chunk)
	return b"".join(out)


def record(c, rid):
	st, b = req(c, "GET", f"/v1/runs/{rid}")
	bl.check(st == 200, f"GET run {rid}: {st}")
	return json.loads(b)


def one_run(c, spec, want_code, want_out=None):
	"""POST, follow to the end, GET the record; checks the exit code (and console)."""
	rid = post_run(c, spec)
	out = follow(c, rid)
	rec = record(c, rid)
	ok = rec["state"] == "done" if want_code is None else rec["state"] in ("done", "error") and rec["exit_code"] == want_code
	if not ok and rec["state"] == "error" and rec.get("exit_source") == "runner":
		# A runner error (125) is ukrun failing, not the bench: counted and printed at the end, the
		# measurement goes on (a rate with these runs counted as done would overstate nothing: they end faster).
		RUNNER_ERRORS.append((rid, rec.get("reason")))
		return rid, len(out)
	bl.check(ok,
	         f"run {rid}: state {rec['state']} exit {rec['exit_code']}, want {want_code}: {rec.get('reason')}")
	if want_out is not None:
		bl.check(out == want_out, f"run {rid}: console {out[:80]!r}, want {want_out[:80]!r}")
	return rid, len(out)


class Prober:
	"""GET /healthz every 20 ms on one keep-alive connection; latencies per phase."""

	def __init__(self, sock):
		self.sock = sock
		self.lat = []
		self.stop_ev = threading.Event()
		self.lock = threading.Lock()
		self.t = threading.Thread(target=self.loop, daemon=True)
		self.t.start()

	def loop(self):
		c = UConn(self.sock, timeout=60)
		while not self.stop_ev.is_set():
			t0 = time.perf_counter()
			try:
				st, _ = req(c, "GET", "/healthz")
			except (OSError, http.client.HTTPException):
				c.close()
				c = UConn(self.sock, timeout=60)
				continue
			dt = time.perf_counter() - t0
			if st == 200:
				with self.lock:
					self.lat.append(dt)
			self.stop_ev.wait(0.02)
		c.close()

	def take(self):
		"""Latencies since the last take (and forget them)."""
		with self.lock:
			xs, self.lat = self.lat, []
		return xs

	def close(self):
		self.stop_ev.set()
		self.t.join()


def cpu_s(pid):
	"""runnerd's CPU time so far (user + system, all its threads; not its children), seconds."""
	with open(f"/proc/{pid}/stat") as f:
		w = f.read().rsplit(")", 1)[1].split()
	return (int(w[11]) + int(w[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs, p):
	if not xs:
		return float("nan")
	xs = sorted(xs)
	return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def lat_str(xs):
	if not xs:
		return "healthz: no sample"
	return (f"healthz p50 {pct(xs, 50) * 1000:6.1f} ms  p99 {pct(xs, 99) * 1000:6.1f}  "
	        f"max {max(xs) * 1000:6.1f}  (n={len(xs)})")


def closed_loop(sock, spec, want_code, conc, total, want_out=None):
	"""conc clients, each running runs back to back until total runs are done; returns seconds."""
	left = [total]
	lock = threading.Lock()
	errs = []

	def client():
		c = UConn(sock)
		try:
			while True:
				with lock:
					if left[0] == 0:
						return
					left[0] -= 1
				one_run(c, spec, want_code, want_out)
		except SystemExit as e:  # bl.check in a thread
			errs.append(str(e))
		except Exception as e:  # noqa: BLE001 - report any failure of a client
			errs.append(repr(e))
		finally:
			c.close()

	ts = [threading.Thread(target=client) for _ in range(conc)]
	t0 = time.perf_counter()
	for t in ts:
		t.start()
	for t in ts:
		t.join()
	dt = time.perf_counter() - t0
	bl.check(not errs, f"client failed: {errs[:3]}")
	return dt


def bench_runs(args, d, prober, shas):
	print("\n== runs: sustained runs/s end to end (POST + follow console to the end + GET record)")
	print(f"   runnerd --max-concurrent {args.max_concurrent}; each level runs R runs, median of {args.reps} reps")
	kinds = [("lx_exit (linuxu)", {"image": shas["lx_exit"], "args": ["3"]}, 3, b"exit 3\n"),
	         ("mb_exit7 (qemu)", {"image": shas["mb_exit7"]}, 7, None)]
	results = {}
	for name, spec, code, out in kinds:
		c = UConn(d.sock)
		rid, _ = one_run(c, spec, code, out)  # warm
		rec = record(c, rid)
		c.close()
		name += f" accel {rec['accel']}" if rec.get("accel") else ""
		prober.take()
		for conc in args.conc:
			total = max(args.runs_per_level, conc * 2)
			rates = []
			cpu0 = cpu_s(d.proc.pid)
			for _ in range(args.reps):
				dt = closed_loop(d.sock, spec, code, conc, total, out)
				rates.append(total / dt)
			cpu = (cpu_s(d.proc.pid) - cpu0) / (total * args.reps)
			lat = prober.take()
			results[(name, conc)] = rates
			print(f"{name:26s} C={conc:2d}  {total:3d} runs  runs/s median {statistics.median(rates):6.2f} "
			      f"min {min(rates):6.2f} max {max(rates):6.2f}  runnerd CPU {cpu * 1000:5.2f} ms/run   {lat_str(lat)}")
	return results


def bench_store_api(args, d, prober, shas):
	print("\n== store through the API: POST /v1/runs while every run stays queued, then cancel them")
	c = UConn(d.sock)
	hang = post_run(c, {"image": shas["lx_hang"], "timeout_s": 600})
	for _ in range(200):
		if record(c, hang)["state"] == "running":
			break
		time.sleep(0.05)
	n = args.store_n
	prober.take()
	ids = []
	rss0 = d.status("VmRSS")
	cpu0 = cpu_s(d.proc.pid)
	t0 = time.perf_counter()
	for i in range(n):
		ids.append(post_run(c, {"image": shas["lx_exit"], "args": [str(i % 200)], "labels": {"bench": "farm"}}))
	dt_post = time.perf_counter() - t0
	cpu_post = (cpu_s(d.proc.pid) - cpu0) / n
	rss1 = d.status("VmRSS")
	lat_post = prober.take()
	cpu0 = cpu_s(d.proc.pid)
	t0 = time.perf_counter()
	for rid in ids:
		st, b = req(c, "POST", f"/v1/runs/{rid}/cancel")
		bl.check(st == 200, f"cancel {rid}: {st} {b[:200]}")
	dt_cancel = time.perf_counter() - t0
	cpu_cancel = (cpu_s(d.proc.pid) - cpu0) / n
	lat_cancel = prober.take()
	req(c, "POST", f"/v1/runs/{hang}/cancel")
	c.close()
	print(f"POST /v1/runs (queued; insert txn: runs + 1 arg + 1 label)  {n / dt_post:7.1f} runs/s  runnerd CPU {cpu_post * 1000:5.2f} ms/run   {lat_str(lat_post)}")
	print(f"cancel a queued run (finish UPDATE + note INSERT)          {n / dt_cancel:7.1f} runs/s  runnerd CPU {cpu_cancel * 1000:5.2f} ms/run   {lat_str(lat_cancel)}")
	print("   (one client, one keep-alive connection: each figure includes the HTTP round trip and JSON)")
	print(f"   runnerd VmRSS {rss0} kB before the POSTs, {rss1} kB with {n} more runs queued "
	      f"({(rss1 - rss0) * 1024 / n:.0f} B per queued run, sqlite's page cache included)")
	return n / dt_post, n / dt_cancel


def store_floor(args):
	print("\n== store floor: python sqlite3 on schema/*.sql, WAL, synchronous=NORMAL, foreign_keys=ON")
	tmp = tempfile.mkdtemp(prefix="ukrun-bench-sqlite-")
	path = os.path.join(tmp, "runnerd.db")
	db = sqlite3.connect(path, isolation_level=None)
	db.execute("PRAGMA journal_mode=WAL")
	db.execute("PRAGMA synchronous=NORMAL")
	db.execute("PRAGMA foreign_keys=ON")
	sdir = os.path.join(args.source_dir, "schema")
	for f in sorted(x for x in os.listdir(sdir) if x.endswith(".sql")):
		with open(os.path.join(sdir, f)) as fh:
			db.executescript("BEGIN;" + fh.read() + ";COMMIT;")
	sha = "a" * 64
	now = "2026-12-02T00:00:00.000Z"
	db.execute("INSERT INTO images (sha256, size, name, platform, flags, summary, created_at) "
	           "VALUES (?, 1, 'x', 'linuxu', 0, '', ?)", (sha, now))
	n = args.store_n * 2

	def run_lifecycle(i):
		db.execute("BEGIN IMMEDIATE")
		cur = db.execute("INSERT INTO runs (image, loader, name, mode, platform, driver, state, accel, machine, "
		                 "memory_mb, vcpus, timeout_s, success_code, flags, created_at, daemon_pid, host) VALUES "
		                 "(?, NULL, 'lx_exit', 'direct', 'linuxu', 'linuxu', 'queued', NULL, NULL, 0, 0, 300, "
		                 "NULL, 0, ?, 1, 'local')", (sha, now))
		rid = cur.lastrowid
		db.execute("INSERT INTO run_args VALUES (?, 'arg', 0, '3')", (rid,))
		db.execute("INSERT INTO labels VALUES (?, 'bench', 'farm')", (rid,))
		db.execute("COMMIT")
		db.execute("UPDATE images SET last_used_at = ? WHERE sha256 = ?", (now, sha))
		db.execute("UPDATE runs SET state = 'starting', started_at = CASE WHEN 'starting' = 'running' AND "
		           "started_at IS NULL THEN ? ELSE started_at END WHERE id = ?", (now, rid))
		for k, v in (("accel", "tcg"), ("command", "/usr/bin/qemu-system-x86_64 -nodefaults " + "x" * 300)):
			db.execute("INSERT INTO run_facts VALUES (?, ?, ?) ON CONFLICT(run_id, key) DO UPDATE "
			           "SET value = excluded.value", (rid, k, v))
		db.execute("UPDATE runs SET accel = 'tcg' WHERE id = ?", (rid,))
		db.execute("UPDATE runs SET state = 'running', started_at = CASE WHEN 'running' = 'running' AND "
		           "started_at IS NULL THEN ? ELSE started_at END WHERE id = ?", (now, rid))
		db.execute("INSERT INTO run_notes VALUES (?, (SELECT coalesce(max(pos), -1) + 1 FROM run_notes "
		           "WHERE run_id = ?), 'no usable /dev/kvm: running under TCG (slower)')", (rid, rid))
		db.execute("UPDATE runs SET state = 'done', exit_code = 3, exit_source = 'process', reason = 'exited 3', "
		           "ended_at = ?, console_bytes = 7, console_truncated = 0, duration_ms = "
		           "CAST(round((julianday(?) - julianday(coalesce(started_at, created_at))) * 86400000) AS INTEGER) "
		           "WHERE id = ?", (now, now, rid))

	stmts_per_run = 11  # 1 transaction of 3 INSERTs + 8 autocommit statements
	commits_per_run = 9  # the transaction + 8 autocommit writes (facts' UPSERTs count one each)
	rates = []
	for _ in range(3):
		t0 = time.perf_counter()
		for i in range(n):
			run_lifecycle(i)
		rates.append(n / (time.perf_counter() - t0))
	rows = db.execute("SELECT count(*) FROM runs").fetchone()[0]
	db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
	db.close()
	size = os.path.getsize(path)
	subprocess.run(["rm", "-rf", tmp])
	m = statistics.median(rates)
	print(f"run lifecycle ({stmts_per_run} statements, {commits_per_run} commits): median {m:8.1f} runs/s "
	      f"(min {min(rates):.1f} max {max(rates):.1f}) = {m * commits_per_run:8.0f} commits/s, "
	      f"{m * stmts_per_run:8.0f} statements/s; {rows} runs in the table at the end, "
	      f"database {size / 1024:.0f} KiB = {size / rows:.0f} B/run")
	return m


def bench_console(args, d, prober, shas):
	print("\n== console: bytes/s runnerd absorbs (lx_flood, linuxu; MB = 10^6 bytes)")
	lines = args.flood_lines
	want = b"".join(b"line %06d abcdefghijklmnopqrstuvwxyz0123456789\n" % i for i in range(1, lines + 1)) + b"flood done\n"
	spec = {"image": shas["lx_flood"], "args": [str(lines)]}
	one_run(UConn(d.sock), spec, 0, want)
	prober.take()
	for n in args.flood_n:
		cpu0 = cpu_s(d.proc.pid)
		dt = closed_loop(d.sock, spec, 0, n, n, want)
		cpu = cpu_s(d.proc.pid) - cpu0
		lat = prober.take()
		print(f"{n:2d} floods at once, each followed by 1 client: {n * len(want) / dt / MB:7.2f} MB/s "
		      f"({n} x {len(want)} B in {dt * 1000:.0f} ms; runnerd CPU {cpu * 1000:.0f} ms = "
		      f"{cpu * 1e9 / (n * len(want)):.1f} ns/B)   {lat_str(lat)}")
	for f in args.followers:
		c = UConn(d.sock)
		# One run that floods, read by f followers from byte 0.
		rid = post_run(c, spec)
		got = [None] * f
		errs = []

		def reader(k):
			cc = UConn(d.sock)
			try:
				got[k] = len(follow(cc, rid))
			except Exception as e:  # noqa: BLE001
				errs.append(repr(e))
			cc.close()

		ts = [threading.Thread(target=reader, args=(k,)) for k in range(f)]
		cpu0 = cpu_s(d.proc.pid)
		t0 = time.perf_counter()
		for t in ts:
			t.start()
		for t in ts:
			t.join()
		dt = time.perf_counter() - t0
		cpu = cpu_s(d.proc.pid) - cpu0
		lat = prober.take()
		rec = record(c, rid)
		c.close()
		bl.check(not errs and all(g == len(want) for g in got), f"followers: {errs[:2]} {got[:4]}")
		bl.check(rec["exit_code"] == 0, f"flood run {rid} exit {rec['exit_code']}")
		print(f"1 flood, {f:2d} followers: {f * len(want) / dt / MB:7.2f} MB/s delivered "
		      f"({f} x {len(want)} B in {dt * 1000:.0f} ms; runnerd CPU {cpu * 1000:.0f} ms)   {lat_str(lat)}")


def bench_hosts(args, shas_files):
	print("\n== hosts: runnerd.conf with H [host hN] sections, uri test:///default (libvirt test driver)")
	for h in args.hosts:
		tmp = tempfile.mkdtemp(prefix="ukrun-bench-conf-")
		conf = os.path.join(tmp, "runnerd.conf")
		with open(conf, "w") as f:
			for i in range(h):
				f.write(f"[host h{i}]\nuri = test:///default\ncapacity = 4\n")
		t0 = time.perf_counter()
		d = bl.Daemon(args, ["--config", conf, "--max-concurrent", str(args.max_concurrent)])
		t_start = time.perf_counter() - t0
		try:
			c = UConn(d.sock)
			lat_hosts, lat_metrics = [], []
			nh = None
			for _ in range(20):
				t1 = time.perf_counter()
				st, b = req(c, "GET", "/v1/hosts")
				lat_hosts.append(time.perf_counter() - t1)
				bl.check(st == 200, f"GET /v1/hosts: {st}")
				nh = json.loads(b)["hosts"]
				t1 = time.perf_counter()
				st, _ = req(c, "GET", "/metrics")
				lat_metrics.append(time.perf_counter() - t1)
			bl.check(len(nh) == h + 1, f"GET /v1/hosts lists {len(nh)} hosts, want {h + 1}")
			avail = sum(1 for x in nh[1:] if any(dd.get("available") for dd in x.get("drivers", [])))
			c.close()
			shas = {k: upload(d.sock, p) for k, p in shas_files.items() if k == "lx_exit"}
			spec = {"image": shas["lx_exit"], "args": ["3"]}
			prober = Prober(d.sock)
			rates = []
			for _ in range(args.reps):
				dt = closed_loop(d.sock, spec, 3, 4, args.runs_per_level, b"exit 3\n")
				rates.append(args.runs_per_level / dt)
			lat = prober.take()
			burst = ""
			if h:
				# 2 runs pinned to each test host at once, each ending by its 1 s timeout (a test:///
				# domain never ends by itself): domain create, console attempt and destroy go through
				# the one libvirt thread with no network and no QEMU, the floor of its per-run cost.
				mb = upload(d.sock, shas_files["mb_exit7"])
				c = UConn(d.sock)
				cpu0 = cpu_s(d.proc.pid)
				ids = [post_run(c, {"image": mb, "host": f"h{i % h}", "timeout_s": 1}) for i in range(2 * h)]
				for rid in ids:
					follow(c, rid)
				recs = [record(c, rid) for rid in ids]
				cpu = (cpu_s(d.proc.pid) - cpu0) / len(ids)
				c.close()
				bl.check(all(r["state"] == "timeout" for r in recs), "test:/// runs did not end by their timeout")
				starts = sorted(bl.ts(r["started_at"]) for r in recs)
				waits = [bl.ts(r["started_at"]) - bl.ts(r["created_at"]) for r in recs]
				burst = (f"; burst of {len(ids)} pinned runs (timeout 1 s): created->running median "
				         f"{statistics.median(waits) * 1000:.0f} ms max {max(waits) * 1000:.0f} ms, all started within "
				         f"{(starts[-1] - starts[0]) * 1000:.0f} ms ({(len(starts) - 1) / max(starts[-1] - starts[0], 1e-3):.0f} "
				         f"starts/s), runnerd CPU {cpu * 1000:.2f} ms/run, {lat_str(prober.take())}")
			prober.close()
			print(f"H={h:3d}: start to first answer {t_start * 1000:7.0f} ms; hosts with an available driver "
			      f"{avail}/{h}; GET /v1/hosts median {statistics.median(lat_hosts) * 1000:5.1f} ms "
			      f"({len(json.dumps(nh))} B); /metrics median {statistics.median(lat_metrics) * 1000:5.1f} ms; "
			      f"lx_exit C=4 runs/s median {statistics.median(rates):6.2f} "
			      f"(min {min(rates):.2f} max {max(rates):.2f}); {lat_str(lat)}{burst}")
		finally:
			d.stop()
			subprocess.run(["rm", "-rf", tmp])


REMOTE_SH = """set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib/libvirt
mkdir -p /etc/libvirt/storage
mount -t tmpfs tmpfs /etc/libvirt/storage
mkdir -p /run/libvirt /run/lock /var/lib/libvirt/images /var/lib/libvirt/qemu
chown libvirt-qemu:libvirt-qemu /var/lib/libvirt/qemu && chmod 0751 /var/lib/libvirt/qemu
virtlogd & echo $! >"$D/virtlogd.pid"
libvirtd --listen -f "$D/libvirtd.conf" & echo $! >"$D/libvirtd.pid"
wait
"""


class RemoteLibvirtd:
	"""A libvirtd in a private mount namespace on a loopback TCP port (as tests/integration/libvirt_remote.sh)."""

	def __init__(self):
		self.dir = tempfile.mkdtemp(prefix="ukrun-bench-lv-")
		s = socket.socket()
		s.bind(("127.0.0.1", 0))
		self.port = s.getsockname()[1]
		s.close()
		self.uri = f"qemu+tcp://127.0.0.1:{self.port}/system"
		with open(os.path.join(self.dir, "libvirtd.conf"), "w") as f:
			f.write(f'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "127.0.0.1"\ntcp_port = "{self.port}"\n'
			        'auth_tcp = "none"\n')
		self.log = open(os.path.join(self.dir, "libvirtd.log"), "wb")
		self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c", REMOTE_SH],
		                             env={**os.environ, "D": self.dir}, stdin=subprocess.DEVNULL,
		                             stdout=self.log, stderr=self.log)
		for _ in range(150):
			if subprocess.run(["virsh", "-q", "-c", self.uri, "version"], capture_output=True).returncode == 0:
				return
			if self.proc.poll() is not None:
				break
			time.sleep(0.1)
		self.stop()
		raise RuntimeError(f"libvirtd at {self.uri} did not answer (log {self.dir}/libvirtd.log)")

	def stop(self):
		for f in ("libvirtd", "virtlogd"):
			try:
				with open(os.path.join(self.dir, f + ".pid")) as fh:
					os.kill(int(fh.read()), 15)
			except (OSError, ValueError):
				pass
		try:
			self.proc.wait(20)
		except subprocess.TimeoutExpired:
			self.proc.kill()
			self.proc.wait()
		self.log.close()
		subprocess.run(["rm", "-rf", self.dir])


def padded_kernel(src, mb, tmp):
	"""mb_exit7 with MB MiB of zeros appended (ELF: trailing bytes are never loaded): a big image."""
	path = os.path.join(tmp, f"mb_exit7_pad{mb}")
	with open(src, "rb") as f, open(path, "wb") as g:
		g.write(f.read())
		g.write(b"\0" * (mb << 20))
	return path


def bench_remote(args, files):
	k = args.remote
	print(f"\n== remote hosts: {k} extra libvirtd reached as qemu+tcp://127.0.0.1:PORT/system (loopback, TCG or KVM)")
	if os.getuid() != 0 or not shutil_which("unshare") or not shutil_which("libvirtd"):
		print("skipped: needs root, unshare and libvirtd")
		return
	hosts = []
	tmp = tempfile.mkdtemp(prefix="ukrun-bench-remote-")
	d = None
	try:
		for _ in range(k):
			hosts.append(RemoteLibvirtd())
		conf = os.path.join(tmp, "runnerd.conf")
		with open(conf, "w") as f:
			for i, h in enumerate(hosts):
				f.write(f"[host r{i}]\nuri = {h.uri}\ncapacity = 8\n")
		t0 = time.perf_counter()
		d = bl.Daemon(args, ["--config", conf, "--max-concurrent", str(args.max_concurrent)])
		print(f"start to first answer with {k} remote hosts: {(time.perf_counter() - t0) * 1000:.0f} ms "
		      "(probe: connect, storage pool, domain capabilities per host)")
		sha = upload(d.sock, files["mb_exit7"])
		prober = Prober(d.sock)
		# accel tcg: on this machine libvirt's KVM guests took ~4.5 s to reach isa-debug-exit, TCG ~1.7 s
		spec0 = {"image": sha, "host": "r0", "accel": "tcg"}
		t0 = time.perf_counter()
		one_run(UConn(d.sock), spec0, None)
		t_first = time.perf_counter() - t0
		c = UConn(d.sock)
		lat = []
		for _ in range(5):
			t0 = time.perf_counter()
			rid, _ = one_run(c, spec0, None)
			lat.append(time.perf_counter() - t0)
		rec = record(c, rid)
		c.close()
		print(f"mb_exit7 on r0: first run (with upload) {t_first * 1000:.0f} ms; warm median "
		      f"{statistics.median(lat) * 1000:.0f} ms (exit {rec['exit_code']} via {rec['exit_source']}, accel {rec['accel']})")
		prober.take()
		for conc in (1, 2 * k, 4 * k):
			specs = [{"image": sha, "host": f"r{i % k}", "accel": "tcg"} for i in range(conc)]
			total = max(args.runs_per_level // 2, conc * 2)
			left = [total]
			lock = threading.Lock()
			errs = []

			def client(spec):
				cc = UConn(d.sock)
				try:
					while True:
						with lock:
							if left[0] == 0:
								return
							left[0] -= 1
						one_run(cc, spec, None)
				except BaseException as e:  # noqa: BLE001
					errs.append(repr(e))
				cc.close()

			ts = [threading.Thread(target=client, args=(sp,)) for sp in specs]
			cpu0 = cpu_s(d.proc.pid)
			t0 = time.perf_counter()
			for t in ts:
				t.start()
			for t in ts:
				t.join()
			dt = time.perf_counter() - t0
			bl.check(not errs, f"remote client failed: {errs[:2]}")
			cpu = (cpu_s(d.proc.pid) - cpu0) / total
			print(f"mb_exit7 pinned round-robin over {k} hosts, C={conc:2d}: {total / dt:6.2f} runs/s  "
			      f"runnerd CPU {cpu * 1000:5.2f} ms/run   "
			      f"{lat_str(prober.take())}")
		# A burst: 4 runs per host POSTed at once. Domains are created one after another on the one
		# libvirt thread (virDomainCreateXML is a blocking RPC that returns once QEMU runs on the host),
		# so the runs reach `running` spaced by one domain start each, whichever host they are on.
		c = UConn(d.sock)
		burst = [post_run(c, {"image": sha, "host": f"r{i % k}", "accel": "tcg"}) for i in range(4 * k)]
		for rid in burst:
			follow(c, rid)
		recs = [record(c, rid) for rid in burst]
		c.close()
		starts = sorted(bl.ts(r["started_at"]) for r in recs)
		spacing = [b - a for a, b in zip(starts, starts[1:])]
		waits = [bl.ts(r["started_at"]) - bl.ts(r["created_at"]) for r in recs]
		print(f"burst of {len(burst)} runs over {k} hosts: created->running median {statistics.median(waits) * 1000:.0f} ms, "
		      f"max {max(waits) * 1000:.0f} ms; spacing of consecutive starts median {statistics.median(spacing) * 1000:.0f} ms "
		      f"(min {min(spacing) * 1000:.0f}, max {max(spacing) * 1000:.0f}): the farm-wide start rate is bounded by "
		      f"~1/spacing = {1 / statistics.median(spacing):.1f} starts/s here")
		# The same burst split over two coordinators (one runnerd per host, each with its own libvirt
		# thread), at the same time: the same work for the hosts, half the starts per libvirt thread.
		# If the one thread is what spaces the starts, the split burst starts about twice as fast.
		ds = []
		try:
			for i in range(2):
				cf = os.path.join(tmp, f"split{i}.conf")
				with open(cf, "w") as f:
					f.write(f"[host r{i}]\nuri = {hosts[i].uri}\ncapacity = 8\n")
				ds.append(bl.Daemon(args, ["--config", cf, "--max-concurrent", str(args.max_concurrent)]))
			dshas = [upload(x.sock, files["mb_exit7"]) for x in ds]
			for i, x in enumerate(ds):  # warm: no upload in the burst
				one_run(UConn(x.sock), {"image": dshas[i], "host": f"r{i}", "accel": "tcg"}, None)
			span = [None, None]
			sp_recs = [[], []]

			def split_burst(i):
				cc = UConn(ds[i].sock)
				ids = [post_run(cc, {"image": dshas[i], "host": f"r{i}", "accel": "tcg"}) for _ in range(2 * k)]
				for rid in ids:
					follow(cc, rid)
				sp_recs[i] = [record(cc, rid) for rid in ids]
				cc.close()

			ts = [threading.Thread(target=split_burst, args=(i,)) for i in range(2)]
			for t in ts:
				t.start()
			for t in ts:
				t.join()
			all_recs = sp_recs[0] + sp_recs[1]
			first = min(bl.ts(r["created_at"]) for r in all_recs)
			last = max(bl.ts(r["started_at"]) for r in all_recs)
			one = min(bl.ts(r["created_at"]) for r in recs)
			one_last = max(bl.ts(r["started_at"]) for r in recs)
			for i in range(2):
				st_i = sorted(bl.ts(r["started_at"]) for r in sp_recs[i])
				span[i] = statistics.median([b - a for a, b in zip(st_i, st_i[1:])])
			print(f"the same {len(all_recs)} runs split over 2 runnerds (one host each), at once: first POST to last start "
			      f"{(last - first) * 1000:.0f} ms, vs {(one_last - one) * 1000:.0f} ms through one runnerd; spacing of starts "
			      f"per runnerd median {span[0] * 1000:.0f} / {span[1] * 1000:.0f} ms")
		finally:
			for x in ds:
				x.stop()
		# A big upload to r0 while r1 floods its console: the libvirt thread is shared, and the upload
		# (virStorageVolUpload + virStreamSendAll, blocking) runs on it.
		big = padded_kernel(files["mb_exit7"], args.big_mb, tmp)
		bsha = upload(d.sock, big)
		fsha = upload(d.sock, files["mb_flood"])
		gaps = []  # (time a chunk arrived, seconds since the previous chunk) on r1's console
		stop = threading.Event()

		def r1_loop():
			cc = UConn(d.sock)
			while not stop.is_set():
				rid = post_run(cc, {"image": fsha, "host": "r1", "accel": "tcg", "args": ["4000"]})
				cc.request("GET", f"/v1/runs/{rid}/console?follow=1")
				r = cc.getresponse()
				last = None
				while True:
					chunk = r.read1(1 << 16)
					now = time.perf_counter()
					if not chunk:
						break
					if last is not None:
						gaps.append((now, now - last))
					last = now
				record(cc, rid)
			cc.close()

		th = threading.Thread(target=r1_loop)
		th.start()
		time.sleep(8)
		prober.take()
		t_up0 = time.perf_counter()
		rid, _ = one_run(UConn(d.sock), {"image": bsha, "host": "r0", "accel": "tcg"}, None)
		t_up1 = time.perf_counter()
		lat_up = prober.take()
		time.sleep(4)
		stop.set()
		th.join()
		rec = record(UConn(d.sock), rid)
		up_s = (bl.ts(rec["started_at"]) - bl.ts(rec["created_at"]))
		before = [g for t, g in gaps if t < t_up0]
		during = [g for t, g in gaps if t_up0 <= t <= t_up1 + 0.5]
		print(f"first run of a {args.big_mb} MiB image on r0: {(t_up1 - t_up0) * 1000:.0f} ms in all, created->running "
		      f"{up_s * 1000:.0f} ms (upload to its pool over loopback: ~{args.big_mb * 1.048576 / up_s:.0f} MB/s); "
		      f"meanwhile {lat_str(lat_up)}")
		if before and during:
			print(f"   r1's console (mb_flood, followed): longest gap between chunks before the upload "
			      f"{max(before) * 1000:.0f} ms (p99 {pct(before, 99) * 1000:.0f}, n={len(before)}), "
			      f"during it {max(during) * 1000:.0f} ms (n={len(during)})")
		prober.close()
	finally:
		if d:
			d.stop()
		for h in hosts:
			h.stop()
		subprocess.run(["rm", "-rf", tmp])


def shutil_which(x):
	import shutil
	return shutil.which(x)


def machine_line():
	load = open("/proc/loadavg").read().split()[:3]
	model = ""
	with open("/proc/cpuinfo") as f:
		for line in f:
			if line.startswith("model name"):
				model = line.split(":", 1)[1].strip()
				break
	mem = ""
	with open("/proc/meminfo") as f:
		mem = f.readline().split()[1]
	return f"# CPU {model}; {int(mem) // 1024} MiB RAM; load average at start {' '.join(load)}; sqlite {sqlite3.sqlite_version}"


def extra(p):
	p.add_argument("--quick", action="store_true", help="fewer runs and levels (a minute or two)")
	p.add_argument("--only", default="runs,store,console,hosts,remote", help="comma list of parts to run")
	p.add_argument("--remote", type=int, default=2, help="extra libvirtds for the remote part (default 2)")
	p.add_argument("--big-mb", type=int, default=768, help="size of the big image uploaded to one remote host")
	p.add_argument("--hosts", default=None, help="comma list of [host] counts (default 0,20,50,63)")


def main():
	args = bl.parse_args(__doc__.split("\n")[0], extra=extra, default_n=3)
	q = args.quick
	args.reps = 1 if q else max(1, args.n)
	args.conc = [1, 4, 16] if q else [1, 2, 4, 8, 16]
	args.runs_per_level = 16 if q else 48
	args.max_concurrent = 16
	args.store_n = 200 if q else 1000
	args.flood_lines = 20000 if q else 200000
	args.flood_n = [1, 4] if q else [1, 2, 4, 8]
	args.followers = [1, 8] if q else [1, 4, 16]
	args.hosts = [int(x) for x in args.hosts.split(",")] if args.hosts else ([0, 63] if q else [0, 20, 50, 63])
	only = set(args.only.split(","))
	print(bl.host_line())
	print(machine_line())
	files = {k: os.path.join(args.fixtures, k) for k in ("lx_exit", "lx_hang", "lx_flood", "mb_exit7", "mb_flood")}
	for k, p in files.items():
		bl.check(os.path.exists(p), f"fixture {p} missing (build first)")
	if "store" in only:
		store_floor(args)
	if only & {"runs", "console"}:
		with bl.Daemon(args, ["--max-concurrent", str(args.max_concurrent)]) as d:
			shas = {k: upload(d.sock, p) for k, p in files.items()}
			prober = Prober(d.sock)
			time.sleep(0.5)
			print(f"\n== idle: {lat_str(prober.take())}")
			if "runs" in only:
				bench_runs(args, d, prober, shas)
			if "console" in only:
				bench_console(args, d, prober, shas)
			prober.close()
			print(f"\nrunnerd memory: VmHWM {d.status('VmHWM')} kB, VmRSS {d.status('VmRSS')} kB")
	if "store" in only:
		# One slot: every POSTed run stays queued behind lx_hang.
		with bl.Daemon(args, ["--max-concurrent", "1", "--max-queued", str(args.store_n + 10)]) as d:
			shas = {k: upload(d.sock, p) for k, p in files.items()}
			prober = Prober(d.sock)
			bench_store_api(args, d, prober, shas)
			prober.close()
	if "hosts" in only:
		bench_hosts(args, files)
	if "remote" in only:
		bench_remote(args, files)
	print(f"\nrunner errors (exit 125): {len(RUNNER_ERRORS)}")
	for rid, why in RUNNER_ERRORS[:10]:
		print(f"   run {rid}: {why}")
	return 0


if __name__ == "__main__":
	sys.exit(main())
