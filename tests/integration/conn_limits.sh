#!/usr/bin/env bash
# Connections cannot lock clients out: idle, slow and unauthenticated peers are closed by the header and
# keep-alive timeouts, each listener has its own cap (503 over it), running out of file descriptors sheds new
# peers at once and recovers, and the soft RLIMIT_NOFILE is raised at start. Progress is never idleness: a
# trickling upload and a console follower of a silent run survive both timeouts, and an upload keeps a user
# daemon from its idle exit. Half-closed clients get their answer. Set-up refuses an unsafe socket directory
# and an unsafe or over-long token; the Bearer scheme is case-insensitive.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v prlimit >/dev/null || skip "prlimit (util-linux) is not installed"
CONNLIB=$(dirname "$0")/connlib.py
# py SCRIPT [args...]: python with connlib imported as c (sys.argv[1:] = args).
py() {
	local code=$1
	shift
	PYTHONPATH=$(dirname "$CONNLIB") "$PYTHON" -c "import connlib as c, socket, sys, time
$code" "$@"
}

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=ukrun-test-token-0123456789
printf '%s\n' "$TOKEN" >"$T/token"
chmod 600 "$T/token"

# ---- set-up refusals ----

# expect_refused NAME REGEX runnerd-args...: runnerd exits 1 at start and says why.
expect_refused() {
	local name=$1 re=$2
	shift 2
	run_capture "$name" timeout 20 "$RUNNERD" --data-dir "$T/refused-data" --idle-timeout 0 "$@"
	[[ $RC == 1 ]] || { cat "$T/$name.err" >&2; fail "$name: runnerd exited $RC, want 1"; }
	expect_err_grep "$name" "$re"
}

mkdir -m 0777 "$T/open"
chmod 0777 "$T/open"
expect_refused sockdir_world "socket directory '$T/open' \(owner [^,]+, uid $(id -u), mode 0777\)" --socket "$T/open/s.sock"
chmod 0770 "$T/open"
expect_refused sockdir_group "socket directory '$T/open' .*mode 0770" --socket "$T/open/s.sock"
[[ ! -e $T/open/s.sock ]] || fail "a socket was created in a directory others can write"
mkdir -m 0700 "$T/mine"
ln -s "$T/mine" "$T/link"
expect_refused sockdir_link "'$T/link' is a symbolic link" --socket "$T/link/s.sock"
if [[ $(id -u) == 0 ]] && id nobody >/dev/null 2>&1; then
	mkdir -m 0700 "$T/theirs"
	chown nobody "$T/theirs"
	expect_refused sockdir_owner "socket directory '$T/theirs' \(owner nobody, uid $(id -u nobody), mode 0700\)" \
		--socket "$T/theirs/s.sock"
fi

printf '%s\n' "$TOKEN" >"$T/token-open"
chmod 644 "$T/token-open"
expect_refused token_mode "Token file '$T/token-open' is accessible by group or others \(mode 0644\)" \
	--socket "$T/refused.sock" --listen "tcp://127.0.0.1:$PORT" --token-file "$T/token-open"
head -c 300 /dev/zero | tr '\0' t >"$T/token-long"
chmod 600 "$T/token-long"
expect_refused token_long "Token in '$T/token-long' is longer than 256 characters" \
	--socket "$T/refused.sock" --listen "tcp://127.0.0.1:$PORT" --token-file "$T/token-long"

# ---- the soft RLIMIT_NOFILE is raised to the hard limit ----
prlimit --nofile=64:4096 "$RUNNERD" --socket "$T/raise.sock" --data-dir "$T/raise-data" --idle-timeout 0 \
	--log "$T/raise.log" </dev/null >>"$T/raise.stdio.log" 2>&1 &
raise_pid=$!
adopt_daemon "$raise_pid"
for _ in $(seq 150); do healthy "$T/raise.sock" && break; sleep 0.1; done
healthy "$T/raise.sock" || fail "runnerd under prlimit did not start"
soft=$(awk '/^Max open files/ {print $4}' "/proc/$raise_pid/limits")
[[ $soft == 4096 ]] || fail "soft RLIMIT_NOFILE is $soft, want it raised to the hard limit 4096"
stop_daemon "$raise_pid"

