#!/usr/bin/env python3
"""Console throughput: flood fixtures through ukrun vs the bare program / bare QEMU.

  mb_flood N  multiboot kernel writing N lines of 49 bytes to the polled COM1 UART
              (20000 lines = 980011 bytes). Bare: the driver's QEMU argv (facts.command
              without -pidfile/-qmp/-S) with stdout to a pipe drained by this script and to
              /dev/null. ukrun: stdout to a pipe drained by this script.
  lx_flood N  static musl program writing the same lines; bare: the program itself (no
              sandbox) to a pipe and to /dev/null; ukrun: the linuxu driver (bubblewrap).
MB/s = console bytes / wall time of the whole run (1 MB = 10^6 bytes); for QEMU also
"net" MB/s with the median bare boot-to-exit time of mb_exit7 (same flags) subtracted.
runnerd's memory: VmHWM (peak RSS) and VmRSS from /proc/PID/status before and after the
floods; the console is stored on disk, so the peak should not grow with the output.
Prints ratios; never fails on timing.
"""

import os
import shlex
import statistics
import subprocess
import sys
import time

import benchlib as bl

MB = 1e6


def drain(argv, env=None):
	"""Run argv with stdout to a pipe read here; returns (seconds, returncode, bytes read)."""
	t0 = time.perf_counter()
	p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
	n = 0
	fd = p.stdout.fileno()
	while True:
		chunk = os.read(fd, 1 << 16)
		if not chunk:
			break
		n += len(chunk)
	rc = p.wait()
	p.stdout.close()
	return time.perf_counter() - t0, rc, n


def to_null(argv):
	with open(os.devnull, "wb") as null:
		t, rc, _ = bl.run_bare(argv, stdout=null)
	return t, rc


def rate(nbytes, ts, minus=0.0):
	m = statistics.median(ts) - minus
	return nbytes / m / MB if m > 0 else float("nan")


def mem(d, when):
	print(f"runnerd memory {when}: VmHWM {d.status('VmHWM')} kB, VmRSS {d.status('VmRSS')} kB")


def flood_qemu(d, args, lines):
	print(f"\n== mb_flood {lines} (qemu driver)")
	img = os.path.join(args.fixtures, "mb_flood")
	dt, cp, rid = d.ukrun_timed([img, str(lines)])
	bl.check(cp.returncode == 0, f"ukrun mb_flood exited {cp.returncode}, want 0")
	command = d.record(rid).get("facts", {}).get("command")
	bl.check(command, f"run {rid} has no facts.command")
	bare = bl.bare_argv(command, kernel=img)
	print(f"bare argv: {shlex.join(bare)}")
	print("  (changed: -pidfile, -qmp ...,server=on,wait=on and -S dropped; -kernel is the fixture path)")
	# Boot floor with the same machine: mb_exit7 ends at once via isa-debug-exit.
	boot = bl.bare_argv(command, kernel=os.path.join(args.fixtures, "mb_exit7"))
	boot = boot[:boot.index("-append")] if "-append" in boot else boot
	t_boot = []
	for _ in range(args.n):
		t, rc, _ = bl.run_bare(boot)
		bl.check(rc == 15, f"bare mb_exit7 exited {rc}, want 15")
		t_boot.append(t)
	t_pipe, t_null, t_uk = [], [], []
	nbytes = None
	for _ in range(args.n):
		t, rc, n = drain(bare)
		bl.check(rc == 1, f"bare mb_flood exited {rc}, want 1 (debug-exit 0)")
		nbytes = n
		t_pipe.append(t)
		t, rc = to_null(bare)
		bl.check(rc == 1, f"bare mb_flood to /dev/null exited {rc}, want 1")
		t_null.append(t)
		t, rc, n = drain([os.path.join(args.bin, "ukrun"), img, str(lines)], env=d.env)
		bl.check(rc == 0, f"ukrun mb_flood exited {rc}, want 0")
		bl.check(n == nbytes, f"ukrun gave {n} console bytes, bare QEMU {nbytes}")
		t_uk.append(t)
	b = statistics.median(t_boot)
	print(f"N={args.n}, {nbytes} console bytes per run, boot floor (bare mb_exit7) median {b * 1000:.1f} ms")
	print(f"bare qemu -> /dev/null {bl.stats(t_null)}  {rate(nbytes, t_null):6.3f} MB/s  "
	      f"net {rate(nbytes, t_null, b):6.3f} MB/s")
	print(f"bare qemu -> pipe      {bl.stats(t_pipe)}  {rate(nbytes, t_pipe):6.3f} MB/s  "
	      f"net {rate(nbytes, t_pipe, b):6.3f} MB/s")
	print(f"ukrun     -> pipe      {bl.stats(t_uk)}  {rate(nbytes, t_uk):6.3f} MB/s  "
	      f"net {rate(nbytes, t_uk, b):6.3f} MB/s")
	print(f"ratio time ukrun/bare-pipe {bl.ratio(t_uk, t_pipe)}, ukrun/bare-null {bl.ratio(t_uk, t_null)}")


def flood_linuxu(d, args, lines):
	print(f"\n== lx_flood {lines} (linuxu driver)")
	prog = os.path.join(args.fixtures, "lx_flood")
	t_pipe, t_null, t_uk = [], [], []
	nbytes = None
	for _ in range(args.n):
		t, rc, n = drain([prog, str(lines)])
		bl.check(rc == 0, f"bare lx_flood exited {rc}, want 0")
		nbytes = n
		t_pipe.append(t)
		t, rc = to_null([prog, str(lines)])
		t_null.append(t)
		t, rc, n = drain([os.path.join(args.bin, "ukrun"), prog, str(lines)], env=d.env)
		bl.check(rc == 0, f"ukrun lx_flood exited {rc}, want 0")
		bl.check(n == nbytes, f"ukrun gave {n} console bytes, the bare program {nbytes}")
		t_uk.append(t)
	print(f"N={args.n}, {nbytes} console bytes per run")
	print(f"bare program -> /dev/null {bl.stats(t_null)}  {rate(nbytes, t_null):8.2f} MB/s")
	print(f"bare program -> pipe      {bl.stats(t_pipe)}  {rate(nbytes, t_pipe):8.2f} MB/s")
	print(f"ukrun        -> pipe      {bl.stats(t_uk)}  {rate(nbytes, t_uk):8.2f} MB/s")
	print(f"ratio time ukrun/bare-pipe {bl.ratio(t_uk, t_pipe)}")


def main():
	args = bl.parse_args(__doc__.split("\n")[0], default_n=3)
	print(bl.host_line())
	with bl.Daemon(args) as d:
		mem(d, "at start")
		flood_qemu(d, args, 20000)
		mem(d, "after the mb_flood runs")
		flood_linuxu(d, args, 20000)
		flood_linuxu(d, args, 200000)
		mem(d, "after the lx_flood runs")
	return 0


if __name__ == "__main__":
	sys.exit(main())
