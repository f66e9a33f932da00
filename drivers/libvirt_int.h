/*
 * libvirt_int.h — internals of the libvirt driver, shared between its files
 * (libvirt_xml.c: the domain XML and the pure end classifier; libvirt.c: the
 * connection, its event thread and the runs) and its unit tests.
 */
#ifndef UKRUN_LIBVIRT_INT_H
#define UKRUN_LIBVIRT_INT_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stddef.h>
#include <stdio.h>

#include "driver.h"

#define LV_DEFAULT_URI "qemu:///system"
#define LV_URI_OPTION "libvirt-uri" /* the local host's option (runnerd --libvirt-uri / runnerd.conf) */
#define LV_NAME_PREFIX "ukrun-"
/* Namespace of the domain metadata that marks who owns a domain. */
#define LV_META_NS "https://ukrun.dev/xmlns/libvirt/1"
#define LV_META_PREFIX "ukrun"
/* Remote hosts: the storage pool holding one volume per image digest. */
#define LV_POOL_NAME "ukrun"
#define LV_POOL_PATH "/var/lib/libvirt/images/ukrun"
#define LV_QUOTA_OPTION "image-quota-mb" /* a host's option: MiB of image volumes kept in its pool */

/* What the XML builder needs besides the spec. */
struct lv_xml_opts {
	const char *name;        /* domain name */
	const char *owner;       /* ownership mark stored in <metadata> */
	const char *kernel_path; /* path of the kernel as the libvirt host sees it */
	const char *initrd_path; /* NULL: none */
	const char *serial_log;  /* local hosts: file that also gets every serial byte (<log>); NULL = none */
	int kvm;                 /* 1: type='kvm', 0: type='qemu' (TCG) */
	int run_as_uid;          /* >= 0: QEMU runs as uid:gid through a static DAC label (local hosts) */
	int run_as_gid;
	int test_host;           /* xen: libvirt's test:/// driver (type='test', no arch: its Xen guests are i686) */
};

/* The XML builders (libvirt_xml.c: QEMU/KVM; xen.c: Xen PV/PVH). */
typedef int lv_build_xml_fn(const struct drv_spec *spec, const struct lv_xml_opts *o, char **ret_xml,
                            char **ret_err);

/* What tells the libvirt driver from the Xen driver: both run on the same
 * libvirt thread and event loop (libvirt_thread.c), each with its own state. */
struct lv_flavor {
	const char *name;        /* driver name, prefix of its messages */
	const char *default_uri;
	const char *uri_option;  /* the local host's option naming the URI (drv_host_option) */
	int (*uri_ok)(const char *uri); /* 1 when a remote host's URI is this flavour's */
	const char *local_uri;   /* URI prefix of a local host ("qemu:///", "xen:///") */
	const char *hv_name;     /* what virConnectGetVersion reports the version of */
	int xen;                 /* no KVM/TCG choice, no serial log copy, no DAC label */
	lv_build_xml_fn *build_xml;
};

extern const struct lv_flavor lv_flavor_libvirt;

/* The domain XML for `spec` (malloc'd in *ret_xml). Returns 0 or -EINVAL with
 * *ret_err (arguments the Unikraft command line cannot carry, bad machine). */
lv_build_xml_fn lv_build_xml;

/* The Xen PV (or PVH, when the image has a PHYS32_ENTRY note) domain XML (xen.c).
 * -ENOEXEC with *ret_err when the image has no Xen ELF notes. */
lv_build_xml_fn xen_build_xml;

/* XML text helpers the builders share: escape the five special characters;
 * 1 when `s` (NULL: yes) has no control character XML 1.0 cannot carry; the
 * <name> and the ownership <metadata> of a domain. */
void lv_xml_esc(FILE *f, const char *s);
int lv_xml_text_ok(const char *s);
void lv_xml_name_meta(FILE *f, const char *name, const char *owner, const char *run_id);

