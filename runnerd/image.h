/*
 * image.h — the content-addressed image store: data/images/<sha256>, written
 * through a temp file while hashing (SHA-256, incremental as bytes arrive),
 * verified, fsynced and renamed into place; probed (drivers/detect) once and
 * recorded in the sqlite store.
 */
#ifndef RUNNERD_IMAGE_H
#define RUNNERD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct image_store {
	char *dir;            /* data/images */
	char *tmpdir;         /* data/images/.tmp */
	char *quarantine_dir; /* data/images/.quarantine: damaged images moved aside */
	uint64_t max_size;    /* bytes; larger uploads get 413 */
	struct store *db;
	uint64_t upload_bytes;   /* bytes received by completed uploads (metrics) */
	uint64_t uploads;        /* completed uploads */
	uint64_t upload_skipped; /* HEAD hits: uploads the client could skip */
	uint64_t quarantined;    /* damaged images moved aside */
};

struct image_upload;

int image_store_init(struct image_store *is, const char *data_dir, uint64_t max_size,
                     struct store *db);
void image_store_fini(struct image_store *is);

/* 1 when `s` is 64 lowercase hex digits. */
int image_sha256_valid(const char *s);
/* Path of the stored image (malloc'd). */
char *image_path(const struct image_store *is, const char *sha256);
/* Buffer size of a file fingerprint (image_stamp). */
#define IMAGE_STAMP_MAX 96
/* The fingerprint of an open file: device, inode, size, mtime and ctime. Any write, chmod,
 * link or replacement of a stored image changes it (ctime cannot be set from user space). */
int image_stamp(int fd, char ret_stamp[IMAGE_STAMP_MAX]);
/* Check a stored image before it is used: recorded, a regular file of the recorded size,
 * and either its fingerprint is the one recorded when it was stored or its content still
 * hashes to its digest (then the new fingerprint is recorded). A damaged image is moved to
 * images/.quarantine and reported missing, so the client uploads it again.
 * 0 (with the typed record in *ret_info when non-NULL), -ENOENT missing or damaged. */
int image_verify(struct image_store *is, const char *sha256, struct image_info *ret_info);
/* 1 when image_verify succeeds. */
int image_exists(struct image_store *is, const char *sha256);

/* Start receiving `sha256` (the claimed digest). `name` is the user's file name or NULL. */
int image_upload_begin(struct image_store *is, const char *sha256, const char *name,
                       struct image_upload **ret_up, char **ret_err);
/* The next `len` bytes of the body: image_upload_digest() then image_upload_append(). */
int image_upload_write(struct image_upload *up, const char *buf, size_t len, char **ret_err);
/* The two halves, each always given the body's bytes in order; they touch disjoint parts
 * of `up`, so two threads may run one each at the same time (image_recv.c). Digest: hash
 * them and feed the probe's byte-string scan (detect_scan_feed). Append: write them to the temporary file (-EFBIG past the store's limit) and start
 * their writeback. */
void image_upload_digest(struct image_upload *up, const char *buf, size_t len);
int image_upload_append(struct image_upload *up, const char *buf, size_t len, char **ret_err);
/* The blocking half of finishing an upload: verify the digest, fsync, rename into place,
 * probe. Touches no shared state, so it runs on a worker thread (uv_queue_work). */
int image_upload_seal(struct image_upload *up);
/* The loop half: record the sealed image in the store (or report why sealing failed:
 * -EBADMSG on a digest mismatch). Frees `up`. */
int image_upload_record(struct image_upload *up, char **ret_err);
/* Drop a partial upload (frees, removes the temp file). NULL ok. */
void image_upload_abort(struct image_upload *up);
uint64_t image_upload_size(const struct image_upload *up);

/* Remove the file and (when no run refers to it) the record. -EBUSY while in use. */
int image_delete(struct image_store *is, const char *sha256);

#endif
