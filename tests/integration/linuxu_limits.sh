#!/usr/bin/env bash
# linuxu limits that hold: each run has a process budget of its own (also when runnerd runs as root, which
# RLIMIT_NPROC exempts), every writable mount in the sandbox is a tmpfs bounded by the run's memory and the rest
# is read-only, and memory is capped. A fork bomb and memory/tmpfs hogs run concurrently with a normal run, which
# still succeeds. A file that is not a Linux ELF, forced onto linuxu, ends with 126.
# Bounded: --memory 64 (so a budget of 64 processes), the fixtures cap themselves (500 children, 1 GiB) in case
# a limit does not hold, and every run has a timeout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || skip "bubblewrap (bwrap) is not installed"
start_daemon runnerd

MEM=64   # --memory of the limited runs, MiB
NPROC=64 # the process budget that gives (one per MiB, at least 64)

fact() { sql "SELECT ifnull(value, '') FROM run_facts WHERE run_id = $1 AND key = '$2'"; }

# ---- the mechanism recorded in the run ----
expect_run hello 0 process linuxu/linuxu "$FX/lx_hello"
mech=$(fact "$RUN_ID" limits)
if (($(id -u) == 0)); then want=uid; else want=userns; fi
no_budget=
if [[ $mech == none && $want == uid ]] &&
	! setpriv --reuid=1879048192 --regid=1879048192 --clear-groups -- \
		bwrap --unshare-all --unshare-user --ro-bind / / true >/dev/null 2>&1; then
	no_budget="an unprivileged uid cannot create a bubblewrap sandbox here (user namespaces disabled?)"
else
	[[ $mech == "$want" ]] || fail "limits mechanism '$mech', want '$want'"
fi

# ---- the limits and the ids the program starts with (set before bwrap, between fork and exec) ----
run_ukrun ids --platform linuxu --memory $MEM --timeout 30 /usr/bin/cat /proc/self/limits /proc/self/status
expect_rc ids 0
lim() { grep -Eq "^$1 +$2 +$2 " "$T/ids.out" || fail "ids: want $1 $2 (soft = hard): $(grep "^$1" "$T/ids.out")"; }
lim 'Max data size' $((MEM << 20))
lim 'Max file size' $(((MEM + 1) << 20))
lim 'Max cpu time' 3600
lim 'Max core file size' 0
grep -Eq '^Max open files +([0-9]+) +\1 ' "$T/ids.out" || fail "ids: $(grep '^Max open files' "$T/ids.out")"
lim 'Max processes' $NPROC
grep -Eq $'^SigIgn:\t0+$' "$T/ids.out" || fail "ids: the daemon's ignored signals leak: $(grep SigIgn "$T/ids.out")"
grep -Eq $'^CapEff:\t0+$' "$T/ids.out" || fail "ids: $(grep CapEff "$T/ids.out")"
if [[ $want == uid && $mech == uid ]]; then
	u=$(fact "$(last_run_id)" sandbox_uid) tab=$'\t'
	grep -Eq "^Uid:($tab$u){4}\$" "$T/ids.out" || fail "ids: $(grep Uid: "$T/ids.out"), want $u"
	grep -Eq "^Gid:($tab$u){4}\$" "$T/ids.out" || fail "ids: $(grep Gid: "$T/ids.out"), want $u"
	# No supplementary group of the daemon (unmapped in the user namespace, it would show as 65534).
	grep -Eq $'^Groups:\t ?$' "$T/ids.out" || fail "ids: groups kept: $(grep Groups: "$T/ids.out")"
fi
log "ids: $(grep -E '^(Uid|Gid|Groups):' "$T/ids.out" | tr '\t\n' '  ')"

# ---- not runnable: text forced onto linuxu ends with 126 and says why ----
printf 'just some text\n' >"$T/notes.txt"
printf '#!/bin/sh\necho from the script\nexit 0\n' >"$T/script.sh"
chmod +x "$T/script.sh"
for f in notes.txt script.sh; do
	run_ukrun "$f" --platform linuxu --timeout 10 "$T/$f"
	expect_rc "$f" 126
	id=$(last_run_id)
	got=$(sql "SELECT state || '|' || exit_code || '|' || exit_source FROM runs WHERE id = $id")
	[[ $got == 'error|126|image' ]] || fail "$f: record '$got', want 'error|126|image'"
	reason=$(sql "SELECT reason FROM runs WHERE id = $id")
	[[ $reason == "not runnable: '$f' is not an x86-64 Linux program: not an ELF"* ]] || fail "$f: reason '$reason'"
	expect_err_grep "$f" "not runnable"
	[[ ! -s $T/$f.out ]] || fail "$f: something ran: $(cat "$T/$f.out")"
done

# ---- writable mounts are bounded by the run's memory (ENOSPC); everything else is read-only ----
# hog NAME DIR WANT_RC: lx_hog writes DIR/hog until it fails.
hog() {
	run_ukrun "$1" --memory $MEM --timeout 30 "$FX/lx_hog" file "$2"
	expect_rc "$1" "$3"
}
hog tmp /tmp 3
hog shm /dev/shm 3
for n in tmp shm; do
	grep -Eq '^write /(tmp|dev/shm): No space left on device after [0-9]+ MiB$' "$T/$n.out" ||
		fail "$n: $(cat "$T/$n.out")"
	mib=$(sed -E 's/.* after ([0-9]+) MiB/\1/' "$T/$n.out")
	((mib <= MEM)) || fail "$n: wrote $mib MiB with --memory $MEM"
	log "$(cat "$T/$n.out")"