/* The domain name for run `run_id` of `owner`: "ukrun-<id>-<8 hex of the owner>"
 * (two daemons on one libvirtd both have a run 1). malloc'd. */
char *lv_domain_name(const char *run_id, const char *owner);

/* The owner mark inside a domain's metadata XML (as virDomainGetMetadata
 * returns it), malloc'd; NULL when there is none. */
char *lv_meta_owner(const char *meta_xml);

/* What libvirt told about one domain, for lv_classify_end. */
struct lv_end_facts {
	int killed;      /* the core asked for the kill */
	int rebooted;    /* a reboot event (triple fault / reset: on_reboot is restart) */
	int crashed;     /* a Crashed event (panic device) */
	int shutdown;    /* a Shutdown event (guest-initiated power-off) */
	int stopped;     /* the Stopped event's detail (virDomainEventStoppedDetailType), -1 if none */
	int paused;      /* the hypervisor paused the running guest (KVM internal error) */
};

/* Map libvirt's lifecycle facts to an outcome (message: static text or NULL). */
void lv_classify_end(const struct lv_end_facts *f, struct drv_outcome *ret_out);

/* Remote hosts (libvirt_pool.c, on the driver's thread): make sure the pool exists and
 * runs; its target directory in *ret_path (malloc'd). 0 or -errno with *ret_err. */
int lv_pool_setup(virConnectPtr conn, char **ret_path, char **ret_err);

/* The volume named `sha` in the pool, uploaded from `local_path` when absent
 * (*ret_uploaded = the bytes sent, 0 when the host had it). An upload stops (and its
 * partial volume goes) once *cancel (read atomically; NULL: never) is set. Called on a
 * host's upload worker (libvirt_thread.c). 0 or -errno with *ret_err. */
int lv_volume_ensure(virConnectPtr conn, const char *sha, const char *local_path, const int *cancel,
                     long long *ret_uploaded, char **ret_err);

struct lv_state;
/* Remote host: the bytes of volume `name` (QEMU's serial copy) from `offset` on, at most
 * LV_TAIL_MAX, into *ret_buf (malloc'd, *ret_len; NULL when it holds no more), then the volume
 * and virtlogd's rotated copies of it (name.0 ...) are deleted. Blocking: the host worker. */
void lv_log_fetch(virConnectPtr conn, const char *name, uint64_t offset, char **ret_buf, size_t *ret_len);

/* A volume was used by a run now (the LRU order of lv_pool_prune). */
void lv_volume_used(struct lv_state *st, const char *sha);
/* Remove image volumes of the pool, least recently used first, until they hold at most
 * `quota_bytes`; volumes of running jobs and volumes not named by a digest stay. Returns
 * how many were removed, or -errno with *ret_err. */
int lv_pool_prune(struct lv_state *st, unsigned long long quota_bytes, char **ret_err);

/* ---- runtime (libvirt.c: loop side and probe; libvirt_thread.c: the libvirt thread) ---- */
#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "errmsg.h"

#define LV_KEEPALIVE_INTERVAL_S 5
#define LV_KEEPALIVE_COUNT 3
#define LV_LOG_SUFFIX ".log" /* remote hosts: <domain name>.log in the image pool, QEMU's serial copy */
#define LV_TAIL_MAX (16u << 20) /* at most this much of it is read back at a run's end */
#define LV_DRAIN_MS 3000 /* after the Stopped event: wait at most this for the console's end */
#define LV_PAUSE_MS 1000 /* a pause with no Crashed event within this is an emulation failure */
#define LV_PAUSE_CHECKS 5 /* ... up to this many times (LV_PAUSE_MS apart) */

struct lv_job;

/* When this daemon last used a volume (a logical clock, LRU order). */
struct lv_vol_use {
	struct lv_vol_use *next;
	uint64_t used;
	char sha[];
};

