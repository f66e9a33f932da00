"""Shared helpers for the ukrun benchmarks (bench/*.py).

Every benchmark starts its own runnerd (--socket/--data-dir in a temp dir,
--idle-timeout 0), measures a raw floor (bare QEMU or the bare program) and
the same work through ukrun in the same run, and prints ratios. Nothing here
ever fails on timing: a benchmark exits non-zero only when something does not
work at all (daemon does not start, a run gives the wrong exit status).
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

QEMU_FLAGS_WITH_VALUE_DROPPED = ("-pidfile", "-qmp")


def parse_args(description, extra=None, default_n=10):
	"""Common command line: --build-dir, --source-dir, -n; extra(parser) adds more."""
	here = os.path.dirname(os.path.abspath(__file__))
	src = os.path.dirname(here)
	p = argparse.ArgumentParser(description=description)
	p.add_argument("--build-dir", default=os.environ.get("UKRUN_BUILD_DIR", os.path.join(src, "build")),
	               help="CMake build dir holding bin/ and fixtures/ (default: SOURCE/build or $UKRUN_BUILD_DIR)")
	p.add_argument("--source-dir", default=src, help="ukrun source dir (../shared/fixtures is found from it)")
	p.add_argument("-n", type=int, default=int(os.environ.get("UKRUN_BENCH_N", default_n)),
	               help=f"repetitions per measurement (default {default_n} or $UKRUN_BENCH_N)")
	if extra:
		extra(p)
	a = p.parse_args()
	a.build_dir = os.path.abspath(a.build_dir)
	a.source_dir = os.path.abspath(a.source_dir)
	a.bin = os.path.join(a.build_dir, "bin")
	a.fixtures = os.path.join(a.build_dir, "fixtures")
	a.shared = os.path.normpath(os.path.join(a.source_dir, "..", "shared", "fixtures"))
	for f in ("runnerd", "ukrun"):
		if not os.access(os.path.join(a.bin, f), os.X_OK):
			sys.exit(f"bench: {a.bin}/{f} not found: build first (cmake --build BUILD)")
	return a


def host_line():
	"""One line describing the machine, printed at the top of every benchmark."""
	kvm = "usable /dev/kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "no /dev/kvm (TCG)"
	try:
		q = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
	except OSError:
		q = "qemu not found"
	now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
	return f"# {now}; {os.cpu_count()} CPUs; {kvm}; {q}"


class Daemon:
	"""A private runnerd for one benchmark, stopped (SIGTERM, then SIGKILL) on exit."""

	def __init__(self, args, extra_flags=()):
		self.args = args
		self.tmp = tempfile.mkdtemp(prefix="ukrun-bench-")
		self.sock = os.path.join(self.tmp, "runnerd.sock")
		self.data = os.path.join(self.tmp, "data")
		self.env = {k: v for k, v in os.environ.items() if not k.startswith("UKRUN_")}
		self.env["UKRUN_SOCKET"] = self.sock
		# A fallback daemon must never be auto-spawned elsewhere: point it at ours.
		self.env["UKRUN_RUNNERD"] = os.path.join(args.bin, "runnerd")
		self.env["UKRUN_DATA_DIR"] = self.data
		self.proc = subprocess.Popen(
			[os.path.join(args.bin, "runnerd"), "--socket", self.sock, "--data-dir", self.data,
			 "--idle-timeout", "0", *extra_flags],
			stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
		deadline = time.monotonic() + 15
		while time.monotonic() < deadline:
			if self.proc.poll() is not None:
				sys.exit(f"bench: runnerd exited with {self.proc.returncode} at start "
				         f"(log: {self.data}/runnerd.log)")
			if self.ukrun(["ping"]).returncode == 0:
				return
			time.sleep(0.02)
		self.stop()
		sys.exit("bench: runnerd did not answer within 15 s")

	def __enter__(self):
		return self

	def __exit__(self, *exc):
		self.stop()

	def stop(self):
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGTERM)
			try:
				self.proc.wait(10)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait()
		shutil.rmtree(self.tmp, ignore_errors=True)

	def ukrun(self, argv, **kw):
		"""ukrun with our socket; captures output unless told otherwise."""
		kw.setdefault("capture_output", True)
		return subprocess.run([os.path.join(self.args.bin, "ukrun"), *argv], env=self.env,
		                      stdin=subprocess.DEVNULL, **kw)

	def ukrun_timed(self, argv):
		"""Run `ukrun -v ARGV`; returns (seconds, CompletedProcess, run id or None)."""
		t0 = time.perf_counter()
		cp = self.ukrun(["-v", *argv])
		dt = time.perf_counter() - t0
		return dt, cp, run_id_of(cp.stderr)

	def record(self, run_id):
		cp = self.ukrun(["show", "--json", str(run_id)])
		if cp.returncode != 0:
			sys.exit(f"bench: ukrun show {run_id} failed: {cp.stderr.decode(errors='replace')}")
		return json.loads(cp.stdout)

	def status(self, key):
		"""A /proc/PID/status value of runnerd in kB (VmHWM, VmRSS), or None."""
		try:
			with open(f"/proc/{self.proc.pid}/status") as f:
				for line in f:
					if line.startswith(key + ":"):
						return int(line.split()[1])
		except OSError:
			pass
		return None


def run_id_of(stderr):
	for line in stderr.decode(errors="replace").splitlines():
		w = line.split()
		# "ukrun: run N queued" (or "... queued; stdout and stderr apart")
		if len(w) >= 4 and w[0] == "ukrun:" and w[1] == "run" and w[3].rstrip(";,") == "queued":
			return w[2]
	return None


def ts(s):
	return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def record_phases(rec):
	"""(queue+spawn+QMP handshake, guest run) in seconds from a run record."""
	c, s, e = rec.get("created_at"), rec.get("started_at"), rec.get("ended_at")
	if not (c and s and e):
		return None, None
	return ts(s) - ts(c), ts(e) - ts(s)


def bare_argv(command, kernel=None, initrd=None):
	"""The driver's QEMU argv (facts.command) made runnable without runnerd.

	Dropped: -pidfile FILE (runnerd's bookkeeping), -qmp SOCK,server=on,wait=on and -S
	(QEMU would wait for a QMP client forever; a bare run starts the CPU at once).
	Substituted: the stored image paths by the caller's files (same bytes)."""
	words = shlex.split(command)  # the record quotes words with spaces (-append 'a b')
	out = []
	i = 0
	while i < len(words):
		w = words[i]
		if w in QEMU_FLAGS_WITH_VALUE_DROPPED:
			i += 2
			continue
		if w == "-S":
			i += 1
			continue
		if w == "-kernel" and kernel:
			out += [w, kernel]
			i += 2
			continue
		if w == "-initrd" and initrd:
			out += [w, initrd]
			i += 2
			continue
		out.append(w)
		i += 1
	return out


def qmp_argv(bare, sock):
	"""bare argv plus the driver's paused start and QMP socket (the floor of ukrun's way)."""
	i = bare.index("-kernel")
	return bare[:i] + ["-qmp", f"unix:{sock},server=on,wait=on", "-S"] + bare[i:]


def run_bare(argv, stdout=subprocess.PIPE):
	"""Run argv to completion; returns (seconds, returncode, stdout bytes or None)."""
	t0 = time.perf_counter()
	cp = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, timeout=120)
	return time.perf_counter() - t0, cp.returncode, cp.stdout


