#!/usr/bin/env bash
# What a plain program on linuxu sees of its caller, as natively: its stdout on ukrun's stdout and its stderr on
# ukrun's stderr, both stored apart (logs --stdout/--stderr, ?stream=) and together (the console); ukrun's stdin
# forwarded when it is not a terminal or /dev/null, EOF included; the caller's working directory and package
# directory (CARGO_MANIFEST_DIR) read-only at the same path, --bind and --no-bind, runnerd's own data and socket
# hidden even under a bind, and binds refused over TCP unless runnerd.conf says remote-binds = true. On qemu:
# one console (stdout), no stderr, no stdin.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || skip "bubblewrap (bwrap) is not installed"
# mktemp made $T 0700; a root daemon's sandboxes run as uids of their own, which must be able to reach it.
chmod 755 "$T"
start_daemon runnerd

# ---- 1. streams ----

expect_run split 0 process linuxu/linuxu "$FX/lx_stderr"
expect_out split $'out1\nout2\n'
[[ $(cat "$T/split.err") == err1 ]] || fail "split: ukrun's stderr is '$(cat "$T/split.err")', want err1"
id=$RUN_ID
[[ $(sql "SELECT value FROM run_facts WHERE run_id = $id AND key = 'streams'") == stdout,stderr ]] ||
	fail "split: the run has no streams fact"

run_ukrun logs_out logs --stdout "$id"
expect_rc logs_out 0
expect_out logs_out $'out1\nout2\n'
run_ukrun logs_err logs --stderr "$id"
expect_rc logs_err 0
expect_out logs_err $'err1\n'
# Both (the default, and --stdout --stderr): every byte of both streams, each stream in its order.
run_ukrun logs_both logs "$id"
expect_rc logs_both 0
[[ $(sort "$T/logs_both.out" | tr '\n' ' ') == 'err1 out1 out2 ' ]] || fail "logs: console '$(cat "$T/logs_both.out")'"
[[ $(grep -v err1 "$T/logs_both.out" | tr '\n' ' ') == 'out1 out2 ' ]] || fail "logs: stdout out of order"
run_ukrun logs_both2 logs --stdout --stderr "$id"
cmp "$T/logs_both.out" "$T/logs_both2.out" || fail "logs --stdout --stderr differs from logs"
run_ukrun logs_json logs --json --stderr "$id"
[[ $(jget console <"$T/logs_json.out") == err1 && $(jget stream <"$T/logs_json.out") == stderr ]] ||
	fail "logs --json --stderr: $(cat "$T/logs_json.out")"

