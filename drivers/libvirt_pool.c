/*
 * libvirt_pool.c — images on remote libvirt hosts: one storage pool
 * ("ukrun", a directory pool created when absent) holding one raw volume per
 * image digest, uploaded with virStorageVolUpload only when the host lacks it, and
 * an empty "<digest>.complete" beside each one whose upload finished.
 * Called on the libvirt driver's thread (blocking calls, never on the loop), but
 * lv_volume_ensure: on the host's upload worker (libvirt_thread.c).
 */
#include "libvirt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *msg(const char *what, const char *name)
{
	const char *e = virGetLastErrorMessage();
	char *s = NULL;
	if (asprintf(&s, "libvirt: %s '%s': %s", what, name, e && *e ? e : "unknown error") < 0)
		return NULL;
	return s;
}

int lv_pool_setup(virConnectPtr conn, char **ret_path, char **ret_err)
{
	virStoragePoolPtr pool = virStoragePoolLookupByName(conn, LV_POOL_NAME);
	if (!pool) {
		pool = virStoragePoolDefineXML(conn,
		                               "<pool type='dir'><name>" LV_POOL_NAME "</name><target><path>"
		                               LV_POOL_PATH "</path></target></pool>", 0);
		if (!pool || virStoragePoolBuild(pool, 0) < 0) {
			*ret_err = msg("cannot define storage pool", LV_POOL_NAME);
			if (pool)
				virStoragePoolFree(pool);
			return -EIO;
		}
		virStoragePoolSetAutostart(pool, 1);
	}
	int r = 0;
	/* A defined pool whose directory is gone: build it again. */
	if (virStoragePoolIsActive(pool) != 1 && virStoragePoolCreate(pool, VIR_STORAGE_POOL_CREATE_WITH_BUILD) < 0) {
		*ret_err = msg("cannot start storage pool", LV_POOL_NAME);
		r = -EIO;
	}
	char *xml = r == 0 ? virStoragePoolGetXMLDesc(pool, 0) : NULL;
	const char *a = xml ? strstr(xml, "<path>") : NULL;
	const char *b = a ? strstr(a, "</path>") : NULL;
	if (r == 0 && (!a || !b)) {
		*ret_err = msg("cannot read the target path of storage pool", LV_POOL_NAME);
		r = -EIO;
	}
	if (r == 0) {
		a += strlen("<path>");
		*ret_path = strndup(a, (size_t)(b - a));
		r = *ret_path ? 0 : -ENOMEM;
	}
	free(xml);
	virStoragePoolFree(pool);
	return r;
}

/* Only volumes named like ours (64 lowercase hex digits) are ever removed. */
static int image_name_is_digest(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == 64;
}

struct upload {
	int fd;
	const int *cancel;
};

static int send_file(virStreamPtr st, char *buf, size_t n, void *opaque)
{
	struct upload *u = opaque;
	(void)st;
	if (u->cancel && __atomic_load_n(u->cancel, __ATOMIC_ACQUIRE))
		return -1; /* virStreamSendAll aborts the stream */
	ssize_t r = read(u->fd, buf, n);
	return r < 0 ? -1 : (int)r;
}

/* The marker volume "<sha>.complete" (empty) says the volume "<sha>" holds the whole image: it is
 * created only after the upload's stream finished, and removed before the volume is. So the
 * volume left by an upload that never finished (runnerd killed, or stopped, during it; an earlier
 * ukrun without markers) is told from the image and replaced, never booted. */
#define LV_COMPLETE_SUFFIX ".complete"

static virStorageVolPtr lookup_marker(virStoragePoolPtr pool, const char *sha)
{
	char name[128];
	snprintf(name, sizeof(name), "%s" LV_COMPLETE_SUFFIX, sha);
	virStorageVolPtr v = virStorageVolLookupByName(pool, name);
	virResetLastError();
	return v;
}

static int create_volume(virStoragePoolPtr pool, const char *name, long long bytes, virStorageVolPtr *ret)
{
	char *xml = NULL;
	if (asprintf(&xml, "<volume><name>%s</name><capacity unit='bytes'>%lld</capacity><target>"
	                   "<format type='raw'/><permissions><mode>0644</mode></permissions></target></volume>",
	             name, bytes) < 0)
		return -ENOMEM;
	*ret = virStorageVolCreateXML(pool, xml, 0);
	free(xml);
	return *ret ? 0 : -EIO;
}

