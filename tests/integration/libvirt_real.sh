#!/usr/bin/env bash
# libvirt driver on the real Unikraft images (../shared/fixtures): hello with arguments → 0 (ACPI power-off seen by
# libvirt thanks to <acpi/>), the HWRNG-less crash → 134 (pvpanic: "Crashed Panicked"), the same console as the qemu
# driver, and a hang killed at --timeout → 124 with no domain left.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_libvirt.sh"

S=$UKRUN_SHARED_FIXTURES
[[ -n $S && -d $S ]] || skip "no real Unikraft images: UKRUN_SHARED_FIXTURES='${S}' is absent"
for f in helloworld_qemu-x86_64-norng helloworld_qemu-x86_64; do
	[[ -f $S/$f ]] || skip "$S/$f is absent"
done

start_daemon runnerd

expect_run hello 0 lifecycle qemu/libvirt --driver libvirt "$S/helloworld_qemu-x86_64-norng" foo bar
tr -d '\r' <"$T/hello.out" >"$T/hello.lf"
grep -q '^Hello world!$' "$T/hello.lf" || { cat "$T/hello.out" >&2; fail "hello: no 'Hello world!' line"; }
grep -Eq '^Arguments: +"[^"]*" "foo" "bar"$' "$T/hello.lf" ||
	{ cat "$T/hello.out" >&2; fail "hello: the Arguments line is not ... \"foo\" \"bar\""; }

# The same image on the qemu driver prints the same bytes, but for argv[0]: the qemu driver's is the user's file
# name, libvirt's QEMU gets the run's image link by its full path (docs/design.md). Both end in the same name.
run_ukrun hello_qemu "$S/helloworld_qemu-x86_64-norng" foo bar
expect_rc hello_qemu 0
grep -q '"helloworld_qemu-x86_64-norng" "foo" "bar"' "$T/hello_qemu.out" ||
	{ cat "$T/hello_qemu.out" >&2; fail "hello_qemu: argv[0] is not the user's file name"; }
sed -E 's#"/[^"]*/([^"/]+)"#"\1"#' "$T/hello.out" >"$T/hello.norm"
sed -E 's#"/[^"]*/([^"/]+)"#"\1"#' "$T/hello_qemu.out" >"$T/hello_qemu.norm"
cmp "$T/hello.norm" "$T/hello_qemu.norm" || fail "console differs between the libvirt and qemu drivers"

# Without RDSEED under TCG, Unikraft crashes: pvpanic → 134. (Under a KVM with RDSEED it runs: 0.)
run_ukrun rng --driver libvirt "$S/helloworld_qemu-x86_64"
id=$(last_run_id)
accel=$(sql "SELECT ifnull((SELECT value FROM run_facts WHERE run_id = $id AND key = 'accel'), '') FROM runs WHERE id = $id")
if [[ $accel == kvm && $RC == 0 ]]; then
	log "helloworld_qemu-x86_64 ran under KVM"
else
	expect_rc rng 134
	grep -q 'Could not initialize the HWRNG' "$T/rng.out" || fail "rng: the console lacks Unikraft's HWRNG error"
	expect_record "$id" done 134 lifecycle
fi

# The uktest image: the same exit status on both drivers.
if [[ -f $S/uktest_qemu-x86_64-norng ]]; then
	run_ukrun ukt_qemu "$S/uktest_qemu-x86_64-norng"
	want=$RC
	run_ukrun ukt "$S/uktest_qemu-x86_64-norng" --driver libvirt
	expect_rc ukt "$want"
	grep -q 'ukrun_demo->fails_on_purpose' "$T/ukt.out" || fail "ukt: the uktest output is missing"
fi

# mb_hang stands in for a hung unikernel (no real image hangs): timeout → 124, nothing left.
run_ukrun hang --driver libvirt --timeout 2 "$FX/mb_hang"
expect_rc hang 124
lv_wait_no_domains 10 || fail "hang: a domain is left after the timeout"
