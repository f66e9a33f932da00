#!/usr/bin/env bash
# The CLI's environment: CI metadata, $UKRUN_LABELS and $UKRUN_MEMORY recorded in the run; quiet under cargo and
# nextest unless -v; the upload progress bar never when stderr is not a terminal (and drawn under script(1) when
# util-linux script is here); table colour only on a terminal and never with NO_COLOR; the bash completion loads
# (`complete -p ukrun`) and completes subcommands and options. ukrun does not link libcurl: it runs with
# libcurl hidden, and says so for $UKRUN_URL.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || skip "bubblewrap (bwrap) is not installed"
start_daemon runnerd
SRC=$(cd "$(dirname "$0")/../.." && pwd)
# The outer environment must not decide what this test sees.
unset GITHUB_SHA GITHUB_RUN_ID GITHUB_REPOSITORY CI_JOB_ID CI_COMMIT_SHA CI_PIPELINE_ID BUILDKITE_BUILD_ID \
	UKRUN_LABELS UKRUN_MEMORY CARGO NEXTEST NO_COLOR

labels_of() { sql "SELECT labels FROM runs WHERE id = $1"; }

# ---- CI labels, UKRUN_LABELS, --label winning over both ----
run_capture ci env GITHUB_SHA=0123abc GITHUB_RUN_ID=42 GITHUB_REPOSITORY=org/repo CI_JOB_ID=7 CI_COMMIT_SHA=fedcba \
	CI_PIPELINE_ID=99 BUILDKITE_BUILD_ID=bk-1 UKRUN_LABELS='team=rt,tier=2' "$UKRUN" --label tier=3 "$FX/lx_hello"
expect_rc ci 0
id=$(last_run_id)
api GET "/v1/runs/$id"
got=$("$PYTHON" -c 'import json,sys; print(sorted(json.loads(sys.argv[1])["labels"].items()))' "$API_BODY")
want="[('BUILDKITE_BUILD_ID', 'bk-1'), ('CI_COMMIT_SHA', 'fedcba'), ('CI_JOB_ID', '7'), ('CI_PIPELINE_ID', '99'), ('GITHUB_REPOSITORY', 'org/repo'), ('GITHUB_RUN_ID', '42'), ('GITHUB_SHA', '0123abc'), ('team', 'rt'), ('tier', '3')]"
[[ $got == "$want" ]] || fail "labels: $got, want $want"
run_ukrun bysha ps --json --label GITHUB_SHA=0123abc
[[ $(jget runs.0.id <"$T/bysha.out") == "$id" ]] || fail "ps --label GITHUB_SHA=...: not the run"
# Without CI variables: no labels at all.
run_ukrun plain "$FX/lx_hello"
api GET "/v1/runs/$(last_run_id)"
[[ $(jget labels <<<"$API_BODY") == '{}' ]] || fail "labels without CI variables: $(jget labels <<<"$API_BODY")"

# ---- UKRUN_MEMORY, and --memory winning over it ----
run_capture mem env UKRUN_MEMORY=96 "$UKRUN" "$FX/lx_hello"
expect_rc mem 0
[[ $(sql "SELECT memory_mb FROM runs WHERE id = $(last_run_id)") == 96 ]] || fail "UKRUN_MEMORY=96 not recorded"
run_capture mem2 env UKRUN_MEMORY=96 "$UKRUN" --memory 1G "$FX/lx_hello"
[[ $(sql "SELECT memory_mb FROM runs WHERE id = $(last_run_id)") == 1024 ]] || fail "--memory 1G did not win"

# ---- quiet under cargo / nextest: the cancel notes of a cancelled run are not printed unless -v ----
# cancelled ENV... : run lx_hang with that environment, cancel it, stderr → $T/cancelled.err.
cancelled() {
	env "$@" "$UKRUN" --timeout 60 "$FX/lx_hang" </dev/null >"$T/cancelled.out" 2>"$T/cancelled.err" &
	local client=$! id
	for _ in $(seq 150); do
		id=$(sql "SELECT max(id) FROM runs WHERE name = 'lx_hang' AND state = 'running'")
		[[ -n $id ]] && break
		sleep 0.1
	done
	[[ -n $id ]] || fail "lx_hang never ran"
	"$UKRUN" cancel "$id" >/dev/null
	wait_rc "$client"
	[[ $RC == 130 ]] || fail "cancelled client ($*): exit $RC, want 130"
}
cancelled TERM=dumb
grep -q 'cancelled' "$T/cancelled.err" || { cat "$T/cancelled.err" >&2; fail "outside cargo: no cancel note"; }
cancelled CARGO=/usr/bin/cargo
[[ ! -s $T/cancelled.err ]] || { cat "$T/cancelled.err" >&2; fail "under cargo: notes on stderr"; }
cancelled NEXTEST=1
[[ ! -s $T/cancelled.err ]] || { cat "$T/cancelled.err" >&2; fail "under nextest: notes on stderr"; }
run_capture cargo_v env CARGO=/usr/bin/cargo "$UKRUN" -v "$FX/lx_hello"
expect_rc cargo_v 0
grep -q 'sha256' "$T/cargo_v.err" || fail "under cargo with -v: no progress on stderr"

