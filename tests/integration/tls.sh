#!/usr/bin/env bash
# runnerd's TLS listener (--listen tls://HOST:PORT) with a CA and a server certificate made here with the openssl
# CLI: runnerd refuses to start without a usable certificate and key; ukrun runs a linuxu and a qemu guest through
# https with the CA (exit status and console bytes as over the Unix socket), fails with one TLS line against the
# wrong CA, needs the bearer token as over TCP, and cancels (`ukrun cancel`, Ctrl-C) over TLS. Plain HTTP on the
# TLS port and a stalled handshake are turned away without hurting the daemon; TLS 1.1 is refused; a client that
# half-closes after its request gets the answer; the per-listener connection cap holds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || skip "the openssl CLI is not installed (package openssl)"

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=ukrun-tls-token-0123456789
printf '%s\n' "$TOKEN" >"$T/token"
chmod 600 "$T/token"

# ---- a CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA ----
P=$T/pki
mkdir "$P"
ossl() { openssl "$@" 2>>"$P/openssl.log" || { cat "$P/openssl.log" >&2; fail "openssl $1 failed"; }; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.pem" -days 2 -subj /CN=ukrun-test-ca
ossl req -x509 -newkey rsa:2048 -nodes -keyout "$P/other-ca.key" -out "$P/other-ca.pem" -days 2 -subj /CN=other-ca
ossl req -newkey rsa:2048 -nodes -keyout "$P/srv.key" -out "$P/srv.csr" -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$P/ext"
ossl x509 -req -in "$P/srv.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial -out "$P/srv.pem" -days 2 \
	-extfile "$P/ext"
chmod 600 "$P"/*.key

# ---- set-up refusals: runnerd exits at start and says why ----

# expect_refused NAME RC REGEX runnerd-args...
expect_refused() {
	local name=$1 want=$2 re=$3
	shift 3
	run_capture "$name" timeout 20 "$RUNNERD" --socket "$T/refused.sock" --data-dir "$T/refused-data" \
		--idle-timeout 0 --token-file "$T/token" "$@"
	[[ $RC == "$want" ]] || { cat "$T/$name.err" >&2; fail "$name: runnerd exited $RC, want $want"; }
	expect_err_grep "$name" "$re"
	[[ $(wc -l <"$T/$name.err") == 1 ]] || { cat "$T/$name.err" >&2; fail "$name: more than one line on stderr"; }
}
L=(--listen "tls://127.0.0.1:$PORT")
expect_refused no_cert 2 'tls://... needs --tls-cert FILE and --tls-key FILE' "${L[@]}" --tls-key "$P/srv.key"
expect_refused no_key 2 'needs --tls-cert FILE and --tls-key FILE' "${L[@]}" --tls-cert "$P/srv.pem"
expect_refused cert_missing 1 "Cannot read TLS certificate '$P/nope.pem': No such file or directory" \
	"${L[@]}" --tls-cert "$P/nope.pem" --tls-key "$P/srv.key"
if [[ $(id -u) != 0 ]]; then # root reads a mode-0000 file anyway
	cp "$P/srv.key" "$P/locked.key"
	chmod 000 "$P/locked.key"
	expect_refused key_unreadable 1 "Cannot read TLS key '$P/locked.key': Permission denied" \
		"${L[@]}" --tls-cert "$P/srv.pem" --tls-key "$P/locked.key"
fi
expect_refused cert_not_pem 1 "Cannot load TLS certificate '$P/ext'" "${L[@]}" --tls-cert "$P/ext" --tls-key "$P/srv.key"
expect_refused key_not_pem 1 "Cannot load TLS key '$P/ext'" "${L[@]}" --tls-cert "$P/srv.pem" --tls-key "$P/ext"
expect_refused key_mismatch 1 "TLS key '$P/other-ca.key' does not match the certificate '$P/srv.pem'" \
	"${L[@]}" --tls-cert "$P/srv.pem" --tls-key "$P/other-ca.key"
expect_refused cert_without_tls 2 '--tls-cert and --tls-key need --listen tls://HOST:PORT' \
	--listen "tcp://127.0.0.1:$PORT" --tls-cert "$P/srv.pem" --tls-key "$P/srv.key"
[[ ! -e $T/refused.sock ]] || fail "a refused runnerd left its socket behind"

# ---- the TLS daemon (certificate and key from runnerd.conf, as the keys of the same names) ----
cat >"$T/runnerd.conf" <<EOF
listen = tls://127.0.0.1:$PORT
token-file = $T/token
tls-cert = $P/srv.pem
tls-key = $P/srv.key
EOF
start_daemon runnerd --config "$T/runnerd.conf" --header-timeout 2
grep -q "listening on tls://127.0.0.1:$PORT" "$T/runnerd.log" || fail "runnerd does not log its TLS listener"
URL=https://127.0.0.1:$PORT

# curl_tls NAME [curl args...]: an https request to the daemon; the status → $HTTP_STATUS, body in $T/NAME.body.
curl_tls() {
	local name=$1
	shift
	HTTP_STATUS=$(curl -sS -o "$T/$name.body" -w '%{http_code}' --max-time 20 "$@") || HTTP_STATUS=curl-failed
}

curl_tls health --cacert "$P/ca.pem" -H "Authorization: Bearer $TOKEN" "$URL/healthz"
[[ $HTTP_STATUS == 200 && $(jget status <"$T/health.body") == ok ]] || fail "GET /healthz over TLS: $HTTP_STATUS"
# The token is required on TLS as on TCP.
curl_tls notoken --cacert "$P/ca.pem" "$URL/v1/runs"
[[ $HTTP_STATUS == 401 && $(jget error.code <"$T/notoken.body") == unauthorized ]] ||
	fail "a TLS request without the token: $HTTP_STATUS $(cat "$T/notoken.body"), want 401 unauthorized"
curl_tls badtoken --cacert "$P/ca.pem" -H "Authorization: Bearer ${TOKEN}x" "$URL/v1/runs"
[[ $HTTP_STATUS == 401 ]] || fail "a TLS request with a wrong token: $HTTP_STATUS, want 401"
# TLS 1.2 is served, TLS 1.1 is not.
curl_tls tls12 --cacert "$P/ca.pem" --tlsv1.2 --tls-max 1.2 -H "Authorization: Bearer $TOKEN" "$URL/healthz"
[[ $HTTP_STATUS == 200 ]] || fail "TLS 1.2 refused: $HTTP_STATUS"
if curl -sS -o /dev/null --max-time 20 --cacert "$P/ca.pem" --tlsv1.1 --tls-max 1.1 "$URL/healthz" 2>"$T/tls11.err"; then
	fail "TLS 1.1 was accepted"
fi

# Plain HTTP on the TLS port gets a plain 400 that says so, and the connection closes.
curl_tls plain -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/healthz"
[[ $HTTP_STATUS == 400 && $(jget error.code <"$T/plain.body") == tls_required ]] ||
	fail "plain HTTP on the TLS port: $HTTP_STATUS $(cat "$T/plain.body"), want 400 tls_required"
# A peer that starts a handshake and stalls is closed by the header timeout (2 s here), as a slow plain peer is.
"$PYTHON" - "$PORT" <<'EOF' || fail "a stalled TLS handshake was not closed"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\x16\x03\x01")  # the start of a handshake record, never finished
s.settimeout(30)            # bound only: the daemon closes after its header timeout
sys.exit(0 if s.recv(100) == b"" else 1)
EOF
healthy || fail "runnerd stopped answering on its Unix socket"
# halfclose PATH OUT [MARK]: GET PATH over TLS, then shutdown(SHUT_WR) of the TCP connection; the whole answer
# (read until the daemon closes) → OUT; MARK is created once the first bytes of the answer are in. (ssl.SSLObject
# over memory BIOs: Python's SSLSocket cannot half-close.)
cat >"$T/halfclose.py" <<'EOF'
import socket, ssl, sys
port, ca, token, path, out_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
mark = sys.argv[6] if len(sys.argv) > 6 else None
ctx = ssl.create_default_context(cafile=ca)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(60)
def flush():
    data = out.read()
    if data:
        s.sendall(data)
def recv():
    data = s.recv(65536)
    if data:
        inc.write(data)
    else:
        inc.write_eof()
    return data
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        if not recv():
            sys.exit("closed during the handshake")
flush()
tls.write(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % (path, token)).encode())
flush()
s.shutdown(socket.SHUT_WR)
answer = b""
while True:
    try:
        chunk = tls.read(65536)
        if not chunk:
            break
        answer += chunk
        if mark:
            open(mark, "w").close()
            mark = None
    except ssl.SSLWantReadError:
        if not recv():
            break
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        break
open(out_path, "wb").write(answer)
EOF
halfclose() {
	"$PYTHON" "$T/halfclose.py" "$PORT" "$P/ca.pem" "$TOKEN" "$@"
}
halfclose /v1/version "$T/hc_version.out" || fail "half-closed TLS client failed"
grep -q '^HTTP/1.1 200' "$T/hc_version.out" || fail "a half-closed TLS client got no answer: $(head -c 200 "$T/hc_version.out")"

export UKRUN_URL=$URL UKRUN_TOKEN=$TOKEN

# ---- guests through https: exit status and console bytes as over the Unix socket ----
UKRUN_CA_FILE=$P/ca.pem expect_run lx_hello 0 process linuxu/linuxu "$FX/lx_hello"
expect_out lx_hello $'Hello from lx_hello\n'
expect_run lx_exit_cacert 3 process linuxu/linuxu --cacert "$P/ca.pem" "$FX/lx_exit" 3
UKRUN_URL= UKRUN_SOCKET=$T/runnerd.sock run_ukrun mb_unix -q "$FX/mb_exit7"
expect_rc mb_unix 7
UKRUN_CA_FILE=$P/ca.pem expect_run mb_tls 7 debug-exit qemu/qemu -q "$FX/mb_exit7"
expect_out_file mb_tls "$T/mb_unix.out"
[[ -s $T/mb_tls.out ]] || fail "the qemu guest printed nothing"
# A console larger than a TLS record (16 KiB) arrives whole.
UKRUN_URL= run_ukrun flood_unix -q "$FX/lx_flood"
UKRUN_CA_FILE=$P/ca.pem run_ukrun flood_tls -q "$FX/lx_flood"
[[ $RC == 0 ]] || expect_rc flood_tls 0
expect_out_file flood_tls "$T/flood_unix.out"
(($(stat -c %s "$T/flood_tls.out") > 65536)) || fail "lx_flood's console is too small to cross many TLS records"
# Subcommands too.
UKRUN_CA_FILE=$P/ca.pem run_ukrun ps ps -n 1
expect_rc ps 0
grep -q lx_flood "$T/ps.out" || fail "ukrun ps over TLS does not list the last run"

# ---- certificate errors: one line, exit 125 ----
UKRUN_CA_FILE=$P/other-ca.pem run_ukrun wrong_ca -q "$FX/lx_hello"
expect_rc wrong_ca 125
expect_err_grep wrong_ca '^ukrun: .*TLS: .*certificate'
[[ $(wc -l <"$T/wrong_ca.err") == 1 ]] || { cat "$T/wrong_ca.err" >&2; fail "wrong CA: more than one line"; }
UKRUN_CA_FILE=$P/other-ca.pem run_ukrun wrong_ca_ps ps
expect_rc wrong_ca_ps 125
expect_err_grep wrong_ca_ps 'TLS: .*certificate'
UKRUN_CA_FILE=$P/missing.pem run_ukrun ca_missing -q "$FX/lx_hello"
expect_rc ca_missing 125
expect_err_grep ca_missing "CA file '$P/missing.pem': No such file or directory"
# Without the token ukrun says the daemon wants one.
UKRUN_TOKEN= UKRUN_CA_FILE=$P/ca.pem run_ukrun no_token ps
expect_rc no_token 1
expect_err_grep no_token 'bearer token is required'
healthy || fail "runnerd stopped answering after the refused clients"

export UKRUN_CA_FILE=$P/ca.pem

# ---- cancel over TLS: `ukrun cancel` ends the followed run, its client exits 130 ----
"$UKRUN" --timeout 60 "$FX/mb_hang" </dev/null >"$T/hang.out" 2>"$T/hang.err" &
hang_pid=$!
hang_id=$(wait_run_id mb_hang)
for _ in $(seq 300); do
	[[ $(cat "$T/hang.out") == hanging ]] && break
	sleep 0.1
done
[[ $(cat "$T/hang.out") == hanging ]] || fail "the hanging guest's console never reached the TLS client"
# A console follower that half-closed after its request keeps streaming until the run ends.
halfclose "/v1/runs/$hang_id/console?follow=1" "$T/hc_follow.out" "$T/hc_follow.mark" &
hc_pid=$!
for _ in $(seq 300); do
	[[ -e $T/hc_follow.mark ]] && break
	sleep 0.1
done
[[ -e $T/hc_follow.mark ]] || fail "the half-closed follower got nothing"
run_ukrun cancel cancel "$hang_id"
expect_rc cancel 0
wait_rc "$hc_pid"
[[ $RC == 0 ]] || fail "the half-closed follower failed"
grep -q hanging "$T/hc_follow.out" || fail "the half-closed follower did not get the console"
[[ $(tail -c 5 "$T/hc_follow.out" | od -An -c | tr -d ' ') == '0\r\n\r\n' ]] ||
	fail "the half-closed follower's stream did not end with the last chunk: $(tail -c 40 "$T/hc_follow.out" | od -c)"
wait_rc "$hang_pid"
[[ $RC == 130 ]] || { cat "$T/hang.err" >&2; fail "the cancelled TLS client exited $RC, want 130"; }
[[ $(sql "SELECT state || '|' || exit_code FROM runs WHERE id = $hang_id") == 'cancelled|130' ]] ||
	fail "the run cancelled over TLS is not cancelled|130"

# ---- Ctrl-C over TLS: SIGINT to the client cancels the run ----
"$UKRUN" --timeout 60 "$FX/lx_hang" </dev/null >"$T/int.out" 2>"$T/int.err" &
int_pid=$!
int_id=$(wait_run_id lx_hang)
for _ in $(seq 300); do
	[[ $(cat "$T/int.out") == hanging ]] && break
	sleep 0.1
done
[[ $(cat "$T/int.out") == hanging ]] || fail "lx_hang's console never reached the TLS client"
kill -INT "$int_pid"
wait_rc "$int_pid"
[[ $RC == 130 ]] || { cat "$T/int.err" >&2; fail "the interrupted TLS client exited $RC, want 130"; }
wait_state "$int_id" cancelled 30
[[ -z $(pgrep -f -- "$T/data/runs/" || true) ]] || fail "a guest is still running after the cancels"

healthy || fail "runnerd is not healthy at the end"

# ---- the per-listener connection cap holds for TLS: over it a peer is closed before its handshake ----
PORT2=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_daemon capped --max-connections 2 --listen "tls://127.0.0.1:$PORT2" --token-file "$T/token" \
	--tls-cert "$P/srv.pem" --tls-key "$P/srv.key"
"$PYTHON" - "$PORT2" "$P/ca.pem" "$TOKEN" "$T/capped.sock" <<'EOF' || fail "TLS connection cap"
import socket, ssl, sys, time
port, ca, token, sock = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
def tls():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1")
    return s
def version(s):
    s.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n")
    return s.recv(12)
idle = [tls(), tls()]
for s in idle:
    if version(s) != b"HTTP/1.1 200": sys.exit("a TLS client under the cap was not served")
try:
    over = tls()
    sys.exit("a TLS handshake over the cap succeeded")
except (ssl.SSLError, ConnectionError, OSError):
    pass
u = socket.socket(socket.AF_UNIX)
u.connect(sock)
u.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
if u.recv(12) != b"HTTP/1.1 200": sys.exit("the Unix socket was not served while TLS was at its cap")
for s in idle:
    s.close()
for _ in range(50):  # the daemon sees the closes on its next turn: bounded wait until a new peer is served
    try:
        if version(tls()) == b"HTTP/1.1 200": sys.exit(0)
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    time.sleep(0.1)
sys.exit("TLS was not served again after the idle connections closed")
EOF
grep -q "TLS listener: too many connections" "$T/capped.log" || fail "the TLS cap was not logged"
log "ok"
