#!/usr/bin/env bash
# The CLI against a real runnerd and real linuxu runs: every subcommand with and without --json (the JSON parses and
# carries the runs/images/hosts it should), every filter of `ps`, `rm` refused (exit 1) while a running run uses
# the image, `cancel`, and `daemon start|stop|status` on a daemon of this test's own.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || skip "bubblewrap (bwrap) is not installed"
start_daemon runnerd

# json NAME EXPR: evaluate a python expression over the JSON on $T/NAME.out (bound to `d`); prints the result.
json() {
	"$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/$1.out" "$2" ||
		fail "$1: stdout is not the expected JSON"
}

run_ukrun hello --label suite=cli "$FX/lx_hello"
expect_rc hello 0
hello_id=$(last_run_id)
run_ukrun exit3 "$FX/lx_exit" 3
expect_rc exit3 3
exit3_id=$(last_run_id)

# ---- ps / runs: table and JSON, each filter ----
for cmd in ps runs; do
	run_ukrun $cmd $cmd
	expect_rc $cmd 0
	head -1 "$T/$cmd.out" | grep -Eq '^ID +STATE +EXIT +PLATFORM +DURATION +NAME$' || fail "$cmd: no table header"
	grep -Eq "^$exit3_id +done +3 +linuxu .* lx_exit\$" "$T/$cmd.out" || { cat "$T/$cmd.out" >&2; fail "$cmd: no lx_exit row"; }
	! grep -q $'\033' "$T/$cmd.out" || fail "$cmd: colour on a pipe"
	run_ukrun ${cmd}_json $cmd --json
	expect_rc ${cmd}_json 0
	[[ $(json ${cmd}_json '[r["id"] for r in d["runs"]]') == "['$exit3_id', '$hello_id']" ]] || fail "$cmd --json: runs"
done
run_ukrun ps_n1 ps --json -n 1
[[ $(json ps_n1 'len(d["runs"])') == 1 ]] || fail "ps -n 1: not one run"
run_ukrun ps_label ps --json --label suite=cli
[[ $(json ps_label '[r["id"] for r in d["runs"]]') == "['$hello_id']" ]] || fail "ps --label suite=cli"
run_ukrun ps_labelkey ps --json --label suite
[[ $(json ps_labelkey '[r["id"] for r in d["runs"]]') == "['$hello_id']" ]] || fail "ps --label suite (key only)"
run_ukrun ps_image ps --json --image "$FX/lx_exit"
[[ $(json ps_image '[r["id"] for r in d["runs"]]') == "['$exit3_id']" ]] || fail "ps --image FILE"
sha=$(sha256sum "$FX/lx_hello" | cut -d' ' -f1)
run_ukrun ps_sha ps --json --image "$sha"
[[ $(json ps_sha '[r["id"] for r in d["runs"]]') == "['$hello_id']" ]] || fail "ps --image SHA"
run_ukrun ps_before ps --json --before "$exit3_id"
[[ $(json ps_before '[r["id"] for r in d["runs"]]') == "['$hello_id']" ]] || fail "ps --before"
run_ukrun ps_state ps --json --state running
[[ $(json ps_state 'len(d["runs"])') == 0 ]] || fail "ps --state running: not empty"
run_ukrun ps_all ps --all
expect_rc ps_all 0
[[ $(wc -l <"$T/ps_all.out") == 3 ]] || fail "ps --all: want a header and 2 rows"

# ---- show ----
run_ukrun show show "$exit3_id"
expect_rc show 0
grep -Eq '^exit_code +3$' "$T/show.out" || { cat "$T/show.out" >&2; fail "show: no exit_code line"; }
grep -Eq '^name +lx_exit$' "$T/show.out" || fail "show: no name line"
run_ukrun show_json show --json "$exit3_id"
[[ $(json show_json 'd["exit_code"], d["state"], d["platform"]') == "(3, 'done', 'linuxu')" ]] || fail "show --json"

# ---- logs ----
run_ukrun logs logs "$exit3_id"
expect_rc logs 0
expect_out logs $'exit 3\n'
run_ukrun logs_json logs --json "$exit3_id"
[[ $(json logs_json 'd["console"] == "exit 3\n" and d["id"] == "'"$exit3_id"'"') == True ]] || fail "logs --json"
run_ukrun logs_f logs -f "$exit3_id"
expect_out logs_f $'exit 3\n'