def run_qmp(argv, sock):
	"""Start QEMU paused with QMP, connect, negotiate, `cont`, wait for the end.

	This is what the qemu driver does, done by a minimal client: the difference to
	run_bare is the price of -S + QMP; the difference to ukrun is runnerd's own."""
	if os.path.exists(sock):
		os.unlink(sock)
	out = tempfile.TemporaryFile()
	t0 = time.perf_counter()
	p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL)
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	while True:
		try:
			s.connect(sock)
			break
		except (FileNotFoundError, ConnectionRefusedError):
			if p.poll() is not None:
				raise RuntimeError("qemu exited before its QMP socket appeared")
			time.sleep(0.001)
	f = s.makefile("rwb", buffering=0)
	f.readline()  # greeting
	f.write(b'{"execute":"qmp_capabilities"}\n')
	f.readline()
	f.write(b'{"execute":"cont"}\n')
	while f.readline():  # events until QEMU closes the socket
		pass
	rc = p.wait()
	dt = time.perf_counter() - t0
	s.close()
	out.seek(0)
	data = out.read()
	out.close()
	return dt, rc, data


def stats(xs):
	"""'median M  min A  max B' in ms."""
	return f"median {statistics.median(xs) * 1000:8.1f} ms  min {min(xs) * 1000:8.1f}  max {max(xs) * 1000:8.1f}"


def ratio(a, b):
	"""median(a) / median(b) as 'R.RRx'."""
	return f"{statistics.median(a) / statistics.median(b):.2f}x" if b and statistics.median(b) > 0 else "n/a"


def check(cond, what):
	if not cond:
		sys.exit(f"bench: FAILED: {what}")
