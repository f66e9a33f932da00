#!/usr/bin/env bash
# Thousands of test cases: they are written to the store off the event loop, and the run's end is recorded only
# after them, so the moment the client has its verdict every case is there (the API agrees with the console), for several such runs at once, while the daemon keeps serving.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd --max-concurrent 3
pids=()
for i in 1 2 3; do
	"$UKRUN" "$FX/lx_manytests" 5000 </dev/null >"$T/many$i.out" 2>"$T/many$i.err" &
	pids+=($!)
done
for i in 1 2 3; do
	wait_rc "${pids[i - 1]}"
	[[ $RC == 101 ]] || { cat "$T/many$i.err" >&2; fail "many$i: exit $RC, want 101"; }
done
healthy || fail "runnerd stopped answering"
for id in $(sql "SELECT id FROM runs WHERE name = 'lx_manytests'"); do
	expect_record "$id" done 101 process
	api GET "/v1/runs/$id/tests"
	[[ $HTTP_STATUS == 200 ]] || fail "GET tests of run $id: $HTTP_STATUS"
	n=$("$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); c=d["cases"]; print(len(c), sum(x["outcome"]=="failed" for x in c), c[99]["name"], c[4999]["name"])' <<<"$API_BODY")
	[[ $n == '5000 50 suite::t_000099 suite::t_004999' ]] || fail "run $id: test cases '$n'"
done
# Right after the client returned, the cases are there: they are stored before the end is.
run_ukrun last "$FX/lx_manytests" 300
expect_rc last 101
id=$(last_run_id)
api GET "/v1/runs/$id/tests"
[[ $("$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)["cases"]))' <<<"$API_BODY") == 300 ]] ||
	fail "the tests of run $id right after the run: $(head -c 300 <<<"$API_BODY")"
log "ok"