# ---- images / hosts / version / ping ----
run_ukrun images images
expect_rc images 0
grep -Eq "^${sha:0:12} +[0-9]+K +linuxu .* lx_hello\$" "$T/images.out" || { cat "$T/images.out" >&2; fail "images: no lx_hello row"; }
run_ukrun images_json images --json
[[ $(json images_json 'sorted(i["name"] for i in d["images"])') == "['lx_exit', 'lx_hello']" ]] || fail "images --json"
run_ukrun hosts hosts
expect_rc hosts 0
grep -Eq '^local +up +[0-9]+ +0 +0 +- +.*linuxu' "$T/hosts.out" || { cat "$T/hosts.out" >&2; fail "hosts: no local row"; }
run_ukrun hosts_json hosts --json
[[ $(json hosts_json 'd["hosts"][0]["name"]') == local ]] || fail "hosts --json"
run_ukrun version version
expect_rc version 0
grep -q '^ukrun ' "$T/version.out" && grep -q '^runnerd ' "$T/version.out" || fail "version: client and daemon"
run_ukrun version_json version --json
[[ $(json version_json '"linuxu" in [x["name"] for x in d["daemon"]["drivers"]] and bool(d["client"])') == True ]] ||
	fail "version --json"
run_ukrun ping ping
expect_rc ping 0
run_ukrun ping_json ping --json
[[ $(json ping_json 'd["running"]') == True ]] || fail "ping --json"

# ---- cancel, and rm refused while a run uses the image ----
"$UKRUN" --timeout 60 "$FX/lx_hang" </dev/null >"$T/hang.out" 2>"$T/hang.err" &
hang_client=$!
hang_id=$(wait_run_id lx_hang)
wait_state "$hang_id" running 30
run_ukrun ps_running ps --json --state running
[[ $(json ps_running '[r["id"] for r in d["runs"]]') == "['$hang_id']" ]] || fail "ps --state running"
run_ukrun rm_busy rm "$FX/lx_hang"
expect_rc rm_busy 1
expect_err_grep rm_busy 'in use'
run_ukrun cancel_json cancel --json "$hang_id"
expect_rc cancel_json 0
[[ $(json cancel_json 'd["id"]') == "$hang_id" ]] || fail "cancel --json: not the run's record"
wait_rc "$hang_client"
[[ $RC == 130 ]] || fail "the cancelled run's client exited $RC, want 130"
run_ukrun show_cancelled show --json "$hang_id"
[[ $(json show_cancelled 'd["state"]') == cancelled ]] || fail "show after cancel: state"
run_ukrun cancel_again cancel "$hang_id"
expect_rc cancel_again 1
expect_err_grep cancel_again 'already ended'
run_ukrun cancel_plain cancel "$hang_id"
expect_rc cancel_plain 1

# ---- rm: by file, by prefix, then gone (1), JSON ----
run_ukrun rm_file rm "$FX/lx_hang"
expect_rc rm_file 0
run_ukrun rm_again rm "$FX/lx_hang"
expect_rc rm_again 1
expect_err_grep rm_again 'no image'
run_ukrun rm_prefix rm --json "${sha:0:8}"
expect_rc rm_prefix 0
[[ $(json rm_prefix 'd["deleted"]') == "$sha" ]] || fail "rm --json PREFIX"
run_ukrun images_after images --json
[[ $(json images_after '[i["name"] for i in d["images"]]') == "['lx_exit']" ]] || fail "images after rm"
# Past runs keep their records.
run_ukrun show_after show --json "$hello_id"
[[ $(json show_after 'd["state"]') == done ]] || fail "show of a run whose image was removed"

# ---- daemon start|stop|status on a socket of its own (never the test's daemon) ----
export UKRUN_RUNNERD=$RUNNERD UKRUN_DATA_DIR=$T/spawned-data
own=(--socket "$T/own.sock")
run_ukrun st0 daemon status "${own[@]}"
expect_rc st0 3
grep -q 'not running' "$T/st0.out" || fail "daemon status: not 'not running'"
run_ukrun st0j daemon status --json "${own[@]}"
[[ $(json st0j 'd["running"]') == False ]] || fail "daemon status --json (stopped)"
run_ukrun start daemon start "${own[@]}"
expect_rc start 0
pid=$(curl -sS --unix-socket "$T/own.sock" http://runnerd/healthz | jget pid)
[[ -n $pid ]] && adopt_daemon "$pid"
grep -q "pid $pid" "$T/start.out" || fail "daemon start: does not show the pid"
run_ukrun st1 daemon status --json "${own[@]}"
expect_rc st1 0
[[ $(json st1 'd["health"]["pid"]') == "$pid" ]] || fail "daemon status --json (running)"
run_ukrun stop daemon stop --json "${own[@]}"
expect_rc stop 0
[[ $(json stop 'd["stopped"]') == True ]] || fail "daemon stop --json"
pid_alive "$pid" && fail "daemon stop returned while runnerd $pid is alive"
run_ukrun stop2 daemon stop "${own[@]}"
expect_rc stop2 0
grep -q 'not running' "$T/stop2.out" || fail "daemon stop of a stopped daemon"
healthy || fail "the test's own daemon went away"
log "ok"
