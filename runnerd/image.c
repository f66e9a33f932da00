/* image.c — content-addressed image store (see image.h). */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "detect.h"
#include "driver.h"
#include "log.h"
#include "mkdirp.h"

struct image_upload {
	struct image_store *is;
	EVP_MD_CTX *md;
	int fd;
	char *tmp_path;
	char *name;
	char sha256[65];
	uint64_t size;
	struct detect_scan scan;  /* the probe's byte-string scan, fed with the digest */
	struct detect_result det; /* filled by seal */
	char stamp[IMAGE_STAMP_MAX]; /* filled by seal: the stored file's fingerprint */
	int result;               /* of seal */
	char *err;                /* of seal */
};

/* Uploads a dead daemon left half-written in images/.tmp (the data-directory lock means
 * no live daemon is writing there). */
static void remove_partial_uploads(struct image_store *is)
{
	int dfd = open(is->tmpdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "upload-", 7) == 0 && unlinkat(dfd, e->d_name, 0) == 0)
			n++;
	closedir(d);
	if (n)
		log_warn("removed %u partial upload(s) left by a previous runnerd in %s", n, is->tmpdir);
}

int image_store_init(struct image_store *is, const char *data_dir, uint64_t max_size,
                     struct store *db)
{
	memset(is, 0, sizeof(*is));
	if (asprintf(&is->dir, "%s/images", data_dir) < 0 || asprintf(&is->tmpdir, "%s/.tmp", is->dir) < 0)
		return -ENOMEM;
	if (asprintf(&is->quarantine_dir, "%s/.quarantine", is->dir) < 0)
		return -ENOMEM;
	/* One level each: the data directory itself must exist (runnerd's start creates it). */
	int r = mkdir_exist_ok(is->dir, 0700);
	if (r == 0)
		r = mkdir_exist_ok(is->tmpdir, 0700);
	if (r == 0)
		r = mkdir_exist_ok(is->quarantine_dir, 0700);
	is->max_size = max_size;
	is->db = db;
	if (r == 0)
		remove_partial_uploads(is);
	return r;
}

void image_store_fini(struct image_store *is)
{
	free(is->dir);
	free(is->tmpdir);
	free(is->quarantine_dir);
	is->dir = is->tmpdir = is->quarantine_dir = NULL;
}

int image_sha256_valid(const char *s)
{
	if (!s || strlen(s) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

char *image_path(const struct image_store *is, const char *sha256)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", is->dir, sha256) < 0)
		return NULL;
	return p;
}

int image_stamp(int fd, char ret_stamp[IMAGE_STAMP_MAX])
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	snprintf(ret_stamp, IMAGE_STAMP_MAX, "v1:%llx:%llx:%lld:%lld.%09ld:%lld.%09ld", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
	         st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	return 0;
}

/* SHA-256 of what `fd` holds, as 64 hex digits. */
static int hash_fd(int fd, char ret_hex[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	char *buf = malloc(1 << 20);
	int r = buf ? 0 : -ENOMEM;
	off_t off = 0;
	while (r == 0) {
		ssize_t n = pread(fd, buf, 1 << 20, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)n);
		off += n;
	}
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_DigestFinal_ex(md, d, &dlen);
	for (unsigned i = 0; i < 32 && i < dlen; i++)
		snprintf(ret_hex + 2 * i, 3, "%02x", d[i]);
	ret_hex[64] = '\0';
	free(buf);
	EVP_MD_CTX_free(md);
	return r;
}

/* Move a damaged image out of the store (kept for inspection, never run). */
static void quarantine(struct image_store *is, const char *sha256, const char *why)
{
	char *from = image_path(is, sha256), *to = NULL;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (from &&
	    asprintf(&to, "%s/%s.%lld.%llu", is->quarantine_dir, sha256,
	             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, (unsigned long long)is->quarantined) >= 0 &&
	    rename(from, to) == 0) {
		log_error("image %s is damaged (%s): moved to %s; it must be uploaded again", sha256, why, to);
	} else if (from && unlink(from) == 0) {
		log_error("image %s is damaged (%s): removed; it must be uploaded again", sha256, why);
	} else {
		log_error("image %s is damaged (%s) and cannot be moved aside: %s", sha256, why, strerror(errno));
	}
	is->quarantined++;
	free(from);
	free(to);
}

int image_verify(struct image_store *is, const char *sha256, struct image_info *ret_info)
{
	struct image_info info = {0};
	if (!image_sha256_valid(sha256))
		return -EINVAL;
	int r = store_image_find(is->db, sha256, &info);
	if (r < 0)
		return r;
	char *p = image_path(is, sha256);
	int fd = p ? open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) : -1;
	r = fd >= 0 ? 0 : !p ? -ENOMEM : errno == ELOOP ? -EBADMSG : -ENOENT;
	free(p);
	char stamp[IMAGE_STAMP_MAX] = "";
	struct stat st;
	if (r == 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)))
		r = -EBADMSG;
	if (r == 0 && st.st_size != info.size) {
		quarantine(is, sha256, "its size changed");
		r = -ENOENT;
	}
	if (r == 0 && (r = image_stamp(fd, stamp)) == 0 && !(info.stamp && strcmp(info.stamp, stamp) == 0)) {
		/* Never fingerprinted (stored by an older runnerd) or its inode changed: the
		 * content decides. Rare, so hashing here is acceptable. */
		char hex[65];
		r = hash_fd(fd, hex);
		if (r == 0 && strcmp(hex, sha256) != 0) {
			quarantine(is, sha256, "its content no longer matches its digest");
			r = -ENOENT;
		} else if (r == 0) {
			store_image_set_stamp(is->db, sha256, stamp);
		}
	}
	if (r == -EBADMSG) {
		quarantine(is, sha256, "it is not a regular file");
		r = -ENOENT;
	}
	if (fd >= 0)
		close(fd);
	if (r == 0 && ret_info)
		*ret_info = info;
	else
		image_info_clear(&info);
	return r;
}

