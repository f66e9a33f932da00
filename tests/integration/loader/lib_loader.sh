# lib_loader.sh — helpers for the loader-mode integration tests (a Linux program run inside a Unikraft elfloader
# kernel). Sourced after ../lib.sh, whose private runnerd, temp dir $T and helpers these build on.
#
# Needs the elfloader kernels of the shared fixtures ($UKRUN_SHARED_FIXTURES/elfloader): skips without them.

. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

LOADER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ELFLOADER_DIR=${UKRUN_SHARED_FIXTURES:+$UKRUN_SHARED_FIXTURES/elfloader}
[[ -n $ELFLOADER_DIR && -d $ELFLOADER_DIR ]] ||
	skip "no elfloader kernels: \$UKRUN_SHARED_FIXTURES/elfloader ('${ELFLOADER_DIR:-UKRUN_SHARED_FIXTURES unset}') is absent"
# exit-code kernel: reports the program's exit status at isa-debug-exit 0xf4; stock: drops it and idles forever.
K_EXIT=$ELFLOADER_DIR/elfloader-exitcode_qemu-x86_64
K_STOCK=$ELFLOADER_DIR/elfloader-stock_qemu-x86_64
for k in "$K_EXIT" "$K_STOCK"; do
	[[ -f $k ]] || skip "elfloader kernel $k is absent"
done

# metric NAME: a counter's value from the test daemon's /metrics (0 when it is not listed).
metric() {
	local v
	v=$(curl -sS --unix-socket "$UKRUN_SOCKET" http://runnerd/metrics | awk -v m="$1" '$1 == m { print $2 }')
	echo "${v:-0}"
}

# program_text FILE: the program's own output in a guest console: CRs dropped (Unikraft's UART driver turns
# "\n" into "\r\n") and the kernel's banner line ("Powered by Unikraft ...") removed.
program_text() {
	tr -d '\r' <"$1" | sed '1{/^Powered by Unikraft/d}'
}

# expect_console_match NAME ID: ukrun's stdout is byte-identical to the run's stored console.
expect_console_match() {
	local log=$T/data/runs/$2/console.log
	[[ -f $log ]] || fail "$1: run $2 has no console log at $log"
	cmp "$T/$1.out" "$log" >&2 || fail "$1: stdout differs from run $2's console log"
}

# record_field ID FIELD: one field of the run record as the API returns it.
record_field() {
	curl -sS --unix-socket "$UKRUN_SOCKET" "http://runnerd/v1/runs/$1" | jget "$2"
}