/* Delete a volume and its marker, the marker first. */
static int delete_volume(virStoragePoolPtr pool, virStorageVolPtr vol, const char *sha)
{
	virStorageVolPtr m = lookup_marker(pool, sha);
	if (m) {
		int r = virStorageVolDelete(m, 0);
		virStorageVolFree(m);
		if (r < 0)
			return -EIO;
	}
	return vol && virStorageVolDelete(vol, 0) < 0 ? -EIO : 0;
}

int lv_volume_ensure(virConnectPtr conn, const char *sha, const char *local_path, const int *cancel,
                     long long *ret_uploaded, char **ret_err)
{
	*ret_uploaded = 0;
	virStoragePoolPtr pool = virStoragePoolLookupByName(conn, LV_POOL_NAME);
	if (!pool) {
		*ret_err = msg("storage pool is gone", LV_POOL_NAME);
		return -ENOENT;
	}
	/* Refresh: another daemon (or an earlier run) may have added the volume meanwhile. */
	virStoragePoolRefresh(pool, 0);
	virStorageVolPtr vol = virStorageVolLookupByName(pool, sha), marker = NULL;
	virResetLastError();
	int r = -EIO, fd = -1;
	virStreamPtr st = NULL;
	if (vol && (marker = lookup_marker(pool, sha))) {
		r = 0; /* complete: cached */
		goto cleanup;
	}
	/* Unfinished (no marker), or a stale marker without its volume: start afresh. */
	if (delete_volume(pool, vol, sha) < 0) {
		*ret_err = msg("cannot remove the unfinished volume", sha);
		goto cleanup;
	}
	if (vol)
		virStorageVolFree(vol);
	vol = NULL;
	struct stat sb;
	fd = open(local_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		r = -errno;
		if (asprintf(ret_err, "libvirt: cannot read image %s: %s", local_path, strerror(errno)) < 0)
			*ret_err = NULL;
		goto cleanup;
	}
	if ((r = create_volume(pool, sha, (long long)sb.st_size, &vol)) < 0) {
		*ret_err = msg("cannot create volume", sha);
		goto cleanup;
	}
	char mname[128];
	snprintf(mname, sizeof(mname), "%s" LV_COMPLETE_SUFFIX, sha);
	st = virStreamNew(conn, 0);
	if (!st || virStorageVolUpload(vol, st, 0, (unsigned long long)sb.st_size, 0) < 0 ||
	    virStreamSendAll(st, send_file, &(struct upload){.fd = fd, .cancel = cancel}) < 0 ||
	    virStreamFinish(st) < 0 || create_volume(pool, mname, 0, &marker) < 0) {
		*ret_err = msg("cannot upload the image to volume", sha);
		if (st)
			virStreamAbort(st);
		delete_volume(pool, vol, sha); /* never leave a partial image under its digest */
		r = -EIO;
		goto cleanup;
	}
	*ret_uploaded = (long long)sb.st_size;
	r = 0;
cleanup:
	if (st)
		virStreamFree(st);
	if (marker)
		virStorageVolFree(marker);
	if (vol)
		virStorageVolFree(vol);
	virStoragePoolFree(pool);
	if (fd >= 0)
		close(fd);
	virResetLastError();
	return r;
}

struct sink {
	char *buf;
	size_t len, cap;
};

static int sink_recv(virStreamPtr st, const char *data, size_t n, void *opaque)
{
	struct sink *k = opaque;
	(void)st;
	if (k->len + n > k->cap)
		n = k->cap - k->len; /* LV_TAIL_MAX: the rest is dropped */
	memcpy(k->buf + k->len, data, n);
	k->len += n;
	return (int)n;
}

