#!/usr/bin/env python3
"""Boot-to-exit latency: bare QEMU vs the same QEMU through ukrun (warm daemon).

For each kernel (build/fixtures/mb_exit7; Unikraft helloworld_qemu-x86_64-norng from
../shared/fixtures when present) the argv comes from the driver itself (the run
record's facts.command), so both sides boot the very same machine:
  bare  the argv without -pidfile, -qmp ... and -S (nobody would send `cont`)
  qmp   the argv with -S + -qmp and a minimal Python QMP client (negotiate, cont,
        read events until QEMU ends): the floor of the driver's way of starting
  ukrun `ukrun IMAGE` with the image already uploaded (the client hashes it and
        POST /v1/runs finds it stored, so no HEAD and no upload)
Runs are interleaved so drift hits all sides alike. Prints ratios; never fails on timing.
"""

import os
import shlex
import shutil
import statistics
import sys
import tempfile

import benchlib as bl


def measure(d, args, uk_argv, bare, qmp, sock, want_bare, want_ukrun,
            t_bare, t_qmp, t_uk, spawn, guest, rest):
	"""N interleaved rounds of bare, QMP and ukrun; appends to the lists."""
	for _ in range(args.n):
		dt, rc, out = bl.run_bare(bare)
		bl.check(rc == want_bare, f"bare qemu exited {rc}, want {want_bare}")
		t_bare.append(dt)
		dt, rc, out = bl.run_qmp(qmp, sock)
		bl.check(rc == want_bare, f"qemu with QMP exited {rc}, want {want_bare}")
		t_qmp.append(dt)
		dt, cp, rid = d.ukrun_timed(uk_argv)
		bl.check(cp.returncode == want_ukrun, f"ukrun exited {cp.returncode}, want {want_ukrun}")
		bl.check(b"already stored" in cp.stderr, "warm run uploaded the image again")
		t_uk.append(dt)
		a, b = bl.record_phases(d.record(rid))
		if a is not None:
			spawn.append(a)
			guest.append(b)
			rest.append(dt - a - b)


def bench_kernel(d, args, label, image, img_args, want_bare, want_ukrun):
	print(f"\n== {label}: {os.path.basename(image)} {' '.join(img_args)}".rstrip())
	# Warm-up: uploads the image, starts nothing else; its record gives the argv.
	dt, cp, rid = d.ukrun_timed([image, *img_args])
	bl.check(cp.returncode == want_ukrun, f"first ukrun run of {label} exited {cp.returncode}, want {want_ukrun}"
	         f" ({cp.stderr.decode(errors='replace').strip()})")
	up = "uploaded" if b"uploaded" in cp.stderr else "already stored"
	print(f"first run (cold: hash + {up}): {dt * 1000:.1f} ms")
	rec = d.record(rid)
	command = rec.get("facts", {}).get("command")
	uk_argv = [image, *img_args]
	if rec.get("accel") == "tcg" and command and "-accel kvm" in command:
		# KVM could not run it (DESIGN §8) and the run fell back to TCG: the record's argv is the
		# failed KVM attempt's, on which a bare QEMU would hang. Measure the TCG run alone.
		print("KVM cannot run this image here (the run fell back to TCG): both sides run --accel tcg")
		uk_argv = ["--accel", "tcg", *uk_argv]
		dt, cp, rid = d.ukrun_timed(uk_argv)
		bl.check(cp.returncode == want_ukrun, f"ukrun --accel tcg of {label} exited {cp.returncode}")
		command = d.record(rid).get("facts", {}).get("command")
	bl.check(command, f"run {rid} has no facts.command")
	print(f"driver argv: {command}")
	bare = bl.bare_argv(command, kernel=image)
	print(f"bare argv:   {shlex.join(bare)}")
	print("  (changed: -pidfile and -qmp ...,server=on,wait=on -S dropped; -kernel is the fixture path)")
	sockdir = tempfile.mkdtemp(prefix="ukrun-bench-qmp-")
	sock = os.path.join(sockdir, "qmp.sock")
	qmp = bl.qmp_argv(bare, sock)

	t_bare, t_qmp, t_uk, spawn, guest, rest = [], [], [], [], [], []
	try:
		measure(d, args, uk_argv, bare, qmp, sock, want_bare, want_ukrun,
		        t_bare, t_qmp, t_uk, spawn, guest, rest)
	finally:
		shutil.rmtree(sockdir, ignore_errors=True)

	# The client alone: process start + one HTTP round trip to the daemon.
	t_ping = []
	for _ in range(args.n):
		dt, cp, _ = d.ukrun_timed(["ping"])
		t_ping.append(dt)

	print(f"N={args.n}")
	print(f"bare qemu           {bl.stats(t_bare)}")
	print(f"qemu -S + QMP       {bl.stats(t_qmp)}   ({bl.ratio(t_qmp, t_bare)} bare)")
	print(f"ukrun (warm)        {bl.stats(t_uk)}")
	print(f"ratio ukrun/bare    {bl.ratio(t_uk, t_bare)}   ukrun/qmp {bl.ratio(t_uk, t_qmp)}")
	if spawn:
		print("breakdown of the ukrun runs (run record timestamps, ms resolution; medians):")
		print(f"  created -> started (queue, spawn qemu, QMP handshake, cont): "
		      f"{statistics.median(spawn) * 1000:7.1f} ms")
		print(f"  started -> ended   (guest runs, exit reaped, verdict):      "
		      f"{statistics.median(guest) * 1000:7.1f} ms")
		print(f"  outside the record (client start, sha256, POST, "
		      f"console follow): {statistics.median(rest) * 1000:7.1f} ms")
		print(f"  of which `ukrun ping` (client start + 1 HTTP round trip): "
		      f"{statistics.median(t_ping) * 1000:7.1f} ms")
		print(f"  upload: skipped on every warm run (POST found the image stored)")
	return t_bare, t_uk


def main():
	args = bl.parse_args(__doc__.split("\n")[0])
	print(bl.host_line())
	with bl.Daemon(args) as d:
		bench_kernel(d, args, "multiboot fixture", os.path.join(args.fixtures, "mb_exit7"), [],
		             want_bare=(7 << 1) | 1, want_ukrun=7)
		uk = os.path.join(args.shared, "helloworld_qemu-x86_64-norng")
		if os.path.exists(uk):
			# Clean Unikraft halt: value 41 at 0x501 → QEMU 83, ukrun 0.
			bench_kernel(d, args, "Unikraft helloworld", uk, ["foo", "bar"], want_bare=83, want_ukrun=0)
		else:
			print(f"\n== Unikraft helloworld: SKIPPED ({uk} absent)")
	return 0


if __name__ == "__main__":
	sys.exit(main())
