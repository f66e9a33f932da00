#!/usr/bin/env bash
# The HTTP API refuses bad input with the right status and a JSON error object, stores nothing it should not,
# and the daemon survives garbage; ukrun reports unrunnable files and usage errors with its documented codes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd

# expect_error STATUS CODE: the last api call failed with STATUS and {"error":{"code":CODE,"message":...}}.
expect_error() {
	[[ $HTTP_STATUS == "$1" ]] || fail "status $HTTP_STATUS, want $1 (body: $API_BODY)"
	[[ $(jget error.code <<<"$API_BODY") == "$2" ]] || fail "error code '$(jget error.code <<<"$API_BODY")', want '$2' (body: $API_BODY)"
	[[ -n $(jget error.message <<<"$API_BODY") ]] || fail "error without a message: $API_BODY"
	healthy || fail "runnerd unhealthy after a $1"
}

zero=$(printf '0%.0s' {1..64})
printf 'just some text\n' >"$T/text"
text_sha=$(sha256sum "$T/text" | cut -d' ' -f1)

# PUT with a digest that does not match the body: refused, and neither digest is stored.
api PUT "/v1/images/$zero" --data-binary "@$T/text" -H 'Content-Type: application/octet-stream'
expect_error 400 digest_mismatch
api HEAD "/v1/images/$zero" -I
[[ $HTTP_STATUS == 404 ]] || fail "HEAD after a mismatched PUT: $HTTP_STATUS, want 404"
api HEAD "/v1/images/$text_sha" -I
[[ $HTTP_STATUS == 404 ]] || fail "the mismatched body was stored under its real digest"
api GET /v1/images
[[ $HTTP_STATUS == 200 && $(jget images <<<"$API_BODY") == "[]" ]] || fail "image list not empty: $API_BODY"
[[ $(sql 'SELECT count(*) FROM images') == 0 ]] || fail "an image row exists after a mismatched PUT"
# no stray file (complete or temporary) is kept in the image store
if [[ -d $T/data/images ]] && [[ -n $(find "$T/data/images" -type f) ]]; then
	find "$T/data/images" -type f >&2
	fail "files left in the image store after a mismatched PUT"
fi

# The route table: a known path with another method is 405 naming the methods it takes; a
# path no route has (a run id with a leading zero, a trailing segment) is 404.
api DELETE /v1/runs/1
expect_error 405 method_not_allowed
[[ $(jget error.message <<<"$API_BODY") == "use GET on /v1/runs/{id}" ]] || fail "405 message: $API_BODY"
api PATCH /v1/runs
expect_error 405 method_not_allowed
[[ $(jget error.message <<<"$API_BODY") == "use GET, POST on /v1/runs" ]] || fail "405 message: $API_BODY"
api POST "/v1/images/$zero"
expect_error 405 method_not_allowed
api GET /v1/runs/01
expect_error 404 not_found
api GET /v1/runs/1/console/more
expect_error 404 not_found
api GET /v1/runs/99999
expect_error 404 run_not_found

# A digest that is not a digest.
api HEAD /v1/images/nothex -I
[[ $HTTP_STATUS == 400 ]] || fail "HEAD of a malformed digest: $HTTP_STATUS, want 400"

# Runs: malformed JSON, an unknown field, a wrong type, an unknown image.
api POST /v1/runs -H 'Content-Type: application/json' --data-binary '{"image": '
expect_error 400 bad_request
api POST /v1/runs -H 'Content-Type: application/json' --data-binary "{\"image\":\"$text_sha\",\"bogus\":1}"
expect_error 400 bad_request
grep -q bogus <<<"$API_BODY" || fail "the unknown-field error does not name the field: $API_BODY"
api POST /v1/runs -H 'Content-Type: application/json' --data-binary "{\"image\":\"$text_sha\",\"args\":\"notalist\"}"
expect_error 400 bad_request
# env: names are identifiers (and '-' after the first character: cargo's CARGO_BIN_EXE_my-bin), values strings
# without NUL, bounded.
for bad in '{"1A":"x"}' '{"-A":"x"}' '{"A=B":"x"}' '{"A.B":"x"}' '{"A":1}' '{"A":"x\u0000y"}' '["A=1"]' "{\"A\":\"$(head -c 5000 /dev/zero | tr '\0' x)\"}"; do
	api POST /v1/runs -H 'Content-Type: application/json' --data-binary "{\"image\":\"$text_sha\",\"env\":$bad}"
	expect_error 400 bad_request
	grep -Eq "env|NUL" <<<"$API_BODY" || fail "the env error does not name env: $API_BODY"
done
api POST /v1/runs -H 'Content-Type: application/json' --data-binary '[1,2,3]'
expect_error 400 bad_request
api POST /v1/runs -H 'Content-Type: application/json' --data-binary "{\"image\":\"$zero\"}"
expect_error 404 image_not_found

