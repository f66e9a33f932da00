# lib.sh — shared helpers for ukrun's integration tests (sourced by every test script).
#
# Each test gets a private temp dir $T with its own runnerd (socket, data dir, log), so tests can run in
# parallel. On exit the daemons are stopped with SIGTERM and the test fails if any qemu/bwrap process that
# belongs to it (anything whose command line names $T) is still alive.
#
# Environment (set by CMake): UKRUN_BIN_DIR, UKRUN_FIXTURE_DIR, UKRUN_SHARED_FIXTURES.

set -euo pipefail
# UKRUN_IT_TRACE=1: trace every command with a timestamp (to find where a test spends its time).
if [[ ${UKRUN_IT_TRACE:-0} == 1 ]]; then
	PS4='+ $EPOCHREALTIME '
	set -x
fi

: "${UKRUN_BIN_DIR:?UKRUN_BIN_DIR must point at the directory holding ukrun and runnerd}"
: "${UKRUN_FIXTURE_DIR:?UKRUN_FIXTURE_DIR must point at the built fixtures}"
UKRUN_SHARED_FIXTURES=${UKRUN_SHARED_FIXTURES:-}

UKRUN=$UKRUN_BIN_DIR/ukrun
RUNNERD=$UKRUN_BIN_DIR/runnerd
FX=$UKRUN_FIXTURE_DIR
TEST_NAME=$(basename "$0" .sh)

T=$(mktemp -d "${TMPDIR:-/tmp}/ukrun-it-$TEST_NAME.XXXXXX")
export T
DB=$T/data/runnerd.db

# pids of the daemons this test started (stopped in reverse order on exit)
_daemon_pids=()
# functions to call on exit once the daemons are stopped, before $T is removed (at_cleanup FUNC)
_cleanup_hooks=()
at_cleanup() { _cleanup_hooks+=("$1"); }

# Make sure no stray daemon picks up a socket from the caller's environment.
unset UKRUN_URL UKRUN_TOKEN UKRUN_PLATFORM UKRUN_TIMEOUT UKRUN_LOADER UKRUN_RUNNERD UKRUN_DATA_DIR
export UKRUN_SOCKET=$T/runnerd.sock
# Autospawn tests point these elsewhere; by default nothing of the user's may leak in.
export XDG_RUNTIME_DIR=$T/xdg-runtime XDG_DATA_HOME=$T/xdg-data XDG_CONFIG_HOME=$T/xdg-config  # no user runnerd.conf leaks in
mkdir -m 0700 -p "$XDG_RUNTIME_DIR"

log() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }

fail() {
	printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2
	exit 1
}

skip() {
	printf '%s: SKIP: %s\n' "$TEST_NAME" "$*" >&2
	exit 77
}

# Processes (other than this shell's helpers) whose command line names the test dir: guests, sandboxes, daemons.
_leftovers() {
	pgrep -f -- "$T/" | grep -vx "$$" || true
}