# The API: ?stream=stdout|stderr|both; anything else is a 400.
api GET "/v1/runs/$id/console?stream=stderr"
[[ $HTTP_STATUS == 200 && $API_BODY == $'err1\n' ]] || fail "stream=stderr: $HTTP_STATUS '$API_BODY'"
api GET "/v1/runs/$id/console?stream=stdout"
[[ $HTTP_STATUS == 200 && $API_BODY == $'out1\nout2\n' ]] || fail "stream=stdout: $HTTP_STATUS '$API_BODY'"
api GET "/v1/runs/$id/console?stream=both"
[[ $HTTP_STATUS == 200 && ${#API_BODY} == 15 ]] || fail "stream=both: $HTTP_STATUS '$API_BODY'"
api GET "/v1/runs/$id/console?stream=stdin"
[[ $HTTP_STATUS == 400 ]] || fail "stream=stdin: HTTP $HTTP_STATUS, want 400"

# libtest output still reaches the test parser (it reads the console, both streams).
run_ukrun libtest "$FX/lx_libtest"
expect_rc libtest 101
[[ $(sql "SELECT count(*) FROM test_cases WHERE run_id = $(last_run_id)") == 3 ]] || fail "libtest: test cases not parsed"

# A follower of a running run's stderr (logs -f --stderr) gets it live and ends with the run.
"$UKRUN" --timeout 60 "$FX/lx_sleep" 2 </dev/null >"$T/sl.out" 2>"$T/sl.err" &
sl=$!
slid=$(wait_run_id lx_sleep)
run_ukrun follow_err logs -f --stderr "$slid"
expect_rc follow_err 0
wait_rc "$sl"
[[ $RC == 0 ]] || fail "lx_sleep: exit $RC"
run_ukrun follow_out logs -f --stdout "$slid"
expect_out follow_out $'sleeping\nawake\n'

# ---- 2. stdin ----

printf 'hi\n' | "$UKRUN" "$FX/lx_cat" >"$T/cat.out" 2>"$T/cat.err" || fail "cat: exit $?: $(cat "$T/cat.err")"
expect_out cat $'hi\n'
[[ $(cat "$T/cat.err") == 'eof after 3 bytes' ]] || fail "cat: stderr '$(cat "$T/cat.err")'"
[[ $(sql "SELECT value FROM run_facts WHERE run_id = $(last_run_id) AND key = 'stdin'") == pipe ]] ||
	fail "cat: the run has no stdin fact"

# Several MiB (more than runnerd queues at once, in many requests), byte-exact, from a file.
head -c 3000000 /dev/urandom >"$T/big.in"
"$UKRUN" "$FX/lx_cat" <"$T/big.in" >"$T/big.out" 2>"$T/big.err" || fail "big: exit $?: $(cat "$T/big.err")"
cmp "$T/big.in" "$T/big.out" || fail "big: stdin did not arrive byte-exact"
[[ $(cat "$T/big.err") == 'eof after 3000000 bytes' ]] || fail "big: stderr '$(cat "$T/big.err")'"

# /dev/null: nothing forwarded (the program reads EOF from runnerd's /dev/null, as before).
run_ukrun devnull "$FX/lx_cat"
expect_rc devnull 0
[[ $(cat "$T/devnull.err") == 'eof after 0 bytes' ]] || fail "devnull: stderr '$(cat "$T/devnull.err")'"
[[ -z $(sql "SELECT value FROM run_facts WHERE run_id = $(last_run_id) AND key = 'stdin'") ]] ||
	fail "devnull: stdin forwarded from /dev/null"

# A program that never reads an endless stdin still ends, and so does ukrun.
set +e
yes | timeout 60 "$UKRUN" "$FX/lx_hello" >"$T/yes.out" 2>"$T/yes.err"
st=("${PIPESTATUS[@]}")
set -e
[[ ${st[1]} == 0 ]] || fail "yes | ukrun lx_hello: exit ${st[1]}: $(cat "$T/yes.err")"
expect_out yes $'Hello from lx_hello\n'

# The API: stdin of a run that takes none is a 409.
api POST "/v1/runs/$(last_run_id)/stdin" --data-binary x
[[ $HTTP_STATUS == 409 ]] || fail "stdin of an ended run: HTTP $HTTP_STATUS, want 409"

# ---- 3. files ----

mkdir -p "$T/pkg/fixtures" "$T/other"
echo 'fixture line' >"$T/pkg/fixtures/data.txt"
echo 'other line' >"$T/other/o.txt"
chmod -R go+rX "$T/pkg" "$T/other"

# The working directory, shown read-only at its own path; the program starts there.
(cd "$T/pkg" && "$UKRUN" "$FX/lx_files" fixtures/data.txt "$T/other/o.txt" -w new.txt </dev/null \
	>"$T/cwd.out" 2>"$T/cwd.err") || fail "cwd: exit $?: $(cat "$T/cwd.err")"
expect_out cwd "cwd=$T/pkg
fixtures/data.txt: fixture line
$T/other/o.txt: error ENOENT
new.txt: error EROFS
"
[[ ! -e $T/pkg/new.txt ]] || fail "cwd: the program wrote into the caller's directory"

# CARGO_MANIFEST_DIR is the package directory (cargo runs tests there); --bind adds directories.
(cd "$T/pkg/fixtures" && CARGO_MANIFEST_DIR=$T/pkg "$UKRUN" --bind ../../other "$FX/lx_files" data.txt \
	"$T/pkg/fixtures/data.txt" "$T/other/o.txt" </dev/null >"$T/manifest.out" 2>"$T/manifest.err") ||
	fail "manifest: exit $?: $(cat "$T/manifest.err")"
expect_out manifest "cwd=$T/pkg/fixtures
data.txt: fixture line
$T/pkg/fixtures/data.txt: fixture line
$T/other/o.txt: other line
"

# --no-bind: none of the caller's files; the program starts in its own /tmp.
(cd "$T/pkg" && "$UKRUN" --no-bind "$FX/lx_files" fixtures/data.txt </dev/null >"$T/nobind.out" 2>"$T/nobind.err") ||
	fail "nobind: exit $?"
expect_out nobind $'cwd=/tmp\nfixtures/data.txt: error ENOENT\n'

# runnerd's data directory and socket stay hidden under a bind that holds them ($T holds both).
(cd "$T" && "$UKRUN" "$FX/lx_files" pkg/fixtures/data.txt data/runnerd.db runnerd.sock </dev/null \
	>"$T/hidden.out" 2>"$T/hidden.err") || fail "hidden: exit $?"
grep -qx 'pkg/fixtures/data.txt: fixture line' "$T/hidden.out" || fail "hidden: $(cat "$T/hidden.out")"
grep -qx 'data/runnerd.db: error ENOENT' "$T/hidden.out" || fail "hidden: the database is visible: $(cat "$T/hidden.out")"
grep -q '^runnerd.sock: error' "$T/hidden.out" || fail "hidden: the socket is visible: $(cat "$T/hidden.out")"
(cd "$T" && "$UKRUN" /bin/sh -c "test -S $T/runnerd.sock && echo socket; ls $T/data | wc -l" </dev/null \
	>"$T/hidden2.out" 2>&1) || true
[[ $(cat "$T/hidden2.out") == 0 ]] || fail "hidden: inside the sandbox: $(cat "$T/hidden2.out")"

# Binds runnerd refuses: its own data, a path that is no directory (usage errors, 2).
run_ukrun bind_data --bind "$T/data" "$FX/lx_hello"
expect_rc bind_data 2
expect_err_grep bind_data "--bind $T/data: inside runnerd's own files"
run_ukrun bind_none --bind "$T/nonexistent" "$FX/lx_hello"
expect_rc bind_none 2
expect_err_grep bind_none "--bind $T/nonexistent: not a directory"

# A directory a per-run uid cannot reach is left out with a note (root daemons only).
if [[ $(id -u) == 0 ]] && [[ $(sql "SELECT value FROM run_facts WHERE key = 'limits' ORDER BY run_id DESC LIMIT 1") == uid ]]; then
	mkdir -m 700 "$T/private"
	(cd "$T/private" && "$UKRUN" "$FX/lx_files" </dev/null >"$T/private.out" 2>"$T/private.err") || fail "private: exit $?"
	expect_out private $'cwd=/tmp\n'
	expect_err_grep private "not shown to the program: $T/private"
fi

# ---- 4. qemu: one console, no stderr, no stdin ----

if command -v qemu-system-x86_64 >/dev/null; then
	printf 'ignored\n' | "$UKRUN" "$FX/mb_hello" >"$T/q.out" 2>"$T/q.err" || fail "qemu: exit $?: $(cat "$T/q.err")"
	expect_out q $'Hello from mb_hello\n'
	qid=$(last_run_id)
	[[ -z $(sql "SELECT group_concat(key) FROM run_facts WHERE run_id = $qid AND key IN ('stdin', 'streams')") ]] ||
		fail "qemu: stream facts on a qemu run"
	run_ukrun q_out logs --stdout "$qid"
	expect_out q_out $'Hello from mb_hello\n'
	run_ukrun q_err logs --stderr "$qid"
	expect_rc q_err 0
	expect_out q_err ''
	run_ukrun q_all logs "$qid"
	expect_out q_all $'Hello from mb_hello\n'
else
	log "qemu-system-x86_64 not installed: the qemu part is skipped"
fi

# ---- 5. over TCP: binds are refused unless runnerd.conf allows them ----

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'ukrun-test-token-0123456789\n' >"$T/token"
chmod 600 "$T/token"
start_daemon tcp --listen "tcp://127.0.0.1:$PORT" --token-file "$T/token"
tcpd=$DAEMON_PID
export UKRUN_TOKEN=ukrun-test-token-0123456789
(cd "$T/pkg" && UKRUN_URL=http://127.0.0.1:$PORT "$UKRUN" --bind "$T/other" "$FX/lx_hello" </dev/null \
	>"$T/tcp_bind.out" 2>"$T/tcp_bind.err") && fail "tcp: --bind accepted over TCP" || RC=$?
[[ $RC == 2 ]] || fail "tcp_bind: exit $RC, want 2: $(cat "$T/tcp_bind.err")"
expect_err_grep tcp_bind '^ukrun: --bind: .*remote-binds'
# No default bind over TCP: the run goes on in the sandbox's /tmp.
(cd "$T/pkg" && UKRUN_URL=http://127.0.0.1:$PORT "$UKRUN" "$FX/lx_files" fixtures/data.txt </dev/null \
	>"$T/tcp.out" 2>"$T/tcp.err") || fail "tcp: exit $?: $(cat "$T/tcp.err")"
expect_out tcp $'cwd=/tmp\nfixtures/data.txt: error ENOENT\n'
stop_daemon "$tcpd"

printf 'remote-binds = true\n' >"$T/runnerd.conf"
start_daemon tcp2 --listen "tcp://127.0.0.1:$PORT" --token-file "$T/token" --config "$T/runnerd.conf"
(cd "$T/pkg" && UKRUN_URL=http://127.0.0.1:$PORT "$UKRUN" --bind "$T/other" "$FX/lx_files" "$T/other/o.txt" \
	</dev/null >"$T/tcp_ok.out" 2>"$T/tcp_ok.err") || fail "tcp_ok: exit $?: $(cat "$T/tcp_ok.err")"
expect_out tcp_ok "cwd=/tmp
$T/other/o.txt: other line
"
log "ok"
