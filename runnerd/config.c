/* config.c — runnerd's settings from flags and runnerd.conf (see config.h). */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_ull(const char *s, unsigned long long max, unsigned long long *ret)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (!*s || *end || errno || v > max || s[0] == '-')
		return -EINVAL;
	*ret = v;
	return 0;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
}

int config_apply(struct config *c, const char *key, const char *val)
{
	unsigned long long v;
#define UINT_KEY(k, field, max)                           \
	if (strcmp(key, k) == 0) {                        \
		if (parse_ull(val, max, &v) < 0)          \
			return -EINVAL;                   \
		c->field = v;                             \
		return 0;                                 \
	}
	UINT_KEY("timeout", run_timeout_s, 7 * 86400)
	UINT_KEY("max-concurrent", max_concurrent, 1024)
	UINT_KEY("max-queued", max_queued, 1000000)
	UINT_KEY("console-cap", console_cap, 1ull << 40)
	UINT_KEY("max-image-size", max_image_size, 1ull << 40)
	UINT_KEY("console-grace-ms", console_grace_ms, 3600000)
	UINT_KEY("loader-idle-ms", loader_idle_ms, 3600000)
	UINT_KEY("idle-timeout", idle_timeout_s, 365 * 86400)
	UINT_KEY("drain-timeout", drain_timeout_s, 86400)
	UINT_KEY("header-timeout", header_timeout_s, 86400)
	UINT_KEY("keepalive-timeout", keepalive_timeout_s, 86400)
	UINT_KEY("max-connections", max_connections, 1000000)
#undef UINT_KEY
	if (strcmp(key, "remote-binds") == 0) {
		/* A file setting, a boolean: true/false, yes/no, 1/0. */
		if (!strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "1"))
			c->remote_binds = 1;
		else if (!strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "0"))
			c->remote_binds = 0;
		else
			return -EINVAL;
		return 0;
	}
	if (strcmp(key, "socket") == 0)
		set_str(&c->socket_path, val);
	else if (strcmp(key, "data-dir") == 0)
		set_str(&c->data_dir, val);
	else if (strcmp(key, "listen") == 0)
		set_str(&c->listen_tcp, val);
	else if (strcmp(key, "token-file") == 0)
		set_str(&c->token_file, val);
	else if (strcmp(key, "tls-cert") == 0)
		set_str(&c->tls_cert, val);
	else if (strcmp(key, "tls-key") == 0)
		set_str(&c->tls_key, val);
	else if (strcmp(key, "log") == 0)
		set_str(&c->log_file, val);
	else if (strcmp(key, "libvirt-uri") == 0)
		set_str(&c->libvirt_uri, val); /* the local host's option for the libvirt driver's probe */
	else if (strcmp(key, "xen-uri") == 0)
		set_str(&c->xen_uri, val); /* ... and for the xen driver's */
	else if (strcmp(key, "log-level") == 0) {
		static const char *const lv[] = {"error", "warn", "info", "debug"};
		for (int i = 0; i < 4; i++)
			if (strcmp(val, lv[i]) == 0) {
				c->log_level = (enum log_level)i;
				return 0;
			}
		return -EINVAL;
	} else
		return -ENOENT;
	return 0;
}

struct read_ctx {
	struct config *c;
	const char *path;
};

/* A host's name: what runs, `--host` and GET /v1/hosts call it. */
static int host_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || strcmp(s, "local") == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' ||
		      s[i] == '-'))
			return 0;
	return 1;
}

int config_label_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || strchr("._-", s[n])))
			return 0;
	return n >= 1 && n <= 63;
}

static int uint_value(const char *value, unsigned long lo, unsigned long hi, unsigned *ret)
{
	char *end;
	unsigned long v = strtoul(value, &end, 10);
	if (!*value || *end || v < lo || v > hi || *value == '-')
		return 0;
	*ret = (unsigned)v;
	return 1;
}