int image_exists(struct image_store *is, const char *sha256)
{
	return image_verify(is, sha256, NULL) == 0;
}

/* "<what> '<arg>': <strerror>" into *ret_err; returns r. */
static int fail(char **ret_err, int r, const char *what, const char *arg)
{
	if (ret_err && asprintf(ret_err, "%s '%s': %s", what, arg, strerror(-r)) < 0)
		*ret_err = NULL;
	return r;
}

int image_upload_begin(struct image_store *is, const char *sha256, const char *name,
                       struct image_upload **ret_up, char **ret_err)
{
	if (!image_sha256_valid(sha256))
		return -EINVAL;
	struct image_upload *up = calloc(1, sizeof(*up));
	if (!up)
		return -ENOMEM;
	up->is = is;
	up->fd = -1;
	memcpy(up->sha256, sha256, 65);
	up->name = name ? strdup(name) : NULL;
	up->md = EVP_MD_CTX_new();
	if (!up->md || EVP_DigestInit_ex(up->md, EVP_sha256(), NULL) != 1) {
		image_upload_abort(up);
		return fail(ret_err, -ENOMEM, "Failed to start hashing", sha256);
	}
	if (asprintf(&up->tmp_path, "%s/upload-XXXXXX", is->tmpdir) < 0) {
		up->tmp_path = NULL;
		image_upload_abort(up);
		return -ENOMEM;
	}
	up->fd = mkostemp(up->tmp_path, O_CLOEXEC);
	if (up->fd < 0) {
		int r = -errno;
		free(up->tmp_path);
		up->tmp_path = NULL;
		image_upload_abort(up);
		return fail(ret_err, r, "Failed to create a temporary file in", is->tmpdir);
	}
	*ret_up = up;
	return 0;
}

uint64_t image_upload_size(const struct image_upload *up)
{
	return up->size;
}

void image_upload_digest(struct image_upload *up, const char *buf, size_t len)
{
	EVP_DigestUpdate(up->md, buf, len);
	detect_scan_feed(&up->scan, buf, len);
}

int image_upload_append(struct image_upload *up, const char *buf, size_t len, char **ret_err)
{
	if (up->size + len > up->is->max_size)
		return -EFBIG;
	off_t start = (off_t)up->size;
	size_t todo = len;
	while (len) {
		ssize_t w = write(up->fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return fail(ret_err, -errno, "Failed to write", up->tmp_path);
		}
		buf += w;
		len -= (size_t)w;
		up->size += (uint64_t)w;
	}
	/* Start writing these pages to disk now, while the rest arrives, so the fsync in
	 * image_upload_seal has little left to wait for (it still decides durability). A
	 * hint: its failure changes nothing. */
	(void)sync_file_range(up->fd, start, (off_t)todo, SYNC_FILE_RANGE_WRITE);
	return 0;
}

