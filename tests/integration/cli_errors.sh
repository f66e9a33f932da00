#!/usr/bin/env bash
# The CLI's errors: a mistyped subcommand gets "did you mean" and exit 2, a file named like a subcommand still runs
# as ./ps, usage errors exit 2 (never 125) and name the option and its limit, never an API path or a JSON field;
# "no run abc" / "no run 999" exit 1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || skip "bubblewrap (bwrap) is not installed"
start_daemon runnerd

# usage NAME WANT_RC REGEX ukrun-args... (or `env VAR=V $UKRUN args...`): exit status, one stderr match, and no API words on stderr.
usage() {
	local name=$1 want=$2 re=$3
	shift 3
	if [[ $1 == env ]]; then run_capture "$name" "$@"; else run_ukrun "$name" "$@"; fi
	expect_rc "$name" "$want"
	expect_err_grep "$name" "$re"
	! grep -Eq '/v1/|memory_mb|timeout_s|"|HTTP [0-9]' "$T/$name.err" || { cat "$T/$name.err" >&2; fail "$name: stderr speaks of the API"; }
	[[ ! -s $T/$name.out ]] || fail "$name: something on stdout"
}

cd "$T"
usage pss 2 "^ukrun: 'pss' is not a subcommand or a file \\(did you mean 'ps'\\?\\)\$" pss
usage shwo 2 "did you mean 'show'" shwo
usage imags 2 "did you mean 'images'" imags
usage deamon 2 "did you mean 'daemon'" deamon
usage zzzzzz 2 "^ukrun: 'zzzzzz' is not a subcommand or a file\$" zzzzzz
[[ $(sql 'SELECT count(*) FROM runs') == 0 ]] || fail "a mistyped subcommand created a run"

# A file named like a subcommand (or like a typo of one) runs when named as a path, or when it exists.
cp "$FX/lx_hello" "$T/ps"
cp "$FX/lx_hello" "$T/pss"
run_ukrun dotps ./ps
expect_rc dotps 0
expect_out dotps $'Hello from lx_hello\n'
run_ukrun barepss pss
expect_rc barepss 0
expect_out barepss $'Hello from lx_hello\n'
run_ukrun bareps ps --json
expect_rc bareps 0
grep -q '"runs"' "$T/bareps.out" || fail "ps (with a file ./ps present) did not list runs"

# Usage errors of the run form: exit 2, the option and its limit.
usage mem 2 "--memory.*65536" --memory 99999 "$FX/lx_hello"
usage mem_env 2 'UKRUN_MEMORY.*65536' env UKRUN_MEMORY=99999 "$UKRUN" "$FX/lx_hello"
usage vcpus 2 '--vcpus: expected 1\.\.64' --vcpus 65 "$FX/lx_hello"
usage timeout 2 '--timeout' --timeout 0 "$FX/lx_hello"
usage label 2 '--label' --label 'bad key=1' "$FX/lx_hello"
usage labels_env 2 'UKRUN_LABELS' env UKRUN_LABELS='novalue' "$UKRUN" "$FX/lx_hello"
usage unknown 2 "unknown option '--bogus'" --bogus "$FX/lx_hello"
usage noimage 2 'missing IMAGE' --timeout 5
[[ $(sql 'SELECT count(*) FROM runs') == 2 ]] || fail "a usage error created a run"

# Subcommands: usage errors are 2, a run that does not exist is "no run ID" and 1.
usage show_abc 1 '^ukrun: no run abc$' show abc
usage show_999 1 '^ukrun: no run 999$' show 999
usage logs_999 1 'no run 999|run 999' logs 999
usage cancel_999 1 '^ukrun: no run 999$' cancel 999
usage show_none 2 'missing run ID' show
usage ps_state 2 "--state: expected queued, .* got 'bogus'" ps --state bogus
usage ps_n 2 '-n: expected 1\.\.10000' ps -n 0
usage ps_before 2 '--before: expected a run ID' ps --before x
usage ps_opt 2 "unknown option '--nope'" ps --nope
usage ps_extra 2 "unexpected argument 'x'" ps x
usage rm_none 2 'missing IMAGE' rm
usage rm_nofile 2 'expected an image file or its sha256' rm ./no-such-image
usage rm_unknown 1 '^ukrun: no image 0123abcd$' rm 0123abcd
usage daemon_none 2 'expected start, stop or status' daemon
usage daemon_bad 2 "expected start, stop or status, got 'restart'" daemon restart

MAN1=$(cd "$(dirname "$0")/../.." && pwd)/docs/ukrun.1
# --help of the run form shows examples and every subcommand; each subcommand has --help.
run_ukrun help --help
expect_rc help 0
grep -q '^Examples:' "$T/help.out" || fail "--help: no examples"
for c in ps runs show logs cancel images rm hosts version ping daemon; do
	grep -Eq "^  $c " "$T/help.out" || fail "--help does not list $c"
	sed -n '/^\.SH SUBCOMMANDS/,/^\.SH EXIT STATUS/p' "$MAN1" | grep -E '^\.(B|BI|BR) ' | grep -qw -- "$c" ||
		fail "ukrun.1 does not document $c"
	run_ukrun help_$c $c --help
	expect_rc help_$c 0
	grep -q "^Usage: ukrun $c" "$T/help_$c.out" || fail "$c --help"
done
log "ok"