# ---- timeouts, caps, auth: one daemon with small limits ----
# Cap 4: a following ukrun of a linuxu program holds two connections (its stdout and stderr streams), and the
# cancel below needs one more beside it.
start_daemon runnerd --header-timeout 1 --keepalive-timeout 1 --max-connections 4 \
	--listen "tcp://127.0.0.1:$PORT" --token-file "$T/token"
SOCK=$T/runnerd.sock

# The Bearer scheme is case-insensitive; the token must match exactly (no prefix, nothing appended).
bearer() {
	curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: $1" "http://127.0.0.1:$PORT/v1/version"
}
[[ $(bearer "Bearer $TOKEN") == 200 ]] || fail "Bearer token refused"
[[ $(bearer "bearer $TOKEN") == 200 ]] || fail "'bearer' (lower case) refused"
[[ $(bearer "BEARER  $TOKEN") == 200 ]] || fail "'BEARER' with two spaces refused"
[[ $(bearer "Bearer ${TOKEN}x") == 401 ]] || fail "a token with a byte appended was accepted"
[[ $(bearer "Bearer ${TOKEN%?}") == 401 ]] || fail "a token missing its last byte was accepted"
[[ $(bearer "Bearer $TOKEN$(head -c 5000 /dev/zero | tr '\0' x)") =~ ^4 ]] || fail "an over-long token was accepted"
[[ $(bearer "Basic $TOKEN") == 401 ]] || fail "another scheme was accepted"
[[ $(bearer "Bearer$TOKEN") == 401 ]] || fail "a scheme without a space was accepted"