done
hog root / 5
hog dev /dev 5
hog run /run/ukrun 5
for n in root dev run; do
	grep -Eq '^open /[a-z/]*: Read-only file system$' "$T/$n.out" || fail "$n: $(cat "$T/$n.out")"
done

# A memfd is on no mount: the file size cap (1 MiB past the tmpfs size) bounds it.
run_ukrun memfd --memory $MEM --timeout 30 "$FX/lx_hog" memfd
expect_rc memfd 3
grep -Eq '^write memfd: File too large after [0-9]+ MiB$' "$T/memfd.out" || fail "memfd: $(cat "$T/memfd.out")"
mib=$(sed -E 's/.* after ([0-9]+) MiB/\1/' "$T/memfd.out")
((mib <= MEM + 1)) || fail "memfd: wrote $mib MiB with --memory $MEM"
log "$(cat "$T/memfd.out")"

# ---- memory: the hog is stopped by the cap ----
run_ukrun mem --memory $MEM --timeout 30 "$FX/lx_hog" mem
expect_rc mem 3
grep -Eq '^malloc failed after [0-9]+ MiB$' "$T/mem.out" || fail "mem: $(cat "$T/mem.out")"
mib=$(sed -E 's/.* after ([0-9]+) MiB/\1/' "$T/mem.out")
((mib < MEM)) || fail "mem: allocated $mib MiB with --memory $MEM"
log "$(cat "$T/mem.out")"

# ---- a fork bomb holds its whole budget; other runs (another bomb, hogs, a normal run) are not hurt ----
[[ -z $no_budget ]] || skip "$no_budget: no per-run process budget to test"
"$UKRUN" --memory $MEM --timeout 60 "$FX/lx_forkbomb" hold </dev/null >"$T/bomb.out" 2>"$T/bomb.err" &
bomb_pid=$!
for _ in $(seq 300); do
	[[ -s $T/bomb.out ]] && break
	sleep 0.1
done
grep -Eq '^fork failed after [0-9]+ children: Resource temporarily unavailable$' "$T/bomb.out" ||
	fail "bomb: $(cat "$T/bomb.out" "$T/bomb.err")"
held=$(sed -E 's/.* after ([0-9]+) children.*/\1/' "$T/bomb.out")
((held < NPROC && held > NPROC / 2)) || fail "bomb: $held children with a budget of $NPROC processes"
bomb_id=$(last_run_id)
log "limits=$mech; bomb: $held children with a budget of $NPROC processes"
# The bomb's processes (its own and its children) run as the run's own uid with a root daemon.
procs=$(pgrep -x lx_forkbomb | wc -l)
((procs == held + 1)) || fail "bomb: $procs lx_forkbomb processes, want $((held + 1))"
if [[ $want == uid ]]; then
	uid=$(fact "$bomb_id" sandbox_uid)
	((uid >= 1879048192 && uid < 1879048192 + 65536)) || fail "bomb: sandbox_uid '$uid' is not a per-run uid"
	[[ $(pgrep -x -u "$uid" lx_forkbomb | wc -l) == "$procs" ]] || fail "bomb: not all its processes run as $uid"
fi
[[ $(fact "$bomb_id" limits) == "$want" ]] || fail "bomb: limits '$(fact "$bomb_id" limits)'"

# While it holds them: a second bomb gets a whole budget of its own, and hogs and a normal run run beside it.
nruns=$(sql 'SELECT count(*) FROM runs')
"$UKRUN" --memory $MEM --timeout 30 "$FX/lx_hog" file /tmp </dev/null >"$T/hog2.out" 2>"$T/hog2.err" &
hog2_pid=$!
"$UKRUN" --memory $MEM --timeout 30 "$FX/lx_hog" mem </dev/null >"$T/mem2.out" 2>"$T/mem2.err" &
mem2_pid=$!
for _ in $(seq 150); do
	(($(sql 'SELECT count(*) FROM runs') == nruns + 2)) && break
	sleep 0.1
done
(($(sql 'SELECT count(*) FROM runs') == nruns + 2)) || fail "the two background hogs did not start"
run_ukrun bomb2 --memory $MEM --timeout 30 "$FX/lx_forkbomb"
expect_rc bomb2 3
grep -Eq "^fork failed after $held children: " "$T/bomb2.out" ||
	fail "bomb2: '$(cat "$T/bomb2.out")', while the first bomb holds $held children"
expect_run normal 3 process linuxu/linuxu --timeout 30 "$FX/lx_exit" 3
expect_out normal $'exit 3\n'
wait_rc "$hog2_pid"
expect_rc hog2 3
wait_rc "$mem2_pid"
expect_rc mem2 3

api POST "/v1/runs/$bomb_id/cancel"
[[ $HTTP_STATUS == 2* ]] || fail "cancel bomb: HTTP $HTTP_STATUS"
wait_rc "$bomb_pid"
expect_rc bomb 130
for _ in $(seq 50); do
	pgrep -x lx_forkbomb >/dev/null || break
	sleep 0.1
done
! pgrep -x lx_forkbomb >/dev/null || fail "bomb: $(pgrep -x lx_forkbomb | wc -l) processes left after the cancel"
healthy || fail "runnerd unhealthy after the bombs"