# A stored image that is not runnable: 422, and no run is created.
api PUT "/v1/images/$text_sha" --data-binary "@$T/text" -H 'Content-Type: application/octet-stream'
[[ $HTTP_STATUS == 201 ]] || fail "PUT of a text file: $HTTP_STATUS, want 201 ($API_BODY)"
api PUT "/v1/images/$text_sha" --data-binary "@$T/text" -H 'Content-Type: application/octet-stream'
[[ $HTTP_STATUS == 200 ]] || fail "second PUT of the same bytes: $HTTP_STATUS, want 200 ($API_BODY)"
api POST /v1/runs -H 'Content-Type: application/json' --data-binary "{\"image\":\"$text_sha\"}"
expect_error 422 image_not_runnable
[[ $(sql 'SELECT count(*) FROM runs') == 0 ]] || fail "a run row exists for a refused run"

api GET /v1/runs/999999
expect_error 404 run_not_found
api GET /v1/runs/999999/console
[[ $HTTP_STATUS == 404 ]] || fail "console of a missing run: $HTTP_STATUS, want 404"
api POST /v1/runs/999999/cancel
[[ $HTTP_STATUS == 404 ]] || fail "cancel of a missing run: $HTTP_STATUS, want 404"
api GET /v1/nowhere
[[ $HTTP_STATUS == 404 ]] || fail "unknown path: $HTTP_STATUS, want 404"

# A 2 MiB JSON body is over the request limit.
{
	printf '{"image":"%s","labels":{"pad":"' "$text_sha"
	head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' x
	printf '"}}'
} >"$T/big.json"
api POST /v1/runs -H 'Content-Type: application/json' --data-binary "@$T/big.json"
expect_error 413 too_large

# Garbage on the socket: a 400 (or a closed connection), never a dead daemon.
# raw FILE: sends the file's bytes as one request and prints the response's status line (empty if none).
raw() {
	"$PYTHON" - "$UKRUN_SOCKET" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
data = b""
try:
    s.sendall(open(sys.argv[2], "rb").read())
    s.shutdown(socket.SHUT_WR)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print(data.split(b"\r\n", 1)[0].decode("latin-1"))
PY
}
printf 'GARBAGE\x01\x02\xff nonsense\r\n\r\n' >"$T/req1"
status_line=$(raw "$T/req1")
[[ $status_line == 'HTTP/1.1 400 '* ]] || fail "garbage request: '$status_line', want a 400"
healthy || fail "runnerd died on garbage"
head -c 4096 /dev/urandom >"$T/req2"
status_line=$(raw "$T/req2")
[[ -z $status_line || $status_line == 'HTTP/1.1 4'* ]] || fail "random bytes: '$status_line'"
healthy || fail "runnerd died on random bytes"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n' >"$T/req3"
status_line=$(raw "$T/req3")
[[ $status_line == 'HTTP/1.1 400 '* ]] || fail "negative Content-Length: '$status_line', want a 400"
healthy || fail "runnerd died on a negative Content-Length"
printf 'POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"ima' >"$T/req4"
raw "$T/req4" >/dev/null
healthy || fail "runnerd died on a truncated body"
{
	printf 'GET /healthz HTTP/1.1\r\nX-Big: '
	head -c 200000 /dev/zero | tr '\0' a
	printf '\r\n\r\n'
} >"$T/req5"
status_line=$(raw "$T/req5")
[[ -z $status_line || $status_line == 'HTTP/1.1 4'* ]] || fail "200 kB header: '$status_line', want a 4xx"
healthy || fail "runnerd died on a 200 kB header"

# The client: a text file and a missing file are not runnable (126, one line on stderr); a bad option is 2.
run_ukrun text "$T/text"
expect_rc text 126
[[ $(wc -l <"$T/text.err") == 1 ]] || { cat "$T/text.err" >&2; fail "text: stderr is not one line"; }
[[ ! -s $T/text.out ]] || fail "text: something on stdout"
run_ukrun missing "$T/no-such-file"
expect_rc missing 126
[[ $(wc -l <"$T/missing.err") == 1 ]] || { cat "$T/missing.err" >&2; fail "missing: stderr is not one line"; }
grep -q 'no-such-file' "$T/missing.err" || fail "missing: the message does not name the file"
run_ukrun bogus --bogus
expect_rc bogus 2
expect_err_grep bogus 'bogus'
run_ukrun noimage
expect_rc noimage 2

# What a driver cannot honour is refused, not ignored: linuxu runs one process, so vcpus > 1 is a 400 naming it.
run_ukrun vcpus --vcpus 2 "$FX/lx_exit" 3
expect_rc vcpus 2 # a usage error: runnerd refused what the options asked
expect_err_grep vcpus 'driver linuxu cannot honour vcpus 2'
lx_sha=$(sha256sum "$FX/lx_exit" | cut -d' ' -f1)
api POST /v1/runs -H 'Content-Type: application/json' -d "{\"image\": \"$lx_sha\", \"vcpus\": 4}"
[[ $HTTP_STATUS == 400 && $(jget error.code <<<"$API_BODY") == bad_request ]] || fail "vcpus on linuxu: $HTTP_STATUS $API_BODY"

[[ $(sql 'SELECT count(*) FROM runs') == 0 ]] || fail "refused requests created runs"
healthy || fail "runnerd unhealthy at the end"
[[ $(sql 'PRAGMA integrity_check') == ok ]] || fail "database integrity check failed"
