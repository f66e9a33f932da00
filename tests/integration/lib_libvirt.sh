# lib_libvirt.sh — helpers for the libvirt driver's integration tests (sourced after lib.sh).
#
# The tests run real guests through a real libvirtd at qemu:///system: when it does not answer and we are root,
# scripts/libvirt-daemons starts virtlogd and libvirtd (as .ci/run does); the test skips only when that is
# impossible here. On exit, no libvirt domain owned by this test's daemons may be left (lib.sh's process check
# also sees their QEMU, whose command line names the test dir).

LV_URI=qemu:///system
LV_NS=https://ukrun.dev/xmlns/libvirt/1
command -v virsh >/dev/null || skip "virsh (libvirt-clients) is not installed"
if ! virsh -q -c "$LV_URI" version >/dev/null 2>&1; then
	[[ $(id -u) == 0 ]] || skip "libvirtd does not answer at $LV_URI and starting it needs root"
	bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/libvirt-daemons" >&2 ||
		skip "libvirtd cannot run here (scripts/libvirt-daemons failed)"
fi

# lv_owned_domains: active domains whose ukrun metadata names a directory of this test.
lv_owned_domains() {
	local d
	for d in $(virsh -q -c "$LV_URI" list --name 2>/dev/null | grep '^ukrun-' || true); do
		virsh -q -c "$LV_URI" metadata "$d" "$LV_NS" 2>/dev/null | grep -q -- "$T/" && echo "$d"
	done
	return 0
}

# lv_wait_no_domains SECONDS: bounded wait until no domain of this test is left.
lv_wait_no_domains() {
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		[[ -z $(lv_owned_domains) ]] && return 0
		sleep 0.1
	done
	return 1
}

_lv_cleanup() {
	local rc=$? left
	# Without this, `(exit "$rc")` below ends the trap under set -e after a failure, before _cleanup stops the
	# test's daemons: every failing libvirt test leaked its runnerd.
	set +e
	# After a pass every run has ended: any domain of ours is a leak. After a failure, just clean up.
	left=$(lv_owned_domains)
	if [[ -n $left ]]; then
		((rc == 0)) && { log "FAIL: libvirt domains of this test left behind: $left"; rc=1; }
		for d in $left; do virsh -q -c "$LV_URI" destroy "$d" >/dev/null 2>&1 || true; done
	fi
	(exit "$rc")
	_cleanup
}
trap _lv_cleanup EXIT

# ---- remote hosts: more libvirtds on this machine, reached only through qemu+tcp:// ----
# lv_remote_start NAME [HOOK]: a libvirtd (with its virtlogd) in a private mount namespace (tmpfs over /run,
# /var/lib/libvirt and /etc/libvirt/storage), listening on a free loopback port with auth none. Sets
# LV_REMOTE_URI[NAME]; its pids are in $T/NAME/{libvirtd,virtlogd,ns}.pid. Skips when it cannot run here.
# HOOK: a script that becomes its /etc/libvirt/hooks/qemu (libvirt runs it, synchronously, at each step of a
# domain's start and stop: "NAME prepare begin -", ...), in that namespace only.
declare -A LV_REMOTE_URI=()
LV_REMOTES=()
lv_remote_start() {
	local name=$1 dir=$T/$1 port hook=${2:-}
	[[ $(id -u) == 0 ]] || skip "a second libvirtd needs root"
	command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
	mkdir -p "$dir"
	port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	cat >"$dir/libvirtd.conf" <<CONF
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "$port"
auth_tcp = "none"
CONF
	cat >"$dir/ns.sh" <<'SH'
set -e
dir=$1
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib/libvirt
mkdir -p /etc/libvirt/storage
mount -t tmpfs tmpfs /etc/libvirt/storage # the pool it defines stays with it
if [[ -f $dir/hook ]]; then
	mkdir -p /etc/libvirt/hooks
	mount -t tmpfs tmpfs /etc/libvirt/hooks
	install -m 0755 "$dir/hook" /etc/libvirt/hooks/qemu
fi
mkdir -p /run/libvirt /run/lock /var/lib/libvirt/images /var/lib/libvirt/qemu
chown libvirt-qemu:libvirt-qemu /var/lib/libvirt/qemu && chmod 0751 /var/lib/libvirt/qemu
virtlogd & echo $! >"$dir/virtlogd.pid"
libvirtd --listen -f "$dir/libvirtd.conf" & echo $! >"$dir/libvirtd.pid"
wait
SH
	if [[ -n $hook ]]; then cp "$hook" "$dir/hook"; fi
	unshare --mount --propagation private bash "$dir/ns.sh" "$dir" >"$dir/libvirtd.log" 2>&1 &
	echo $! >"$dir/ns.pid"
	LV_REMOTE_URI[$name]="qemu+tcp://127.0.0.1:$port/system"
	LV_REMOTES+=("$name")
	lv_remote_wait "$name" || { cat "$dir/libvirtd.log" >&2; skip "a second libvirtd cannot run here"; }
}