int image_upload_write(struct image_upload *up, const char *buf, size_t len, char **ret_err)
{
	if (up->size + len > up->is->max_size)
		return -EFBIG;
	image_upload_digest(up, buf, len);
	return image_upload_append(up, buf, len, ret_err);
}

void image_upload_abort(struct image_upload *up)
{
	if (!up)
		return;
	if (up->fd >= 0)
		close(up->fd);
	if (up->tmp_path)
		unlink(up->tmp_path);
	free(up->tmp_path);
	free(up->name);
	free(up->err);
	EVP_MD_CTX_free(up->md);
	free(up);
}

/* detect_file() on the upload, through a read-only mapping of its own descriptor: the
 * pages are still in the page cache, where detect_file would copy up to DETECT_MAX_READ
 * bytes into a fresh buffer first (≈ 25 ms for 64 MiB here), and the byte-string scan was
 * done piece by piece with the digest (≈ 30 ms for 64 MiB after the last byte otherwise),
 * so only the pages the ELF parse reads are touched. The file is runnerd's own, in a 0700
 * directory, read-only: nobody truncates it under the mapping. */
static int probe(struct image_upload *up, const char *path)
{
	size_t len = up->size < DETECT_MAX_READ ? (size_t)up->size : DETECT_MAX_READ;
	const char *hint = up->name ? up->name : path;
	if (len == 0)
		return detect_buffer("", 0, hint, &up->det);
	void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, up->fd, 0);
	if (m == MAP_FAILED)
		return detect_file(path, up->name, &up->det);
	int r = detect_buffer_scanned(m, len, hint, &up->scan, &up->det);
	munmap(m, len);
	return r;
}

int image_upload_seal(struct image_upload *up)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hexd[65];
	EVP_DigestFinal_ex(up->md, md, &mdlen);
	for (unsigned i = 0; i < 32 && i < mdlen; i++)
		snprintf(hexd + 2 * i, 3, "%02x", md[i]);
	hexd[64] = '\0';
	if (strcmp(hexd, up->sha256) != 0) {
		if (asprintf(&up->err, "digest mismatch: the body hashes to %s, not %s", hexd, up->sha256) < 0)
			up->err = NULL;
		return up->result = -EBADMSG;
	}
	char *final = image_path(up->is, up->sha256);
	int r = 0;
	if (!final)
		r = -ENOMEM;
	else if (fsync(up->fd) < 0 || fchmod(up->fd, 0400) < 0)
		r = -errno;
	if (r == 0 && rename(up->tmp_path, final) < 0)
		r = -errno;
	if (r < 0) {
		fail(&up->err, r, "Failed to store image", final ? final : up->sha256);
		free(final);
		return up->result = r;
	}
	free(up->tmp_path);
	up->tmp_path = NULL; /* renamed: nothing to unlink */
	if ((r = image_stamp(up->fd, up->stamp)) < 0) /* after the rename, which changes the ctime */
		up->stamp[0] = '\0';
	if (probe(up, final) < 0) {
		up->det.platform = DRV_PLATFORM_NONE;
		up->det.flags = 0;
		snprintf(up->det.summary, sizeof(up->det.summary), "could not be read");
	}
	free(final);
	return up->result = 0;
}

int image_upload_record(struct image_upload *up, char **ret_err)
{
	int r = up->result;
	if (r < 0) {
		if (ret_err) {
			*ret_err = up->err;
			up->err = NULL;
		}
		image_upload_abort(up);
		return r;
	}
	struct image_row row = {
		.size = (int64_t)up->size,
		.name = up->name,
		.platform = drv_platform_name(up->det.platform),
		.flags = up->det.flags,
		.summary = up->det.summary,
		.stamp = up->stamp[0] ? up->stamp : NULL,
	};
	memcpy(row.sha256, up->sha256, 65);
	r = store_image_put(up->is->db, &row);
	if (r < 0) {
		fail(ret_err, r, "Failed to record image", up->sha256);
	} else {
		up->is->uploads++;
		up->is->upload_bytes += up->size;
		log_info("image %s stored: %llu bytes received, %s", up->sha256, (unsigned long long)up->size,
		         up->det.summary);
	}
	image_upload_abort(up);
	return r;
}

int image_delete(struct image_store *is, const char *sha256)
{
	int r = store_image_delete(is->db, sha256);
	if (r < 0)
		return r;
	char *p = image_path(is, sha256);
	if (p && unlink(p) < 0 && errno != ENOENT)
		r = -errno;
	free(p);
	return r < 0 ? r : 0;
}
