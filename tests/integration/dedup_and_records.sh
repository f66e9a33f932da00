#!/usr/bin/env bash
# Content-addressed images are uploaded once; every run leaves a complete record that `ukrun ps/show/logs` and the
# API read back (newest first); libtest output is parsed into test cases; `ukrun cancel` stops a running guest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd

# metric NAME: a sample's value from /metrics.
metric() {
	curl -sS --unix-socket "$UKRUN_SOCKET" http://runnerd/metrics | awk -v n="$1" '$1 == n { print $2; exit }'
}

size=$(stat -c %s "$FX/mb_hello")
run_ukrun first "$FX/mb_hello"
expect_rc first 0
expect_out first $'Hello from mb_hello\n'
[[ $(metric ukrun_image_uploads_total) == 1 ]] || fail "uploads after the first run: $(metric ukrun_image_uploads_total)"
[[ $(metric ukrun_image_upload_bytes_total) == "$size" ]] || fail "upload bytes: $(metric ukrun_image_upload_bytes_total), want $size"
skipped=$(metric ukrun_image_upload_skipped_total)

run_ukrun second "$FX/mb_hello"
expect_rc second 0
expect_out second $'Hello from mb_hello\n'
[[ $(metric ukrun_image_uploads_total) == 1 ]] || fail "the second run uploaded the image again"
[[ $(metric ukrun_image_upload_bytes_total) == "$size" ]] || fail "upload bytes grew on the second run"
# A warm run asks for the run at once (POST /v1/runs names the digest): no HEAD per image.
(($(metric ukrun_image_upload_skipped_total) == skipped)) || fail "the second run asked (HEAD) for a stored image"
[[ $(sql 'SELECT count(*) FROM images') == 1 ]] || fail "one image expected in the store"
# The same bytes under another file name are the same image too.
cp "$FX/mb_hello" "$T/renamed_hello"
run_ukrun renamed "$T/renamed_hello"
expect_rc renamed 0
[[ $(metric ukrun_image_uploads_total) == 1 ]] || fail "a renamed copy was uploaded again"
[[ $(sql "SELECT name FROM runs WHERE id = $(last_run_id)") == renamed_hello ]] || fail "the run does not carry the file name"

# More runs, so that run ids reach two digits (newest-first order must be numeric).
run_ukrun libtest "$FX/mb_libtest"
expect_rc libtest 101
libtest_id=$(last_run_id)
for i in $(seq 1 8); do
	run_ukrun "exit$i" "$FX/lx_exit" "$i"
	expect_rc "exit$i" "$i"
done
last=$(last_run_id)
((last >= 12)) || fail "expected at least 12 runs, newest is $last"

# Every run is complete in the database.
for id in $(sql 'SELECT id FROM runs'); do
	row=$(sql "SELECT state || '|' || exit_code || '|' || exit_source FROM runs WHERE id = $id")
	IFS='|' read -r st code src <<<"$row"
	[[ $st == done && -n $code && -n $src ]] || fail "run $id: incomplete record '$row'"
	expect_record "$id" "$st" "$code" "$src"
done
[[ $(sql "SELECT count(*) FROM runs WHERE datetime(created_at) > datetime(started_at) OR datetime(started_at) > datetime(ended_at)") == 0 ]] ||
	fail "a run's timestamps are out of order"

# The API lists them newest first, by id.
api GET '/v1/runs?limit=100'
[[ $HTTP_STATUS == 200 ]] || fail "GET /v1/runs: $HTTP_STATUS"
jget runs <<<"$API_BODY" | "$PYTHON" -c 'import json,sys; print("\n".join(str(r["id"]) for r in json.load(sys.stdin)))' >"$T/api.ids"
sql 'SELECT id FROM runs ORDER BY id DESC' >"$T/db.ids"
cmp "$T/api.ids" "$T/db.ids" || { paste "$T/api.ids" "$T/db.ids" >&2; fail "GET /v1/runs is not newest first (api | db)"; }
# api_ids QUERY: the run ids a GET /v1/runs?QUERY returns, space-separated.
api_ids() {
	api GET "/v1/runs?$1"
	[[ $HTTP_STATUS == 200 ]] || fail "GET /v1/runs?$1: $HTTP_STATUS"
	jget runs <<<"$API_BODY" | "$PYTHON" -c 'import json,sys; print(" ".join(str(r["id"]) for r in json.load(sys.stdin)))'
}
# A page is the newest runs, and `before` continues below an id.
[[ $(api_ids limit=3) == "$last $((last - 1)) $((last - 2))" ]] || fail "limit=3 gives '$(api_ids limit=3)', want the 3 newest"
[[ $(api_ids "limit=3&before=$((last - 1))") == "$((last - 2)) $((last - 3)) $((last - 4))" ]] ||
	fail "before=$((last - 1))&limit=3 gives '$(api_ids "limit=3&before=$((last - 1))")'"

