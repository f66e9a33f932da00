/*
 * config.h — runnerd's settings and how they are read: one setting by name
 * (a command-line flag or a runnerd.conf key, the same names), and runnerd.conf
 * itself (libinih `key = value`: top-level keys, and `[host NAME]` sections with
 * `uri` and `capacity` for remote libvirt hosts, other sections ignored; an unknown key or a bad
 * value is reported on stderr and fails the file). Defaults per mode stay in
 * main.c, which knows the mode.
 */
#ifndef RUNNERD_CONFIG_H
#define RUNNERD_CONFIG_H

#include <stddef.h>

#include "log.h"

/* A host from a `[host NAME]` section of runnerd.conf: a remote libvirt host, or `[host local]`
 * (this machine: no uri; capacity defaults to max-concurrent). */
#define CONFIG_MAX_HOSTS 63
#define CONFIG_MAX_LABELS 16
struct host_conf {
	char *name;              /* [a-z0-9._-], 1..63 */
	char *uri;               /* its libvirt URI (qemu+tcp://, qemu+tls://, qemu+ssh://, xen+ssh://, ...) */
	unsigned capacity;       /* guests at once (default 4; local: 0 = max-concurrent) */
	unsigned memory_mb;      /* guest memory at once (0: not counted) */
	unsigned image_quota_mb; /* image volumes kept in its storage pool (0: no quota) */
	char *labels[CONFIG_MAX_LABELS + 1]; /* NULL-terminated */
	int local;               /* the [host local] section */
};

/* A host label: [a-z0-9._-], 1..63 bytes. */
int config_label_ok(const char *s);

struct config {
	int user_mode;
	char *socket_path;
	char *data_dir;
	char *listen_tcp;
	char *token_file;
	char *tls_cert;       /* PEM certificate chain of a tls:// listener */
	char *tls_key;        /* its PEM private key */
	char *log_file;
	char *config_file;
	char *libvirt_uri;    /* the local host's libvirt driver URI (NULL: qemu:///system) */
	char *xen_uri;        /* the local host's xen driver URI (NULL: xen:///system) */
	long idle_timeout_s;  /* -1 = mode default */
	unsigned run_timeout_s;
	unsigned max_concurrent;
	unsigned max_queued;
	unsigned long long console_cap;
	unsigned long long max_image_size;
	unsigned console_grace_ms;
	unsigned loader_idle_ms;      /* loader mode: vCPUs idle this long after the summary end a run (0 = off) */
	unsigned drain_timeout_s;     /* SIGTERM: wait this long for running runs, then kill them */
	unsigned header_timeout_s;    /* request head due within (0 = no limit) */
	unsigned keepalive_timeout_s; /* idle connection / stalled body or reader (0 = no limit) */
	unsigned max_connections;     /* per listener (0 = no cap) */
	unsigned remote_binds;        /* 1: honour --bind from clients over TCP/TLS (runnerd.conf only) */
	enum log_level log_level;
	struct host_conf hosts[CONFIG_MAX_HOSTS];
	size_t nhosts;
};

/* Set `key` (a long option's name without "--") to `val`. 0, -ENOENT for an unknown
 * key, -EINVAL for a value out of range or not a number. */
int config_apply(struct config *c, const char *key, const char *val);

/* Apply every top-level `key = value` of the file at `path` (sections are ignored).
 * Returns inih's answer: 0, < 0 when the file cannot be read (or memory ran out),
 * else the number of the first bad line, after naming it on stderr. */
int config_read(struct config *c, const char *path);

/* Free the strings of *c (the struct itself belongs to the caller). */
void config_free(struct config *c);

#endif