# Idle TCP peers (no request, no token) fill the TCP listener's cap: the next one gets 503, the Unix socket is
# served all along, and the header timeout frees the TCP listener again.
py '
port, sock = int(sys.argv[1]), sys.argv[2]
idle = [c.tcp(port) for _ in range(4)]
time.sleep(0.3)  # let the daemon accept them (the next connect is then over the cap)
over = c.tcp(port)
data = c.read_until_eof(over)
if data is None: c.fail("the connection over the TCP cap was not closed")
st, _, body = c.parse(data)
if st != 503 or c.error_code(body) != "too_many_connections": c.fail("over the cap: %r" % data)
u = c.unix(sock)
st, _, _ = c.request(u, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
if st != 200: c.fail("Unix client not served while TCP is at its cap: %d" % st)
for s in idle:
    if c.read_until_eof(s) is None: c.fail("an idle TCP connection was never closed")
    s.close()  # the daemon half-closes first and counts a connection until the peer closes too
# ...and sees those closes on its next turn: wait (bounded) until a new client is served.
for _ in range(50):
    t = c.tcp(port)
    st, _, _ = c.request(t, b"GET /v1/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % sys.argv[3].encode())
    if st == 200: break
    t.close()
    time.sleep(0.1)
if st != 200: c.fail("TCP client not served after the idle ones were closed: %d" % st)
# keep-alive: after its answer an idle connection is closed
if c.read_until_eof(t) is None: c.fail("an idle keep-alive connection was never closed")
if c.read_until_eof(u) is None: c.fail("an idle keep-alive Unix connection was never closed")
' "$PORT" "$SOCK" "$TOKEN" || fail "TCP cap / header timeout"

# The same on the Unix socket, and a slow head (a byte every 0.2 s) is cut off at the header timeout with 408.
py '
sock = sys.argv[1]
idle = [c.unix(sock) for _ in range(4)]
time.sleep(0.3)
over = c.unix(sock)
data = c.read_until_eof(over)
if data is None or c.parse(data)[0] != 503: c.fail("over the Unix cap: %r" % data)
for s in idle:
    if c.read_until_eof(s) is None: c.fail("an idle Unix connection was never closed")
    s.close()  # the daemon half-closes first and counts a connection until the peer closes too
# ...and sees those closes on its next turn: wait (bounded) until a new connection is served again.
for _ in range(50):
    st, _, _ = c.request(c.unix(sock), b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if st == 200: break
    time.sleep(0.1)
else:
    c.fail("the Unix listener never served again after its idle connections were closed")
slow = c.unix(sock)
slow.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
for _ in range(100):
    if c.closed_now(slow, 0.2): break
    try: slow.sendall(b"a")
    except OSError: break
data = c.read_until_eof(slow)
if data is None: c.fail("a slow request head was never cut off")
st, _, body = c.parse(data)
if st != 408 or c.error_code(body) != "request_timeout": c.fail("slow head: %r" % data)
' "$SOCK" || fail "Unix cap / slow head"

# A client that half-closes after its request still gets the answer.
py '
s = c.unix(sys.argv[1])
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
s.shutdown(socket.SHUT_WR)
data = c.read_until_eof(s)
if data is None or c.parse(data)[0] != 200: c.fail("half-closed client: %r" % data)
' "$SOCK" || fail "half-close"

# An upload that trickles in over several keep-alive timeouts is not idle.
py '
s = c.unix(sys.argv[1])
(st, _, body), sha = c.put_trickled(s, sys.argv[2], 8, 0.4)
if st != 201: c.fail("trickled upload: %d %r" % (st, body))
' "$SOCK" "$FX/lx_hello" || fail "trickled upload"

# A console follower of a silent run outlives both timeouts: ukrun prints the console and exits 130 on cancel.
"$UKRUN" --timeout 60 "$FX/lx_hang" </dev/null >"$T/hang.out" 2>"$T/hang.err" &
hang_pid=$!
hang_id=$(wait_run_id lx_hang)
for _ in $(seq 300); do
	[[ $(cat "$T/hang.out") == hanging ]] && break
	sleep 0.1
done
[[ $(cat "$T/hang.out") == hanging ]] || fail "the lx_hang console did not reach ukrun"
sleep 3 # three keep-alive timeouts of silence
pid_alive "$hang_pid" || { cat "$T/hang.err" >&2; fail "ukrun following a silent run ended early"; }
run_ukrun cancel cancel "$hang_id"
expect_rc cancel 0
wait_rc "$hang_pid"
[[ $RC == 130 ]] || { cat "$T/hang.err" >&2; fail "the follower's ukrun exited $RC, want 130"; }
healthy || fail "runnerd unhealthy after the connection tests"

# ---- out of file descriptors: shed new peers at once, recover once the idle ones are gone ----
start_daemon fds --header-timeout 1 --keepalive-timeout 1 --max-connections 10000
fds_pid=$DAEMON_PID
open_fds=$(ls "/proc/$fds_pid/fd" | wc -l)
prlimit --pid "$fds_pid" --nofile=$((open_fds + 8)):$((open_fds + 8))
py '
sock = sys.argv[1]
held = []
for _ in range(60):
    held.append(c.unix(sock))
# every one is closed by the daemon: the extra ones at once (no descriptor for them), the others by the header timeout
for s in held:
    if c.read_until_eof(s) is None: c.fail("a connection was never closed while out of descriptors")
for _ in range(3):
    s = c.unix(sock)
    st, _, _ = c.request(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    if st != 200: c.fail("not served after the flood: %d" % st)
    s.close()
' "$T/fds.sock" || fail "file descriptor exhaustion"
grep -q "out of file descriptors" "$T/fds.log" || fail "no warning about running out of file descriptors"
(($(grep -c "out of file descriptors" "$T/fds.log") < 10)) || fail "the overload warning is not rate-limited"
healthy "$T/fds.sock" || fail "runnerd unhealthy after the descriptor flood"

# ---- user mode: an upload in flight keeps the daemon from its idle exit ----
# (The idle timeout leaves time for start_daemon's check and the upload's start on a loaded machine.)
start_daemon idle --idle-timeout 3 --keepalive-timeout 30 --header-timeout 30
idle_pid=$DAEMON_PID
py '
s = c.unix(sys.argv[1])
(st, _, body), sha = c.put_trickled(s, sys.argv[2], 12, 0.5)
if st != 201: c.fail("upload on an idle-exiting daemon: %d %r" % (st, body))
' "$T/idle.sock" "$FX/lx_exit" || fail "the daemon's idle exit cut an upload short"
wait_pid_gone "$idle_pid" 20 || fail "runnerd did not exit when idle after the upload"
forget_daemon "$idle_pid"
_reap_daemon "$idle_pid" || fail "the idle runnerd did not exit cleanly"