# `ukrun ps --all` shows every run, newest first.
run_ukrun ps ps --all
expect_rc ps 0
awk 'NR > 1 { print $1 }' "$T/ps.out" >"$T/ps.ids"
cmp "$T/ps.ids" "$T/db.ids" || { cat "$T/ps.out" >&2; fail "ukrun ps --all does not list every run newest first"; }
grep -Eq "^$libtest_id +done +101 +qemu" "$T/ps.out" || { cat "$T/ps.out" >&2; fail "ps: the libtest run's line is wrong"; }
run_ukrun ps_n ps -n 3
expect_rc ps_n 0
[[ $(awk 'NR > 1 { printf "%s ", $1 }' "$T/ps_n.out") == "$last $((last - 1)) $((last - 2)) " ]] ||
	{ cat "$T/ps_n.out" >&2; fail "ukrun ps -n 3 does not show the 3 newest runs"; }
run_ukrun ps_state ps --state timeout
expect_rc ps_state 0
[[ $(awk 'NR > 1' "$T/ps_state.out" | wc -l) == 0 ]] || fail "ps --state timeout lists runs"

# `ukrun logs ID` prints the stored console byte-exact; `ukrun show --json ID` the record.
run_ukrun logs logs 1
expect_rc logs 0
expect_out logs $'Hello from mb_hello\n'
run_ukrun logs_libtest logs "$libtest_id"
expect_rc logs_libtest 0
cmp "$T/logs_libtest.out" "$T/libtest.out" || fail "ukrun logs differs from what the run printed"
run_ukrun show show --json "$libtest_id"
expect_rc show 0
[[ $(jget exit_code <"$T/show.out") == 101 && $(jget state <"$T/show.out") == done ]] || { cat "$T/show.out" >&2; fail "ukrun show: wrong record"; }
run_ukrun logs_missing logs 999999
expect_rc logs_missing 1

# The libtest run's parsed test cases.
api GET "/v1/runs/$libtest_id/tests"
[[ $HTTP_STATUS == 200 ]] || fail "GET tests: $HTTP_STATUS"
cases=$(jget cases <<<"$API_BODY" | "$PYTHON" -c 'import json,sys; print(" ".join(c["name"] + "=" + c["outcome"] for c in json.load(sys.stdin)))')
[[ $cases == "a=ok b=failed c=ok" ]] || fail "test cases '$cases', want 'a=ok b=failed c=ok'"
[[ $(sql "SELECT group_concat(name || '=' || outcome, ' ') FROM (SELECT * FROM test_cases WHERE run_id = $libtest_id ORDER BY pos)") == "a=ok b=failed c=ok" ]] ||
	fail "test_cases rows wrong"

# Cancel a running guest: the waiting ukrun exits 130 and the run is `cancelled`.
"$UKRUN" --timeout 60 "$FX/mb_hang" </dev/null >"$T/hang.out" 2>"$T/hang.err" &
hang_pid=$!
hang_id=$(wait_run_id mb_hang)
wait_state "$hang_id" running 30
# Cancel only once the guest's output reached the client, so that the console check below is not a race.
for _ in $(seq 300); do
	[[ $(cat "$T/hang.out") == hanging ]] && break
	sleep 0.1
done
run_ukrun cancel cancel "$hang_id"
expect_rc cancel 0
wait_rc "$hang_pid"
hang_rc=$RC
[[ $hang_rc == 130 ]] || { cat "$T/hang.err" >&2; fail "the cancelled ukrun exited $hang_rc, want 130"; }
[[ $(cat "$T/hang.out") == hanging ]] || fail "the cancelled run's console was not printed"
grep -qi cancel "$T/hang.err" || fail "the cancelled ukrun does not say it was cancelled"
row=$(sql "SELECT state || '|' || exit_code FROM runs WHERE id = $hang_id")
[[ $row == 'cancelled|130' ]] || fail "cancelled run record: '$row'"
[[ -n $(sql "SELECT ended_at FROM runs WHERE id = $hang_id") ]] || fail "cancelled run has no ended_at"
left=$(pgrep -f -- "$T/data/runs/" || true)
[[ -z $left ]] || fail "QEMU still running after cancel"
# Cancelling an ended run is refused.
run_ukrun cancel_again cancel "$hang_id"
expect_rc cancel_again 1