struct lv_state {
	const struct lv_flavor *fl;
	char *uri;
	int local;
	int test_host;          /* libvirt's test:/// driver: no paused or autodestroy start */
	int kvm;                /* libvirt offers type='kvm' here */
	int kvm_fails_unikraft; /* KVM already failed a Unikraft guest (atomic: read on the loop) */
	char *host;             /* this machine's name, part of the ownership mark */
	char *pool_path;        /* remote hosts: target directory of the image pool */
	virConnectPtr conn;     /* libvirt thread (and probe/reap before runs) */
	int conn_dead;
	char *conn_err;
	int event_ids[2];       /* lifecycle, reboot callbacks on conn (-1: none) */
	int thread_started;     /* joined the libvirt thread (lv_loop_join) */
	int quit;               /* the libvirt thread has let go of this state (under lock) */
	int wake_timer;
	pthread_mutex_t lock;   /* guards cmds, insts and quit */
	pthread_cond_t quit_cond;
	struct lv_cmd *cmds, **cmds_tail;
	struct drv_instance *insts;
	struct lv_job *jobs;    /* libvirt thread only (jobs at their upload too) */
	struct lv_vol_use *vol_uses; /* libvirt thread only */
	/* The host worker (one per state, started by the first job, joined by the libvirt
	 * thread when it drops the state): a remote host's image upload and every domain
	 * start, the blocking calls of a start, so that no host's start waits for another's.
	 * The libvirt thread hands it a job (up_queue) and takes it back (up_done, then
	 * wake_timer): both lists, linked by up_next, and up_quit are under lock. */
	pthread_t up_thread;
	int up_started;         /* libvirt thread only */
	int up_quit;            /* the worker stops, an upload in progress is aborted (atomic) */
	pthread_cond_t up_cond; /* a job queued or up_quit */
	struct lv_job *up_queue, **up_queue_tail, *up_done;
	/* The connection died under a worker's call (libvirt called on_conn_close there):
	 * the libvirt thread ends the runs (under lock). */
	int conn_lost_pending, conn_lost_reason;
	uint64_t use_clock;
	unsigned long long quota_bytes; /* remote hosts: image volumes kept (0: no quota) */
	uint64_t next_token;
};

enum lv_msg_type { M_CONSOLE, M_NOTE, M_STARTED, M_EXIT };

struct lv_msg {
	struct lv_msg *next;
	enum lv_msg_type type;
	struct drv_outcome out;
	char *key, *value, *text; /* note; exit message in text */
	char *data;               /* console */
	size_t len;
};

enum lv_cmd_type { C_START, C_KILL, C_QUIT };

struct lv_cmd {
	struct lv_cmd *next;
	enum lv_cmd_type type;
	uint64_t token;
	struct lv_job *job; /* C_START: handed to the libvirt thread */
};

/* One run as the libvirt thread sees it. */
struct lv_job {
	struct lv_job *next;
	struct lv_state *st;
	uint64_t token;
	char *name, *xml_kvm, *xml_tcg;
	char *sha, *image; /* remote hosts: the volume to ensure, uploaded from `image` */
	char *vol;         /* remote hosts: the volume the domain uses (kept from pruning) */
	char *serial_log;  /* QEMU's copy of the serial output (recovers the tail): a local file, or */
	int remote_log;    /* a volume of the remote host's image pool, read back by the host worker */
	int finishing;     /* at the host worker for that (job_end), not for a start */
	int tail_done;     /* the remote copy was read back and removed */
	char *up_tail;     /* the worker's: what the copy holds past the bytes the stream brought */
	size_t up_tail_len;
	/* At the host worker (uploading set, on st->jobs all the while: its upload, then its
	 * domain's creation), the job belongs to the worker but for what the libvirt thread
	 * alone writes: facts.killed (atomic: a kill, acted on when it comes back; the worker
	 * reads it to skip the start) and lost (the connection died: it ends host-lost). */
	struct lv_job *up_next;  /* st->up_queue or st->up_done (under st->lock) */
	virConnectPtr up_conn;   /* the worker's reference on st->conn for the upload */
	int uploading;           /* libvirt thread only: at the host worker */
	int up_r;                /* the worker's result: lv_volume_ensure's, with up_err */
	char *up_err;
	long long uploaded;
	virDomainPtr up_dom;     /* the worker's: the domain it created (paused), taken by job_back */
	char *up_dom_err;        /* why it could not, when it tried */
	char *up_note;           /* the worker's: KVM refused at create, retried under TCG */
	char *lost;              /* libvirt thread only: why the connection died during the upload */
	int kvm, accel_auto, unikraft;
	virDomainPtr dom;
	virStreamPtr stream;
	int stream_cb;
	int drain_timer, pause_timer;
	int pause_checks; /* on_paused looks at a paused guest's state this many times before judging */
	int running, stopped, eof, retry, started_sent;
	struct lv_end_facts facts;
	uint64_t bytes, skip, delivered;
};

