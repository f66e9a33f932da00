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
