#!/usr/bin/env bash
# libvirt driver (`ukrun --driver libvirt`) on the multiboot fixtures through a real libvirtd: console bytes and
# exit codes as on the qemu driver wherever libvirt can see the end (power-off 0, pvpanic 134, triple fault 134,
# libtest failure 101 from the console), the documented code where it cannot (isa-debug-exit value → 1, source
# debug-exit-unknown), a timeout → 124 and a cancel → 130 with no domain left, and the default driver unchanged.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_libvirt.sh"

start_daemon runnerd
grep -q 'driver libvirt: libvirt' "$T/runnerd.log" || { cat "$T/runnerd.log" >&2; fail "the libvirt driver did not probe"; }

expect_run hello 0 lifecycle qemu/libvirt --driver libvirt "$FX/mb_hello"
expect_out hello $'Hello from mb_hello\n'
[[ -n $(sql "SELECT value FROM run_facts WHERE run_id = $RUN_ID AND key = 'libvirt_domain'") ]] ||
	fail "hello: the domain name is not recorded"

expect_run args 0 lifecycle qemu/libvirt --driver libvirt "$FX/mb_args" one two
grep -q '^arg\[1\]: one$' "$T/args.out" && grep -q '^arg\[2\]: two$' "$T/args.out" ||
	{ cat "$T/args.out" >&2; fail "args: the arguments did not reach the kernel"; }

expect_run panic 134 lifecycle qemu/libvirt --driver libvirt "$FX/mb_panic"
expect_out panic $'about to panic\n'

expect_run crash 134 lifecycle qemu/libvirt --driver libvirt "$FX/mb_crash"
expect_out crash $'about to triple fault\n'

expect_run libtest 101 console qemu/libvirt --driver libvirt "$FX/mb_libtest"
grep -q '^test result: FAILED' "$T/libtest.out" || fail "libtest: summary missing from the console"
lid=$RUN_ID
# The same console bytes and parsed test cases as on the qemu driver.
expect_run libtest_qemu 101 console qemu/qemu "$FX/mb_libtest"
cmp "$T/libtest.out" "$T/libtest_qemu.out" || fail "libtest: console differs between the libvirt and qemu drivers"
cases() { # run id → [(name, outcome), ...]
	api GET "/v1/runs/$1/tests"
	jget cases <<<"$API_BODY" | "$PYTHON" -c 'import json, sys; print(json.dumps([(c["name"], c["outcome"]) for c in json.load(sys.stdin)]))'
}
lc=$(cases "$lid")
qc=$(cases "$RUN_ID")
[[ $lc != "[]" && $lc == "$qc" ]] || fail "libtest: test cases differ or are missing: libvirt $lc, qemu $qc"

# libvirt never sees QEMU's exit status: the value written to isa-debug-exit is unknown, and said so.
expect_run exit7 1 debug-exit-unknown qemu/libvirt --driver libvirt "$FX/mb_exit7"
expect_out exit7 $'exit 7\n'

run_ukrun hang --driver libvirt --timeout 15 "$FX/mb_hang"
expect_rc hang 124
expect_out hang $'hanging\n'
expect_record "$(last_run_id)" timeout 124 timeout
lv_wait_no_domains 10 || fail "hang: a domain is left after the timeout: $(lv_owned_domains)"

prev=$(last_run_id)
"$UKRUN" --driver libvirt "$FX/mb_hang" >"$T/cancel.out" 2>"$T/cancel.err" &
cpid=$!
for _ in $(seq 150); do
	id=$(last_run_id)
	((id > prev)) && break
	sleep 0.1
done
((id > prev)) || fail "cancel: the run was never created"
wait_state "$id" running 60
api POST "/v1/runs/$id/cancel"
[[ $HTTP_STATUS == 200 || $HTTP_STATUS == 202 ]] || fail "cancel: HTTP $HTTP_STATUS $API_BODY"
wait_rc "$cpid"
[[ $RC == 130 ]] || { cat "$T/cancel.err" >&2; fail "cancel: ukrun exit $RC, want 130"; }
expect_record "$id" cancelled 130 cancel
lv_wait_no_domains 10 || fail "cancel: a domain is left: $(lv_owned_domains)"

# The default driver of a qemu image is still qemu; an unknown driver name is refused.
expect_run default 0 lifecycle qemu/qemu "$FX/mb_hello"
run_ukrun nodrv --driver nosuch "$FX/mb_hello"
expect_rc nodrv 2
api POST /v1/runs -H 'Content-Type: application/json' -d "{\"image\": \"$(sha256sum "$FX/mb_hello" | cut -d' ' -f1)\", \"driver\": \"nosuch\"}"
[[ $HTTP_STATUS == 400 ]] || fail "an unknown driver: $HTTP_STATUS, want 400 ($API_BODY)"
expect_err_grep nodrv 'no driver named nosuch'