/* "kvm, x86_64" or "kvm x86_64": each a label. */
static int labels_value(const char *value, char **labels)
{
	char *copy = strdup(value), *save = NULL;
	size_t n = 0;
	int ok = copy != NULL;
	for (char *t = copy ? strtok_r(copy, ", \t", &save) : NULL; ok && t; t = strtok_r(NULL, ", \t", &save)) {
		ok = config_label_ok(t) && n < CONFIG_MAX_LABELS;
		if (ok)
			labels[n++] = strdup(t);
	}
	labels[n] = NULL;
	free(copy);
	return ok;
}

/* `key = value` of section `[host NAME]`. */
static int host_apply(struct read_ctx *x, const char *hname, const char *name, const char *value)
{
	struct config *c = x->c;
	struct host_conf *h = NULL;
	int local = strcmp(hname, "local") == 0;
	if (!local && !host_name_ok(hname)) {
		fprintf(stderr, "runnerd: %s: bad host name '%s' (a-z, 0-9, '.', '_', '-'; 1..63)\n", x->path, hname);
		return 0;
	}
	for (size_t i = 0; i < c->nhosts; i++)
		if (strcmp(c->hosts[i].name, hname) == 0)
			h = &c->hosts[i];
	if (!h) {
		if (c->nhosts == CONFIG_MAX_HOSTS) {
			fprintf(stderr, "runnerd: %s: more than %d hosts\n", x->path, CONFIG_MAX_HOSTS);
			return 0;
		}
		h = &c->hosts[c->nhosts++];
		memset(h, 0, sizeof(*h));
		h->name = strdup(hname);
		h->capacity = local ? 0 : 4;
		h->local = local;
	}
	int known = 1;
	if (strcmp(name, "uri") == 0 && !local) {
		if (*value && !strchr(value, ' ') && strstr(value, "://")) {
			set_str(&h->uri, value);
			return 1;
		}
	} else if (strcmp(name, "capacity") == 0) {
		if (uint_value(value, local ? 0 : 1, 1024, &h->capacity))
			return 1;
	} else if (strcmp(name, "memory_mb") == 0) {
		if (uint_value(value, 0, 64u << 20, &h->memory_mb))
			return 1;
	} else if (strcmp(name, "image_quota_mb") == 0 && !local) {
		if (uint_value(value, 0, 64u << 20, &h->image_quota_mb))
			return 1;
	} else if (strcmp(name, "labels") == 0) {
		for (size_t i = 0; h->labels[i]; i++)
			free(h->labels[i]);
		if (labels_value(value, h->labels))
			return 1;
	} else {
		known = 0;
	}
	fprintf(stderr, "runnerd: %s: [host %s]: %s '%s'\n", x->path, hname, known ? "bad value for" : "unknown key",
	        name);
	return 0;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct read_ctx *x = user;
	if (section && strncmp(section, "host ", 5) == 0)
		return host_apply(x, section + 5, name, value);
	if (section && *section)
		return 1; /* other sections are not runnerd's: ignore them (0 would fail the file) */
	int r = config_apply(x->c, name, value);
	if (r < 0)
		fprintf(stderr, "runnerd: %s: %s '%s'\n", x->path,
		        r == -ENOENT ? "unknown key" : "bad value for", name);
	return r == 0;
}

int config_read(struct config *c, const char *path)
{
	struct read_ctx x = { .c = c, .path = path };
	int r = ini_parse(path, ini_cb, &x);
	for (size_t i = 0; r == 0 && i < c->nhosts; i++)
		if (!c->hosts[i].uri && !c->hosts[i].local) {
			fprintf(stderr, "runnerd: %s: [host %s] has no uri\n", path, c->hosts[i].name);
			r = 1; /* invalid, as a bad line is */
		}
	return r;
}

void config_free(struct config *c)
{
	free(c->socket_path);
	free(c->data_dir);
	free(c->listen_tcp);
	free(c->token_file);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->log_file);
	free(c->config_file);
	free(c->libvirt_uri);
	for (size_t i = 0; i < c->nhosts; i++) {
		free(c->hosts[i].name);
		free(c->hosts[i].uri);
		for (size_t l = 0; c->hosts[i].labels[l]; l++)
			free(c->hosts[i].labels[l]);
	}
	free(c->xen_uri);
	c->socket_path = c->data_dir = c->listen_tcp = c->token_file = c->tls_cert = c->tls_key = c->log_file = c->config_file = NULL;
}