_cleanup() {
	local rc=$?
	set +e
	for ((i = ${#_daemon_pids[@]} - 1; i >= 0; i--)); do
		local p=${_daemon_pids[i]}
		if kill -0 "$p" 2>/dev/null; then
			kill -TERM "$p" 2>/dev/null
			wait_pid_gone "$p" 20 || { log "FAIL: runnerd $p ignored SIGTERM"; kill -KILL "$p" 2>/dev/null; rc=1; }
		fi
		_reap_daemon "$p" || rc=1
	done
	# A sanitizer build reports memory errors and leaks on the daemon's stderr.
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:|ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$T"/*.stdio.log 2>/dev/null; then
		log "FAIL: sanitizer report from runnerd:"
		grep -hE -A20 'ERROR: (Address|Leak)Sanitizer|runtime error:|ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$T"/*.stdio.log | head -60 >&2
		rc=1
	fi
	# Background clients of this shell end with their daemon (bounded), then are reaped.
	local j
	for j in $(jobs -p); do
		wait_pid_gone "$j" 10 || { log "FAIL: background process $j still running"; kill -KILL "$j"; rc=1; }
	done
	wait 2>/dev/null
	local left
	left=$(_leftovers)
	if [[ -n $left ]]; then
		# A killed guest or sandbox may take a moment to be torn down by the kernel.
		for _ in $(seq 20); do
			left=$(_leftovers)
			[[ -z $left ]] && break
			sleep 0.1
		done
		if [[ -n $left ]]; then
			log "FAIL: processes of this test left behind:"
			ps -o pid,ppid,args -p "$(echo $left | tr ' ' ,)" >&2
			kill -KILL $left 2>/dev/null
			rc=1
		fi
	fi
	if ((rc != 0 && rc != 77)); then
		for f in "$T"/*.log "$T"/data/runnerd.log; do
			[[ -s $f ]] || continue
			log "---- tail of $f"
			tail -n 30 "$f" >&2
		done
	fi
	local hook
	for hook in "${_cleanup_hooks[@]}"; do
		"$hook" || rc=1
	done
	rm -rf "$T"
	if ((rc == 0)); then
		log "PASS"
	fi
	exit "$rc"
}
trap _cleanup EXIT

# pid_alive PID: the process exists and is not a zombie (an orphan's zombie may linger when PID 1 does not reap).
pid_alive() {
	kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

# wait_pid_gone PID SECONDS: bounded wait for a process (not necessarily our child) to disappear.
wait_pid_gone() {
	local pid=$1 secs=$2 i
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		# a zombie (ours, not yet reaped, or an orphan's) counts as gone
		[[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && return 0
		sleep 0.1
	done
	return 1
}

# api METHOD PATH [curl args...]: request to the test daemon; prints the body, then sets $HTTP_STATUS.
HTTP_STATUS=
api() {
	local method=$1 path=$2
	shift 2
	local out
	out=$(curl -sS --unix-socket "${API_SOCKET:-$UKRUN_SOCKET}" -X "$method" -w '\n%{http_code}' "$@" \
		"http://runnerd$path") || fail "curl $method $path failed"
	HTTP_STATUS=${out##*$'\n'}
	API_BODY=${out%$'\n'*}
}

# jget PATH: a field of the JSON document on stdin ("a.b.0.c"; numbers index arrays); strings raw, null → "",
# booleans true/false, anything else as JSON. (python3 rather than jq: it is in scripts/deps.)
jget() {
	"$PYTHON" -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split(".") if sys.argv[1] else []:
    v = v[int(k)] if isinstance(v, list) else v.get(k) if isinstance(v, dict) else None
if v is None: print("")
elif isinstance(v, bool): print("true" if v else "false")
elif isinstance(v, str): print(v)
else: print(json.dumps(v))
' "$1" 2>/dev/null || true
}

# healthy [SOCKET]: /healthz answers 200 with status ok.
healthy() {
	local body
	body=$(curl -sS --max-time 5 --unix-socket "${1:-$UKRUN_SOCKET}" http://runnerd/healthz 2>/dev/null) || return 1
	[[ $(jget status <<<"$body") == ok ]]
}

# start_daemon NAME [runnerd flags...]: a runnerd serving $T/NAME.sock with data in $T/NAME-data
# (NAME "runnerd" → $T/runnerd.sock, $T/data: the default one that UKRUN_SOCKET points at).
# Sets DAEMON_PID; waits (bounded) until /healthz answers.
start_daemon() {
	local name=$1 sock data
	shift
	if [[ $name == runnerd ]]; then
		sock=$T/runnerd.sock data=$T/data
	else
		sock=$T/$name.sock data=$T/$name-data
	fi
	# UKRUN_IT_DAEMON_WRAPPER: a command to run runnerd under, e.g. valgrind (its report lands in the stdio log).
	${UKRUN_IT_DAEMON_WRAPPER:-} "$RUNNERD" --socket "$sock" --data-dir "$data" --idle-timeout 0 --log "$T/$name.log" "$@" \
		</dev/null >>"$T/$name.stdio.log" 2>&1 &
	DAEMON_PID=$!
	_daemon_pids+=("$DAEMON_PID")
	local i
	for ((i = 0; i < 150; i++)); do
		healthy "$sock" && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$T/$name.stdio.log" >&2; fail "runnerd $name exited at start"; }
		sleep 0.1
	done
	fail "runnerd $name did not answer /healthz"
}

# adopt_daemon PID: a runnerd this test did not start itself (autospawned) is stopped on exit too.
adopt_daemon() {
	_daemon_pids+=("$1")
}

# _reap_daemon PID: collect the status of a daemon this shell started; it must have exited 0 (a crash or a
# sanitizer report at shutdown is a failure). Daemons that are not our children (autospawned) are skipped.
_reap_daemon() {
	local st=0
	wait "$1" 2>/dev/null || st=$?
	if [[ $st != 0 && $st != 127 ]]; then
		log "FAIL: runnerd $1 exited with status $st"
		return 1
	fi
	return 0
}

# forget_daemon PID: the test has reaped this daemon itself (bash would report its status again on exit).
forget_daemon() {
	local p keep=()
	for p in "${_daemon_pids[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	_daemon_pids=("${keep[@]}")
}

# stop_daemon PID: SIGTERM, wait for it to end, and check it exited cleanly.
stop_daemon() {
	kill -TERM "$1"
	wait_pid_gone "$1" 20 || fail "runnerd $1 did not stop on SIGTERM"
	forget_daemon "$1"
	_reap_daemon "$1" || fail "runnerd $1 did not exit cleanly"
}

# run_capture NAME COMMAND [args...]: runs COMMAND, stdout → $T/NAME.out, stderr → $T/NAME.err, exit status → $RC.
RC=
run_capture() {
	local name=$1
	shift
	set +e
	"$@" </dev/null >"$T/$name.out" 2>"$T/$name.err"
	RC=$?
	set -e
}

# run_ukrun NAME [ukrun args...]: run_capture of ukrun.
run_ukrun() {
	run_capture "$1" "$UKRUN" "${@:2}"
}

# wait_rc PID: wait for a background child of this shell; its exit status → $RC.
wait_rc() {
	set +e
	wait "$1"
	RC=$?
	set -e
}

# expect_rc NAME WANT: the last run_ukrun's exit status.
expect_rc() {
	if [[ $RC != "$2" ]]; then
		log "stdout of $1:"; head -c 2000 "$T/$1.out" >&2
		log "stderr of $1:"; cat "$T/$1.err" >&2
		fail "$1: exit status $RC, want $2"
	fi
}

# expect_out NAME TEXT: stdout is exactly TEXT (printf %s; give the trailing newline yourself).
expect_out() {
	printf '%s' "$2" >"$T/$1.want"
	expect_out_file "$1" "$T/$1.want"
}

# expect_out_file NAME FILE: stdout is byte-identical to FILE.
expect_out_file() {
	if ! cmp "$T/$1.out" "$2" >&2; then
		diff <(head -c 4000 "$2") <(head -c 4000 "$T/$1.out") | head -40 >&2 || true
		fail "$1: stdout differs from $2"
	fi
}

# expect_err_grep NAME REGEX: stderr matches an extended regex.
expect_err_grep() {
	grep -Eq -- "$2" "$T/$1.err" || { cat "$T/$1.err" >&2; fail "$1: stderr does not match /$2/"; }
}

# sql QUERY [DB]: one sqlite3 query against the daemon's database.
sql() {
	sqlite3 -bail -cmd '.timeout 5000' "${2:-$DB}" "$1"
}

# last_run_id [DB]: the newest run.
last_run_id() {
	sql 'SELECT max(id) FROM runs' "${1:-$DB}"
}

# expect_record ID STATE EXIT_CODE EXIT_SOURCE: the run's row, with all timings set.
expect_record() {
	local id=$1 got
	got=$(sql "SELECT state || '|' || ifnull(exit_code, 'NULL') || '|' || ifnull(exit_source, 'NULL') FROM runs WHERE id = $id")
	[[ $got == "$2|$3|$4" ]] || fail "run $id record: '$got', want '$2|$3|$4'"
	local nulls
	nulls=$(sql "SELECT count(*) FROM runs WHERE id = $id AND (created_at IS NULL OR started_at IS NULL OR ended_at IS NULL OR duration_ms IS NULL OR duration_ms < 0)")
	[[ $nulls == 0 ]] || fail "run $id: a timing (created_at/started_at/ended_at/duration_ms) is missing"
}

# expect_run NAME WANT_RC WANT_EXIT_SOURCE PLATFORM/DRIVER [ukrun args...]: one run through ukrun, its exit status,
# its complete `done` record and the platform/driver that ran it. The run's id → $RUN_ID.
RUN_ID=
expect_run() {
	local name=$1 want_rc=$2 want_src=$3 want_pd=$4
	shift 4
	run_ukrun "$name" "$@"
	expect_rc "$name" "$want_rc"
	RUN_ID=$(last_run_id)
	expect_record "$RUN_ID" 'done' "$want_rc" "$want_src"
	[[ $(sql "SELECT platform || '/' || driver FROM runs WHERE id = $RUN_ID") == "$want_pd" ]] ||
		fail "$name: not run by the ${want_pd#*/} driver"
}

# wait_run_id NAME: bounded wait for a run of the image named NAME to exist; prints the newest one's id.
wait_run_id() {
	local id=
	for _ in $(seq 150); do
		id=$(sql "SELECT max(id) FROM runs WHERE name = '$1'")
		[[ -n $id ]] && break
		sleep 0.1
	done
	[[ -n $id ]] || fail "the $1 run was never created"
	echo "$id"
}

# wait_state ID STATE SECONDS: bounded wait until the run reaches STATE (via the API, not timing).
wait_state() {
	local id=$1 want=$2 secs=$3 i st
	for ((i = 0; i < secs * 10; i++)); do
		st=$(curl -sS --unix-socket "$UKRUN_SOCKET" "http://runnerd/v1/runs/$id" 2>/dev/null | jget state)
		[[ $st == "$want" ]] && return 0
		sleep 0.1
	done
	fail "run $id did not reach state '$want' (last: '${st:-?}')"
}

# start_hanging_pair: a qemu guest (mb_hang) and a linuxu guest (lx_hang) through ukrun in the background, each
# --timeout 60, waited for (bounded) until both run and their "hanging" reached the clients (stdout in
# $T/qhang.out, $T/lhang.out). Sets HANG_QCLIENT HANG_LCLIENT (client pids) and HANG_QID HANG_LID (run ids).
start_hanging_pair() {
	"$UKRUN" --timeout 60 "$FX/mb_hang" </dev/null >"$T/qhang.out" 2>"$T/qhang.err" &
	HANG_QCLIENT=$!
	"$UKRUN" --timeout 60 "$FX/lx_hang" </dev/null >"$T/lhang.out" 2>"$T/lhang.err" &
	HANG_LCLIENT=$!
	HANG_QID=$(wait_run_id mb_hang)
	HANG_LID=$(wait_run_id lx_hang)
	wait_state "$HANG_QID" running 30
	wait_state "$HANG_LID" running 30
	# The guests print before hanging; once that reached the clients, they are really running.
	for _ in $(seq 150); do
		[[ $(cat "$T/qhang.out") == hanging && $(cat "$T/lhang.out") == hanging ]] && return 0
		sleep 0.1
	done
	fail "the hanging guests never said so (qemu: '$(cat "$T/qhang.out")', linuxu: '$(cat "$T/lhang.out")')"
}

# need_cargo: cargo from PATH or ~/.cargo/bin → $CARGO (the test skips without one), its directory first in PATH so
# that the rustc beside it is the one used.
need_cargo() {
	CARGO=$(command -v cargo || true)
	[[ -z $CARGO && -x ${HOME:-/nonexistent}/.cargo/bin/cargo ]] && CARGO=$HOME/.cargo/bin/cargo
	[[ -n $CARGO ]] || skip "cargo not found (in PATH or \$HOME/.cargo/bin)"
	PATH=$(dirname "$CARGO"):$PATH
	export PATH
}

# kvm_usable: /dev/kvm exists and can be opened read-write.
kvm_usable() {
	[[ -c /dev/kvm ]] && { : <>/dev/kvm; } 2>/dev/null
}

# The system python (a version manager's shim in PATH can cost a second per call).
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=$(command -v python3 || echo python3); fi

for tool in curl "$PYTHON" sqlite3 pgrep cmp; do
	command -v "$tool" >/dev/null || skip "$tool is not installed"
done
[[ -x $UKRUN && -x $RUNNERD ]] || fail "ukrun/runnerd not built in $UKRUN_BIN_DIR"