void lv_log_fetch(virConnectPtr conn, const char *name, uint64_t offset, char **ret_buf, size_t *ret_len)
{
	*ret_buf = NULL;
	*ret_len = 0;
	virStoragePoolPtr pool = virStoragePoolLookupByName(conn, LV_POOL_NAME);
	if (!pool) {
		virResetLastError();
		return;
	}
	virStoragePoolRefresh(pool, 0);
	virStorageVolPtr vol = virStorageVolLookupByName(pool, name);
	virStorageVolInfo info;
	if (vol && virStorageVolGetInfo(vol, &info) == 0 && info.capacity > offset) {
		unsigned long long n = info.capacity - offset;
		struct sink k = {.cap = n < LV_TAIL_MAX ? (size_t)n : LV_TAIL_MAX};
		k.buf = malloc(k.cap);
		virStreamPtr st = k.buf ? virStreamNew(conn, 0) : NULL;
		if (st && virStorageVolDownload(vol, st, offset, k.cap, 0) == 0 &&
		    virStreamRecvAll(st, sink_recv, &k) == 0 && virStreamFinish(st) == 0 && k.len) {
			*ret_buf = k.buf;
			*ret_len = k.len;
			k.buf = NULL;
		} else if (st) {
			virStreamAbort(st);
		}
		if (st)
			virStreamFree(st);
		free(k.buf);
	}
	if (vol && virStorageVolDelete(vol, 0) < 0)
		virResetLastError();
	if (vol)
		virStorageVolFree(vol);
	/* virtlogd's rotated copies (name.0, name.1, ...: its max_backups, 3 by default), if any. */
	for (int i = 0; i < 8; i++) {
		char rot[300];
		snprintf(rot, sizeof(rot), "%s.%d", name, i);
		virStorageVolPtr v = virStorageVolLookupByName(pool, rot);
		if (!v)
			break;
		if (virStorageVolDelete(v, 0) < 0)
			virResetLastError();
		virStorageVolFree(v);
	}
	virStoragePoolFree(pool);
	virResetLastError();
}

/* Least recently used first; never-used (by this daemon) volumes before any used one. */
struct vol_age {
	virStorageVolPtr vol;
	const char *name;
	uint64_t used;
	unsigned long long bytes;
};

static int by_age(const void *a, const void *b)
{
	const struct vol_age *x = a, *y = b;
	if (x->used != y->used)
		return x->used < y->used ? -1 : 1;
	return strcmp(x->name, y->name);
}

static uint64_t last_use(const struct lv_state *st, const char *name)
{
	for (const struct lv_vol_use *u = st->vol_uses; u; u = u->next)
		if (strcmp(u->sha, name) == 0)
			return u->used;
	return 0;
}

/* A volume a job runs from, or one a job's upload worker is ensuring (its sha stays
 * unchanged meanwhile). */
static int in_use(const struct lv_state *st, const char *name)
{
	for (const struct lv_job *j = st->jobs; j; j = j->next)
		if ((j->vol && strcmp(j->vol, name) == 0) || (j->uploading && j->sha && strcmp(j->sha, name) == 0))
			return 1;
	return 0;
}

void lv_volume_used(struct lv_state *st, const char *sha)
{
	struct lv_vol_use *u = st->vol_uses;
	while (u && strcmp(u->sha, sha) != 0)
		u = u->next;
	if (!u) {
		u = calloc(1, sizeof(*u) + strlen(sha) + 1);
		if (!u)
			return;
		strcpy(u->sha, sha);
		u->next = st->vol_uses;
		st->vol_uses = u;
	}
	u->used = ++st->use_clock;
}

int lv_pool_prune(struct lv_state *st, unsigned long long quota_bytes, char **ret_err)
{
	virStoragePoolPtr pool = virStoragePoolLookupByName(st->conn, LV_POOL_NAME);
	if (!pool) {
		*ret_err = msg("storage pool is gone", LV_POOL_NAME);
		return -ENOENT;
	}
	virStorageVolPtr *vols = NULL;
	int n = virStoragePoolListAllVolumes(pool, &vols, 0);
	if (n < 0) {
		*ret_err = msg("cannot list the volumes of storage pool", LV_POOL_NAME);
		virStoragePoolFree(pool);
		return -EIO;
	}
	struct vol_age *ages = calloc((size_t)n + 1, sizeof(*ages));
	unsigned long long total = 0;
	int removed = 0;
	for (int i = 0; ages && i < n; i++) {
		virStorageVolInfo info;
		ages[i].vol = vols[i];
		ages[i].name = virStorageVolGetName(vols[i]);
		ages[i].used = last_use(st, ages[i].name ? ages[i].name : "");
		if (virStorageVolGetInfo(vols[i], &info) == 0)
			ages[i].bytes = info.capacity;
		total += ages[i].bytes;
	}
	if (ages)
		qsort(ages, (size_t)n, sizeof(*ages), by_age);
	for (int i = 0; ages && i < n && total > quota_bytes; i++) {
		if (!ages[i].name || !image_name_is_digest(ages[i].name) || in_use(st, ages[i].name))
			continue;
		if (delete_volume(pool, ages[i].vol, ages[i].name) == 0) {
			total -= ages[i].bytes;
			removed++;
		}
	}
	for (int i = 0; i < n; i++)
		virStorageVolFree(vols[i]);
	free(vols);
	free(ages);
	virStoragePoolFree(pool);
	virResetLastError();
	return removed;
}
