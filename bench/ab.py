#!/usr/bin/env python3
"""bench/ab.py: the same warm `ukrun` command through two builds, interleaved (A B A B ...).

Each build gets its own runnerd (own socket and data directory, started here); the image is
uploaded once, then N runs per build alternate. Prints median, p25 and min per build. Used to
measure one change against the build before it (docs/performance.md, What was changed 13-16).

  bench/ab.py --a BUILD_A --b BUILD_B [-n N] [--fixture lx_hello] [--args 'A B'] [--want RC] [-- UKRUN_ARGS...]

UKRUN_ARGS default to `--platform linuxu`. Never fails on timing; exits 1 if a run ends with another status than --want.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser(description="A/B of a warm ukrun run through two builds")
ap.add_argument("--a", required=True, help="build dir A (holds bin/)")
ap.add_argument("--b", required=True, help="build dir B")
ap.add_argument("-n", type=int, default=40)
ap.add_argument("--fixture", default="lx_hello", help="a file in B's fixtures/ (default lx_hello)")
ap.add_argument("--args", default="", help="the image's arguments, space-separated (lx_flood: 200000)")
ap.add_argument("--want", type=int, default=0, help="the exit status every run must have (mb_exit7: 7)")
ap.add_argument("rest", nargs="*", help="ukrun options (default: --platform linuxu)")
a = ap.parse_args()
extra = a.rest or ["--platform", "linuxu"]
image = os.path.join(a.b, "fixtures", a.fixture)
builds = {"A": a.a, "B": a.b}
procs, socks, dirs = {}, {}, []
try:
	for k, b in builds.items():
		d = tempfile.mkdtemp(prefix=f"ukrun-ab-{k}-")
		os.chmod(d, 0o755)  # the sandboxed program must reach its image
		dirs.append(d)
		socks[k] = os.path.join(d, "runnerd.sock")
		procs[k] = subprocess.Popen([os.path.join(b, "bin", "runnerd"), "--socket", socks[k],
		                             "--data-dir", os.path.join(d, "data")],
		                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
	for k in builds:
		for _ in range(100):
			if os.path.exists(socks[k]):
				break
			time.sleep(0.05)

	def run(k):
		t0 = time.perf_counter()
		cp = subprocess.run([os.path.join(builds[k], "bin", "ukrun"), "--socket", socks[k], *extra, image, *a.args.split()],
		                    stdin=subprocess.DEVNULL, capture_output=True)
		dt = time.perf_counter() - t0
		if cp.returncode != a.want:
			sys.exit(f"build {k}: ukrun exited {cp.returncode}: {cp.stderr.decode(errors='replace')}")
		return dt

	for k in builds:
		run(k)  # upload: every timed run is warm
	t = {k: [] for k in builds}
	for _ in range(a.n):
		for k in builds:
			t[k].append(run(k))
	for k in builds:
		v = sorted(t[k])
		print(f"{k} ({builds[k]}): median {statistics.median(v) * 1000:.2f} ms  "
		      f"p25 {v[len(v) // 4] * 1000:.2f}  min {v[0] * 1000:.2f}  (n={a.n})")
finally:
	for p in procs.values():
		p.terminate()
		p.wait()
	for d in dirs:
		shutil.rmtree(d, ignore_errors=True)