# ---- progress bar: a 6 MiB image (a static ELF with zeros appended still runs) ----
big=$T/lx_big
cp "$FX/lx_hello" "$big"
head -c $((6 << 20)) /dev/zero >>"$big"
run_ukrun nobar "$big"
expect_rc nobar 0
expect_out nobar $'Hello from lx_hello\n'
! grep -q 'uploading' "$T/nobar.err" || { cat "$T/nobar.err" >&2; fail "a progress bar with stderr not a terminal"; }

have_script=false
if script -qc true /dev/null </dev/null >/dev/null 2>&1; then have_script=true; fi
if $have_script; then
	# onterm NAME COMMAND: run COMMAND on a pseudo-terminal (stdout and stderr both on it) → $T/NAME.tty.
	onterm() {
		local name=$1
		shift
		script -qec "$*" /dev/null </dev/null >"$T/$name.tty" 2>&1 || true
	}
	cp "$big" "$T/lx_big2"
	printf 'x' >>"$T/lx_big2" # a new digest: uploaded again
	onterm bar "'$UKRUN' '$T/lx_big2'"
	grep -q 'uploading lx_big2 \[#* *\] *[0-9]*%' "$T/bar.tty" || { cat -v "$T/bar.tty" >&2; fail "no progress bar on a terminal"; }
	grep -q '100%' "$T/bar.tty" || fail "the progress bar never reached 100%"
	grep -q 'Hello from lx_hello' "$T/bar.tty" || fail "bar: the program's output is missing"
	cp "$big" "$T/lx_big3"
	printf 'y' >>"$T/lx_big3"
	onterm bar_q "'$UKRUN' -q '$T/lx_big3'"
	! grep -q 'uploading' "$T/bar_q.tty" || fail "a progress bar with -q"

	# ---- colour: on a terminal, not with NO_COLOR, not on a pipe ----
	onterm colour "'$UKRUN' ps"
	grep -q $'\033\\[32mdone' "$T/colour.tty" || { cat -v "$T/colour.tty" >&2; fail "ps on a terminal: no colour"; }
	onterm nocolour "NO_COLOR=1 '$UKRUN' ps"
	grep -q 'done' "$T/nocolour.tty" || fail "ps with NO_COLOR: no rows"
	! grep -q $'\033\\[' "$T/nocolour.tty" || fail "ps with NO_COLOR: colour"
else
	log "util-linux script(1) is not usable here: the on-terminal checks (bar drawn, colour) are skipped"
fi
run_ukrun pipe ps
! grep -q $'\033' "$T/pipe.out" || fail "ps on a pipe: colour"

# ---- libcurl is loaded for $UKRUN_URL only: the Unix socket works without it, TCP says it is missing ----
curl_so=$(ldconfig -p | awk '/libcurl\.so\.4 .*x86-64/ { print $NF; exit }')
if [[ -n $curl_so ]]; then
	curl_so=$(readlink -f "$curl_so")
	readelf -d "$UKRUN" | grep NEEDED | grep -q libcurl && fail "ukrun links libcurl"
	run_capture nocurl bwrap --dev-bind / / --ro-bind /dev/null "$curl_so" "$UKRUN" "$FX/lx_hello"
	expect_rc nocurl 0
	expect_out nocurl $'Hello from lx_hello\n'
	run_capture nocurl_tcp env UKRUN_URL=http://127.0.0.1:1 bwrap --dev-bind / / --ro-bind /dev/null "$curl_so" "$UKRUN" ping
	expect_rc nocurl_tcp 125
	expect_err_grep nocurl_tcp '^ukrun: TCP needs libcurl: '
fi

# ---- bash completion ----
comp=$SRC/client/completions/ukrun.bash
[[ $(bash -c ". '$comp'; complete -p ukrun") == *' -F _ukrun ukrun' ]] ||
	fail "complete -p ukrun: $(bash -c ". '$comp'; complete -p ukrun" 2>&1)"
# complete WORDS...: COMPREPLY for the last word, one per line.
complete_words() {
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ukrun; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@"
}
[[ $(complete_words ukrun p | sort | tr '\n' ' ') == 'ping ps ' ]] || fail "completion of 'p': $(complete_words ukrun p)"
complete_words ukrun ps --st | grep -qx -- --state || fail "completion of 'ps --st'"
[[ $(complete_words ukrun ps --state ru) == running ]] || fail "completion of 'ps --state ru'"
[[ $(complete_words ukrun daemon st | sort | tr '\n' ' ') == 'start status stop ' ]] || fail "completion of 'daemon st'"
complete_words ukrun --plat | grep -qx -- --platform || fail "completion of '--plat'"
[[ $(complete_words ukrun --platform l) == linuxu ]] || fail "completion of '--platform l'"
log "ok"
