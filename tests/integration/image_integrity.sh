#!/usr/bin/env bash
# Nothing a user names can alias a file the daemon writes, and a stored image that was damaged is never run:
# runs named like the daemon's own files (console.log, qemu.pid, qmp.sock) leave the stored image intact and
# get their own console; an image changed on disk (size, content, or replaced by a link) is quarantined,
# reported missing (HEAD 404) and uploaded again by the client, while a mere touch (same content) keeps it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon runnerd

metric() {
	curl -sS --unix-socket "$UKRUN_SOCKET" http://runnerd/metrics | awk -v n="$1" '$1 == n { print $2; exit }'
}
img_sha() { sha256sum "$1" | cut -d' ' -f1; }

sha=$(img_sha "$FX/mb_hello")
stored=$T/data/images/$sha
run_ukrun first "$FX/mb_hello"
expect_rc first 0
expect_out first $'Hello from mb_hello\n'

# Runs whose user-supplied name is one of the daemon's (or a driver's) file names.
for name in console.log qemu.pid qmp.sock image; do
	api POST /v1/runs -H 'Content-Type: application/json' -d "{\"image\": \"$sha\", \"name\": \"$name\"}"
	[[ $HTTP_STATUS == 201 ]] || fail "POST /v1/runs name=$name: $HTTP_STATUS $API_BODY"
	id=$(jget id <<<"$API_BODY")
	wait_state "$id" done 60
	expect_record "$id" done 0 lifecycle
	api GET "/v1/runs/$id/console"
	[[ $API_BODY == $'Hello from mb_hello\n' ]] || fail "run $id (name $name): console '$API_BODY'"
	[[ $(img_sha "$stored") == "$sha" ]] || fail "a run named $name changed the stored image"
	[[ -f $T/data/runs/$id/console.log && ! -L $T/data/runs/$id/console.log ]] || fail "run $id: console.log is not the daemon's own file"
	[[ -L $T/data/runs/$id/image/$name ]] || fail "run $id: the image is not linked under its name in image/"
done
# Names that are not file names are refused up front.
for name in . ..; do
	api POST /v1/runs -H 'Content-Type: application/json' -d "{\"image\": \"$sha\", \"name\": \"$name\"}"
	[[ $HTTP_STATUS == 400 ]] || fail "POST /v1/runs name='$name': $HTTP_STATUS, want 400"
done
run_ukrun again "$FX/mb_hello"
expect_rc again 0
expect_out again $'Hello from mb_hello\n'
[[ $(metric ukrun_image_uploads_total) == 1 ]] || fail "the intact image was uploaded again"

# damage HOW: change the stored file behind the daemon's back, then the client must upload it again.
uploads=1
damaged() {
	local how=$1
	api HEAD "/v1/images/$sha" -I
	[[ $HTTP_STATUS == 404 ]] || fail "$how: HEAD of a damaged image answered $HTTP_STATUS, want 404"
	run_ukrun "after-$how" "$FX/mb_hello"
	expect_rc "after-$how" 0
	expect_out "after-$how" $'Hello from mb_hello\n'
	uploads=$((uploads + 1))
	[[ $(metric ukrun_image_uploads_total) == "$uploads" ]] || fail "$how: the client did not upload the image again"
	[[ $(img_sha "$stored") == "$sha" ]] || fail "$how: the re-uploaded image is not intact"
	log "$how: quarantined, uploaded again, ran"
}

chmod u+w "$stored"; printf 'X' >>"$stored"
damaged appended
chmod u+w "$stored"; printf 'Z' | dd of="$stored" bs=1 seek=100 conv=notrunc status=none
damaged overwritten
chmod u+w "$stored"; : >"$stored"
damaged truncated
cp "$stored" "$T/elsewhere"; rm -f "$stored"; ln -s "$T/elsewhere" "$stored"
damaged symlinked
(($(ls "$T/data/images/.quarantine" | wc -l) == 4)) || fail "four damaged copies expected in images/.quarantine"
[[ $(metric ukrun_image_quarantined_total) == 4 ]] || fail "ukrun_image_quarantined_total: $(metric ukrun_image_quarantined_total)"

# A run submitted directly for a damaged image is refused as missing (never run).
chmod u+w "$stored"; printf 'Z' | dd of="$stored" bs=1 seek=200 conv=notrunc status=none
api POST /v1/runs -H 'Content-Type: application/json' -d "{\"image\": \"$sha\"}"
[[ $HTTP_STATUS == 404 ]] || fail "POST /v1/runs of a damaged image: $HTTP_STATUS $API_BODY, want 404"
run_ukrun repaired "$FX/mb_hello"
expect_rc repaired 0

# Same content, new timestamps: re-verified by its digest, kept, not uploaded again.
touch "$stored"
uploads=$(metric ukrun_image_uploads_total)
api HEAD "/v1/images/$sha" -I
[[ $HTTP_STATUS == 200 ]] || fail "HEAD after a touch: $HTTP_STATUS, want 200"
run_ukrun touched "$FX/mb_hello"
expect_rc touched 0
[[ $(metric ukrun_image_uploads_total) == "$uploads" ]] || fail "a touched but intact image was uploaded again"
log "ok"