# lv_remote_wait NAME: bounded wait (15 s) until its libvirtd answers.
lv_remote_wait() {
	for _ in $(seq 150); do
		virsh -q -c "${LV_REMOTE_URI[$1]}" version >/dev/null 2>&1 && return 0
		kill -0 "$(cat "$T/$1/ns.pid")" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# lv_remote_kill NAME [SIGNAL]: its libvirtd (only: virtlogd and the guests' QEMU stay) gets SIGNAL (KILL).
lv_remote_kill() {
	local pid
	pid=$(cat "$T/$1/libvirtd.pid")
	kill "-${2:-KILL}" "$pid"
	wait_pid_gone "$pid" 30 || fail "the libvirtd of $1 did not go"
}

# lv_remote_restart NAME: a new libvirtd in the same namespace (after lv_remote_kill); waits until it answers.
lv_remote_restart() {
	local dir=$T/$1
	nsenter --mount="/proc/$(cat "$dir/ns.pid")/ns/mnt" -- libvirtd --listen -f "$dir/libvirtd.conf" \
		>>"$dir/libvirtd.log" 2>&1 &
	echo $! >"$dir/libvirtd.pid"
	lv_remote_wait "$1" || fail "the restarted libvirtd of $1 does not answer"
}

# lv_remote_domains NAME: active ukrun domains there.
lv_remote_domains() {
	virsh -q -c "${LV_REMOTE_URI[$1]}" list --name 2>/dev/null | grep '^ukrun-' || true
}

# lv_remote_stop_all: runnerds first (their guests end with their connections), then every remote libvirtd;
# used by the EXIT trap below.
lv_remote_stop_all() {
	local p n d
	for p in "${_daemon_pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait_pid_gone "$p" 20; done
	for n in "${LV_REMOTES[@]}"; do
		for d in $(lv_remote_domains "$n"); do virsh -q -c "${LV_REMOTE_URI[$n]}" destroy "$d" >/dev/null 2>&1; done
		for f in libvirtd virtlogd; do [[ -s $T/$n/$f.pid ]] && kill -TERM "$(cat "$T/$n/$f.pid")" 2>/dev/null; done
		# QEMU processes a SIGKILLed libvirtd left behind are nobody's children: every process still in the
		# namespace goes with it.
		local ns q
		ns=$(readlink "/proc/$(cat "$T/$n/ns.pid")/ns/mnt" 2>/dev/null) || ns=
		if [[ -n $ns ]]; then
			for q in /proc/[0-9]*; do
				[[ ${q#/proc/} != "$(cat "$T/$n/ns.pid")" && $(readlink "$q/ns/mnt" 2>/dev/null) == "$ns" ]] &&
					kill -KILL "${q#/proc/}" 2>/dev/null
			done
		fi
		wait_pid_gone "$(cat "$T/$n/ns.pid")" 20 || kill -KILL "$(cat "$T/$n/ns.pid")" 2>/dev/null
	done
	return 0
}
_lv_remote_cleanup() {
	local rc=$?
	set +e
	((${#LV_REMOTES[@]})) && lv_remote_stop_all
	(exit "$rc")
	_lv_cleanup
}
trap _lv_remote_cleanup EXIT
