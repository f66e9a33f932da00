#!/usr/bin/env bash
# Loader mode with C programs built here with `gcc -static-pie`: exit status through the exit-code elfloader
# kernel, arguments, Unikraft crash, hang → timeout, a non-PIE program (warned about, then refused by the
# elfloader itself: 126 with its error line as the reason), and the kernel uploaded only once.
set -euo pipefail
. "$(dirname "$0")/lib_loader.sh"

command -v gcc >/dev/null || skip "gcc is not installed"
for p in ld_exit ld_args ld_segv ld_hang ld_after; do
	gcc -static-pie -O2 -o "$T/$p" "$LOADER_SRC/c/$p.c" 2>"$T/gcc.err" ||
		skip "gcc cannot link static-pie programs here: $(head -n 3 "$T/gcc.err")"
done
# Non-PIE static: the same program linked at a fixed address.
gcc -static -no-pie -fno-pie -O2 -o "$T/ld_exit_nopie" "$LOADER_SRC/c/ld_exit.c" ||
	fail "gcc -static -no-pie failed"

start_daemon runnerd
up0=$(metric ukrun_image_uploads_total)
skip0=$(metric ukrun_image_upload_skipped_total)

# 1. exit status: the program's return value is ukrun's exit status, exactly.
run_ukrun exit7 --loader "$K_EXIT" "$T/ld_exit" 7
expect_rc exit7 7
[[ $(program_text "$T/exit7.out") == "exit 7" ]] || fail "exit7: program output '$(program_text "$T/exit7.out")'"
id=$(last_run_id)
expect_record "$id" done 7 debug-exit
expect_console_match exit7 "$id"
[[ $(record_field "$id" mode) == loader ]] || fail "run $id: mode is not 'loader'"
[[ $(record_field "$id" loader) == $(sha256sum "$K_EXIT" | cut -d' ' -f1) ]] || fail "run $id: loader digest"
# Fresh daemon: the program and the kernel were both uploaded.
up1=$(metric ukrun_image_uploads_total)
((up1 == up0 + 2)) || fail "first loader run: $((up1 - up0)) uploads, want 2 (program + kernel)"

# 2. arguments with spaces and quotes reach argv[1..] unchanged; a different program, same kernel: only the
# program is uploaded, the kernel is found by its digest.
run_ukrun args --loader "$K_EXIT" "$T/ld_args" plain "two words" "it's" 'say "hi"' ' lead' 'trail ' 'a=b' '--flag'
expect_rc args 0
want='argc-1=8
argv[1]=[plain]
argv[2]=[two words]
argv[3]=[it'"'"'s]
argv[4]=[say "hi"]
argv[5]=[ lead]
argv[6]=[trail ]
argv[7]=[a=b]
argv[8]=[--flag]'
got=$(program_text "$T/args.out")
[[ $got == "$want" ]] || { diff <(echo "$want") <(echo "$got") >&2 || true; fail "args: argv differs"; }
up2=$(metric ukrun_image_uploads_total)
((up2 == up1 + 1)) || fail "second program with the same kernel: $((up2 - up1)) uploads, want 1 (the kernel is stored)"
skip2=$(metric ukrun_image_upload_skipped_total)
((skip2 > skip0)) || fail "the kernel's upload was not counted as skipped"

# The loader can also come from the environment.
UKRUN_LOADER=$K_EXIT run_ukrun env9 "$T/ld_exit" 9
expect_rc env9 9
[[ $(program_text "$T/env9.out") == "exit 9" ]] || fail "env9: program output"
[[ $(record_field "$(last_run_id)" mode) == loader ]] || fail "UKRUN_LOADER run is not in loader mode"
((up2 == $(metric ukrun_image_uploads_total))) || fail "re-running stored images uploaded something"

# 3. a segfault in the program is a Unikraft crash: 134.
run_ukrun segv --loader "$K_EXIT" "$T/ld_segv"
expect_rc segv 134
program_text "$T/segv.out" | head -n 1 | grep -qx 'about to segfault' || fail "segv: program output missing"
id=$(last_run_id)
[[ $(sql "SELECT state || '|' || exit_code FROM runs WHERE id = $id") == 'done|134' ]] ||
	fail "segv: run $id record: $(sql "SELECT state, exit_code, exit_source FROM runs WHERE id = $id")"

# 4. a program that never ends is stopped at the timeout: 124.
run_ukrun hang --timeout 3 --loader "$K_EXIT" "$T/ld_hang"
expect_rc hang 124
[[ $(program_text "$T/hang.out") == hanging ]] || fail "hang: program output '$(program_text "$T/hang.out")'"
expect_record "$(last_run_id)" timeout 124 timeout

# 5. a static non-PIE program: ukrun warns (the elfloader needs static-pie) but runs it, and the elfloader's
# refusal becomes 126 with its error line as the run's reason, not a clean "pass".
runs_before=$(sql 'SELECT count(*) FROM runs')
run_ukrun nopie --loader "$K_EXIT" "$T/ld_exit_nopie" 3
expect_err_grep nopie 'static-pie'
expect_rc nopie 126
((runs_before + 1 == $(sql 'SELECT count(*) FROM runs'))) || fail "nopie: no run was recorded (refused by the client?)"
id=$(last_run_id)
expect_record "$id" done 126 "$(sql "SELECT exit_source FROM runs WHERE id = $id")"
reason=$(sql "SELECT reason FROM runs WHERE id = $id")
grep -q 'appelfloader' <<<"$reason" || fail "nopie: reason lacks the elfloader's error line: '$reason'"
grep -qi 'ELF' <<<"$reason" || fail "nopie: reason does not mention the ELF: '$reason'"
# `ukrun show` reports the same reason.
"$UKRUN" show --json "$id" | jget reason | grep -q 'appelfloader' || fail "nopie: ukrun show $id lacks the reason"

# 6. the stock kernel never exits: after libtest's summary the run ends once the guest idles (runnerd samples
# QEMU's busy time), not while the program still computes after the summary (1.5 s here, less than the
# 2 s console grace) — that would lose its last line — and not only after the grace period of silence.
run_ukrun after --timeout 120 --loader "$K_STOCK" "$T/ld_after" 1500
expect_rc after 0
program_text "$T/after.out" | grep -qx 'after the summary: computed 1500 ms' ||
	fail "after: the line printed after the summary is missing: the run was ended while the guest computed"
id=$(last_run_id)
expect_record "$id" done 0 console
notes=$(sql "SELECT group_concat(message, ' | ') FROM run_notes WHERE run_id = $id")
grep -q 'the guest then idled' <<<"$notes" ||
	fail "after: run $id did not end on the guest going idle (notes: $notes)"

healthy || fail "runnerd unhealthy after the loader runs"
