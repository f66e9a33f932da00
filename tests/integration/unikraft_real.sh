#!/usr/bin/env bash
# Real Unikraft helloworld images (../shared/fixtures): arguments after the `--` rule reach main, the clean halt
# maps to 0, and an image that needs RDSEED fails as a crash with a hint when the CPU lacks it (TCG).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

S=$UKRUN_SHARED_FIXTURES
[[ -n $S && -d $S ]] || skip "no real Unikraft images: UKRUN_SHARED_FIXTURES='${S}' is absent"
for f in helloworld_qemu-x86_64-norng helloworld_linuxu-x86_64 helloworld_qemu-x86_64; do
	[[ -f $S/$f ]] || skip "$S/$f is absent"
done

start_daemon runnerd

# expect_hello NAME ARGV0_REGEX: the helloworld console with main's arguments. Unikraft's serial console ends
# lines with CR LF (passed through byte-exact), linuxu's with LF.
expect_hello() {
	tr -d '\r' <"$T/$1.out" >"$T/$1.lf"
	grep -q '^Hello world!$' "$T/$1.lf" || { cat "$T/$1.out" >&2; fail "$1: no 'Hello world!' line"; }
	grep -Eq "^Arguments: +$2 \"foo\" \"bar\"\$" "$T/$1.lf" ||
		{ cat "$T/$1.out" >&2; fail "$1: the Arguments line is not $2 \"foo\" \"bar\""; }
}

run_ukrun qemu "$S/helloworld_qemu-x86_64-norng" foo bar
expect_rc qemu 0
# argv[0] is the user's file name (QEMU passes the -kernel string on), as on linuxu: not a daemon path.
expect_hello qemu '"helloworld_qemu-x86_64-norng"'
id=$(last_run_id)
[[ $(sql "SELECT state || '/' || exit_code FROM runs WHERE id = $id") == done/0 ]] || fail "qemu: record not done/0"
[[ $(sql "SELECT platform FROM runs WHERE id = $id") == qemu ]] || fail "qemu: not detected as a qemu image"

# `--uk-param P IMAGE -- ARGS`: the user's `--` is the kernel command line's one separator, not a second one
# (this image has no libparam, so main sees the parameter and that one `--`).
run_ukrun ukp --uk-param foo.bar=1 "$S/helloworld_qemu-x86_64-norng" -- a b
expect_rc ukp 0
tr -d '\r' <"$T/ukp.out" | grep -Eq '^Arguments: +"helloworld_qemu-x86_64-norng" "foo.bar=1" "--" "a" "b"$' ||
	{ cat "$T/ukp.out" >&2; fail "ukp: not exactly one -- between the parameter and the arguments"; }

run_ukrun linuxu "$S/helloworld_linuxu-x86_64" foo bar
expect_rc linuxu 0
expect_hello linuxu '"helloworld_linuxu-x86_64"'
id=$(last_run_id)
[[ $(sql "SELECT state || '/' || exit_code || '/' || platform FROM runs WHERE id = $id") == done/0/linuxu ]] ||
	fail "linuxu: record not done/0/linuxu"

run_ukrun rng "$S/helloworld_qemu-x86_64" foo bar
id=$(last_run_id)
accel=$(sql "SELECT ifnull((SELECT value FROM run_facts WHERE run_id = $id AND key = 'accel'), ifnull(accel, '')) FROM runs WHERE id = $id")
if [[ $accel == kvm && $RC == 0 ]]; then
	# A real KVM with RDSEED in the host CPU runs it like the norng image.
	log "helloworld_qemu-x86_64 ran under KVM"
	expect_hello rng '"[^"]*"'
else
	expect_rc rng 134
	grep -q 'Could not initialize the HWRNG' "$T/rng.out" || fail "rng: the console lacks Unikraft's HWRNG error"
	expect_err_grep rng 'RDSEED|HWRNG'
	expect_record "$id" done 134 "$(sql "SELECT exit_source FROM runs WHERE id = $id")"
fi
