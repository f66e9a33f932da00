#!/usr/bin/env bash
# Past the console cap the daemon stops spending a core on bytes it drops: it reads the guest's console only
# now and then (the guest blocks on its full pipe), says so in the run's notes, and every verdict is unchanged —
# the stored console is the byte-exact prefix, the exit code is the guest's, and libtest results printed after
# the cap are still parsed (all bytes still reach the test parser); a timeout still ends a throttled flood (124).
# (QEMU's serial console, under TCG or KVM, is slower than the throttle's rate here, so only linuxu floods it.)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd --console-cap 65536
note_of() { sql "SELECT group_concat(message, ' | ') FROM run_notes WHERE run_id = $1"; }

# linuxu: 200000 lines (8.8 MB) through a 64 KiB cap.
N=200000
"$PYTHON" -c 'import sys; sys.stdout.write("".join("line %06d abcdefghijklmnopqrstuvwxyz0123456789\n" % i for i in range(1, 2000))[:65536])' >"$T/prefix.want"
expect_run flood 0 process linuxu/linuxu "$FX/lx_flood" "$N"
expect_out_file flood "$T/prefix.want"
note_of "$RUN_ID" | grep -q 'console past its cap: the guest.s output is now read at about 6 MB/s' ||
	fail "no throttle note: $(note_of "$RUN_ID")"
[[ $(sql "SELECT console_bytes || '/' || console_truncated FROM runs WHERE id = $RUN_ID") == 65536/1 ]] || fail "console record"

# libtest results far past the cap still decide the verdict and are all parsed.
run_ukrun many "$FX/lx_manytests" 20000
expect_rc many 101
id=$(last_run_id)
api GET "/v1/runs/$id/tests"
[[ $("$PYTHON" -c 'import json,sys; c=json.load(sys.stdin)["cases"]; print(len(c), sum(x["outcome"]=="failed" for x in c))' <<<"$API_BODY") == '20000 200' ]] ||
	fail "test cases past the cap were not all parsed"

# A throttled flood that never ends is still stopped by its timeout.
run_ukrun endless --timeout 3 "$FX/lx_flood" 100000000
expect_rc endless 124
expect_record "$(last_run_id)" timeout 124 timeout
log "ok"