/* One run as the loop sees it. */
struct drv_instance {
	struct drv_instance *next; /* st->insts */
	struct lv_state *st;
	const struct drv_spec *spec;
	uint64_t token;
	char *name, *xml_kvm, *xml_tcg;
	char *sha; /* remote hosts: the image's digest (its volume's name) */
	char *serial_log;
	int kvm;
	uv_async_t async;
	struct lv_msg *msgs, **msgs_tail; /* under st->lock */
	struct drv_callbacks cb;
	int launched, reported, destroyed;
};

/* libvirt's last error message (never NULL). */
const char *lv_error(void);
/* virSetErrorFunc handler that keeps libvirt from printing on stderr. */
void lv_quiet_errors(void *ud, virErrorPtr e);
/* Open (or reopen after a loss) st->conn with keepalive and the domain event callbacks. */
int lv_conn_open(struct lv_state *st, char **ret_err);
void lv_conn_close(struct lv_state *st);
/* Queue a command for the libvirt thread and wake it. */
int lv_cmd_post(struct lv_state *st, enum lv_cmd_type type, uint64_t token, struct lv_job *job);
/* Register libvirt's default event implementation (once per process). */
int lv_loop_init(char **ret_err);
/* The one libvirt thread of the process runs libvirt's default event loop for
 * every state (the libvirt and xen drivers): join starts it for the first user;
 * leave makes the thread drop `st` (its runs, timer and connection) and stops
 * the thread after its last user. */
int lv_loop_join(struct lv_state *st, char **ret_err);
void lv_loop_leave(struct lv_state *st);

/* The driver slots both flavours share (libvirt.c). */
int lv_probe_with(const struct lv_flavor *fl, const struct drv_host *host, void **ret_state, char **ret_info,
                  char **ret_err);
/* The URI `fl` uses on `host` (host->uri, else the option, else the default); NULL with
 * -ENOTSUP in *ret_r when a remote host's URI is another flavour's. */
const char *lv_host_uri(const struct lv_flavor *fl, const struct drv_host *host, char **ret_err);
void lv_unprobe(void *state);
int lv_prepare(void *state, const struct drv_spec *spec, struct drv_instance **ret_inst, char **ret_err);
int lv_launch(struct drv_instance *inst, uv_loop_t *loop, const struct drv_callbacks *cb, char **ret_err);
int lv_kill(struct drv_instance *inst, unsigned flags);
void lv_destroy(struct drv_instance *inst);
int lv_health(void *state, char **ret_err);
int lv_reap(void *state, const char *runs_dir, const char *const *lost_ids, size_t nlost, char **ret_err);
/* Release a job's domain handles; unlink it from st->jobs and free it. */
void lv_job_release(struct lv_job *j);
void lv_job_unlink_free(struct lv_job *j);
/* Free a job that never reached the libvirt thread. */
void lv_job_discard(struct lv_job *j);

#endif
