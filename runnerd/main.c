/*
 * main.c — runnerd: arguments, configuration (flags > runnerd.conf > defaults),
 * directories, signals, idle exit, and the one libuv loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "config.h"
#include "console.h"
#include "datalock.h"
#include "image.h"
#include "log.h"
#include "mkdirp.h"
#include "run.h"
#include "server.h"
#include "store.h"
#include "tls.h"

/* The daemon's single context. */
struct runnerd {
	struct config cfg;
	uv_loop_t *loop;
	struct store *db;
	struct image_store images;
	struct run_manager runs;
	struct api api;
	struct server srv;
	uv_signal_t sigint, sigterm, sighup;
	uv_timer_t tick;
	char *token;
	struct tls_ctx *tls;   /* of a tls:// listener, else NULL */
	uint64_t last_busy_ms; /* uv_now of the last tick that saw a connection inside a request */
	int stopping;
	int killing;             /* the drain is over: running runs were killed */
	uint64_t drain_deadline; /* loop time (ms) when the drain ends */
	uint64_t quiet_since;    /* stopping: loop time when the last run ended */
};

/* At a stop, how long connections stay open after the last run ended. */
#define STOP_LINGER_MS 300

static void usage(FILE *f)
{
	fputs("Usage: runnerd [OPTIONS]\n"
	      "The ukrun daemon: runs unikernel images on qemu/linuxu and records every run.\n\n"
	      "  --user                 per-user daemon (default): XDG paths, exits when idle\n"
	      "  --system               system daemon: /run/ukrun/runnerd.sock (0660), /var/lib/ukrun\n"
	      "  --socket PATH          Unix socket to serve\n"
	      "  --data-dir DIR         database, images and console logs\n"
	      "  --listen tcp://H:P     also serve TCP (needs --token-file; never all addresses by default)\n"
	      "  --listen tls://H:P     ... or TLS 1.2+ (needs --token-file, --tls-cert and --tls-key)\n"
	      "  --token-file FILE      bearer token for TCP and TLS clients\n"
	      "  --tls-cert FILE        PEM certificate (chain) of the tls:// listener\n"
	      "  --tls-key FILE         PEM private key of that certificate\n"
	      "  --config FILE          runnerd.conf (key = value; keys as the long options; default\n"
	      "                         ~/.config/ukrun/runnerd.conf, system: /etc/ukrun/runnerd.conf)\n"
	      "  --idle-timeout S       exit after S idle seconds (user default 600; 0 = never)\n"
	      "  --drain-timeout S      on SIGTERM, let running runs finish for up to S seconds (0)\n"
	      "  --timeout S            default run timeout (300)\n"
	      "  --max-concurrent N     runs at once (default: number of CPUs)\n"
	      "  --max-queued N         waiting runs before 503 (1000)\n"
	      "  --console-cap BYTES    console bytes kept per run (16 MiB)\n"
	      "  --max-image-size BYTES largest accepted image (1 GiB)\n"
	      "  --console-grace-ms MS  loader mode: silence after libtest's summary that ends a run (2000)\n"
	      "  --loader-idle-ms MS    loader mode: the guest idle this long after the summary ends it (150; 0 = off)\n"
	      "  --header-timeout S     a request's line and headers must arrive within S seconds (10)\n"
	      "  --keepalive-timeout S  close connections idle, or stalled in a body or answer, for S s (60)\n"
	      "  --max-connections N    open connections per listener; more get 503 (512)\n"
	      "  --log FILE             log file (user mode default: DATA_DIR/runnerd.log)\n"
	      "  --log-level LEVEL      error, warn, info (default), debug\n"
	      "  --libvirt-uri URI      libvirt driver's connection (default qemu:///system)\n"
	      "  --xen-uri URI          xen driver's connection (default xen:///system)\n"
	      "  -h, --help, -V, --version\n",
	      f);
}

static char *path_join(const char *a, const char *b)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", a, b) < 0)
		return NULL;
	return p;
}

/* The directory part of `path` ("." for a bare name, "/" for "/name"). */
static char *dirname_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	return strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

/* Mode defaults for what flags and the config file left unset. */
static void defaults(struct config *c)
{
	const char *xdg_rt = getenv("XDG_RUNTIME_DIR"), *xdg_data = getenv("XDG_DATA_HOME"),
	           *home = getenv("HOME");
	char *p = NULL;
	if (!c->socket_path) {
		if (!c->user_mode)
			p = strdup("/run/ukrun/runnerd.sock");
		else if (xdg_rt && *xdg_rt && asprintf(&p, "%s/ukrun/runnerd.sock", xdg_rt) < 0)
			p = NULL;
		else if (!(xdg_rt && *xdg_rt) && asprintf(&p, "/tmp/ukrun-%u/runnerd.sock", (unsigned)getuid()) < 0)
			p = NULL;
		c->socket_path = p;
	}
	if (!c->data_dir) {
		p = NULL;
		if (!c->user_mode)
			p = strdup("/var/lib/ukrun");
		else if (xdg_data && *xdg_data && asprintf(&p, "%s/ukrun", xdg_data) < 0)
			p = NULL;
		else if (!(xdg_data && *xdg_data) && asprintf(&p, "%s/.local/share/ukrun", home ? home : "/tmp") < 0)
			p = NULL;
		c->data_dir = p;
	}
	if (c->idle_timeout_s < 0)
		c->idle_timeout_s = c->user_mode ? 600 : 0;
	if (!c->max_concurrent) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->max_concurrent = n > 0 ? (unsigned)n : 1;
	}
	if (c->user_mode && !c->log_file)
		c->log_file = path_join(c->data_dir, "runnerd.log");
}

static void tick_close_all(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_tick(uv_timer_t *t);

/* Kill what still runs (runs end as "runnerd stopped", 125). */
static void end_drain(struct runnerd *d)
{
	if (d->killing)
		return;
	d->killing = 1;
	if (run_manager_active(&d->runs))
		log_info("stopping: killing %u run(s) still active", run_manager_active(&d->runs));
	run_manager_stop(&d->runs);
}

/* Stop: no new runs; queued runs end at once; running runs get the drain timeout to
 * finish (the listeners stay open meanwhile, so their clients can read the ends), then
 * they are killed. A second signal ends the drain at once. */
static void begin_stop(struct runnerd *d, const char *why)
{
	if (d->stopping) {
		end_drain(d);
		return;
	}
	d->stopping = 1;
	unsigned active = run_manager_active(&d->runs);
	if (active && d->cfg.drain_timeout_s)
		log_info("stopping: %s; waiting up to %u s for %u active run(s)", why, d->cfg.drain_timeout_s, active);
	else
		log_info("stopping: %s", why);
	if (!active) /* nobody waits for an end: no linger */
		d->quiet_since = uv_now(d->loop) - STOP_LINGER_MS;
	run_manager_drain(&d->runs);
	d->drain_deadline = uv_now(d->loop) + (uint64_t)d->cfg.drain_timeout_s * 1000;
	if (!d->cfg.drain_timeout_s)
		end_drain(d);
	/* on_tick finishes once every run has recorded its end. */
	uv_timer_start(&d->tick, on_tick, 0, 50);
}

static void on_tick(uv_timer_t *t)
{
	struct runnerd *d = t->data;
	uint64_t now = uv_now(d->loop);
	run_manager_maintain(&d->runs);
	if (d->stopping) {
		if (!d->killing && now >= d->drain_deadline)
			end_drain(d);
		if (run_manager_active(&d->runs) != 0) {
			d->quiet_since = 0;
			return;
		}
		/* The last ends are recorded: give their clients a moment to read them. */
		if (!d->quiet_since)
			d->quiet_since = now;
		if (now - d->quiet_since >= STOP_LINGER_MS) {
			server_close(&d->srv);
			uv_timer_stop(t);
			server_close_connections(&d->srv);
			uv_walk(d->loop, tick_close_all, NULL);
		}
		return;
	}
	/* Not idle while a run is active or a connection is inside a request (an upload that
	 * takes longer than the idle timeout, an answer still streaming), nor right after. */
	if (server_busy(&d->srv))
		d->last_busy_ms = now;
	uint64_t last = d->api.last_request_ms > d->last_busy_ms ? d->api.last_request_ms : d->last_busy_ms;
	if (d->cfg.idle_timeout_s > 0 && run_manager_active(&d->runs) == 0 && server_busy(&d->srv) == 0 &&
	    now - last >= (uint64_t)d->cfg.idle_timeout_s * 1000)
		begin_stop(d, "idle timeout");
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct runnerd *d = s->data;
	if (signum == SIGHUP) {
		/* logrotate: the old file was moved away; write to a new one at the same path. */
		int r = d->cfg.log_file ? log_open(d->cfg.log_file) : 0;
		if (r < 0)
			log_error("SIGHUP: cannot reopen the log '%s': %s", d->cfg.log_file, strerror(-r));
		else
			log_info("SIGHUP: log reopened");
		return;
	}
	begin_stop(d, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static char *errf(char **ret_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Set *ret_err to a formatted message; returns NULL (for the callers' returns). */
static char *errf(char **ret_err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(ret_err, fmt, ap) < 0)
		*ret_err = NULL;
	va_end(ap);
	return NULL;
}

/* The bearer token: the first line of `path`, a file only its owner may access. A token
 * longer than API_TOKEN_MAX is refused, never truncated; it is visible ASCII (RFC 7235's
 * token68 is), so what the file holds is what a client can send. */
static char *read_token(const char *path, char **ret_err)
{
	char buf[API_TOKEN_MAX + 3];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return errf(ret_err, "Cannot read token file '%s': %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO))) {
		close(fd);
		if (!S_ISREG(st.st_mode))
			return errf(ret_err, "Token file '%s' is not a regular file", path);
		return errf(ret_err,
		            "Token file '%s' is accessible by group or others (mode %04o); make it private "
		            "(chmod 600 '%s')",
		            path, (unsigned)(st.st_mode & 07777), path);
	}
	size_t n = 0;
	while (n < sizeof(buf) - 1) {
		ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			close(fd);
			return errf(ret_err, "Cannot read token file '%s': %s", path, strerror(e));
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	buf[n] = '\0';
	size_t len = strcspn(buf, "\r\n");
	if (len > API_TOKEN_MAX)
		return errf(ret_err, "Token in '%s' is longer than %d characters", path, API_TOKEN_MAX);
	buf[len] = '\0';
	if (len < 16)
		return errf(ret_err, "Token in '%s' must be at least 16 characters", path);
	for (size_t i = 0; i < len; i++)
		if (buf[i] < 0x21 || buf[i] > 0x7e)
			return errf(ret_err, "Token in '%s' must be printable ASCII without spaces", path);
	return strdup(buf);
}

/* Who may create a socket in the socket's directory may also put a daemon of their own
 * there: it must be a real directory of ours (or root's) that nobody else can write. */
static int check_socket_dir(const char *dir, char **ret_err)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		int e = errno;
		errf(ret_err, "Cannot inspect the socket directory '%s': %s", dir, strerror(e));
		return -e;
	}
	if (S_ISLNK(st.st_mode)) {
		errf(ret_err, "Socket directory '%s' is a symbolic link: refusing to serve from it", dir);
		return -EPERM;
	}
	if (!S_ISDIR(st.st_mode)) {
		errf(ret_err, "Socket directory '%s' is not a directory", dir);
		return -ENOTDIR;
	}
	uid_t me = geteuid();
	if ((st.st_uid != me && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		const struct passwd *pw = getpwuid(st.st_uid);
		errf(ret_err,
		     "Refusing to serve from socket directory '%s' (owner %s, uid %u, mode %04o): another "
		     "user can write to it; it must belong to runnerd's user (uid %u) or root and not be "
		     "writable by group or others",
		     dir, pw ? pw->pw_name : "?", (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
		     (unsigned)me);
		return -EPERM;
	}
	return 0;
}

/* Raise the soft RLIMIT_NOFILE to the hard limit (connections, runs and consoles all
 * cost descriptors). The limit in force; *ret_old the one before. */
static unsigned long long nofile_raise(unsigned long long *ret_old)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return *ret_old = 0;
	*ret_old = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return up.rlim_cur;
	}
	return rl.rlim_cur;
}

/* runnerd.conf in the mode's usual place, when there is one: $XDG_CONFIG_HOME/ukrun (else
 * ~/.config/ukrun) for user mode, /etc/ukrun for system mode. */
static char *default_config(int user_mode)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char *p = NULL;
	if (!user_mode)
		p = strdup("/etc/ukrun/runnerd.conf");
	else if (xdg && *xdg && asprintf(&p, "%s/ukrun/runnerd.conf", xdg) < 0)
		p = NULL;
	else if (!(xdg && *xdg) && home && asprintf(&p, "%s/.config/ukrun/runnerd.conf", home) < 0)
		p = NULL;
	if (p && access(p, R_OK) != 0) {
		free(p);
		p = NULL;
	}
	return p;
}

static int parse_args(int argc, char **argv, struct config *c)
{
	enum { O_USER = 256, O_SYSTEM, O_CONFIG };
	static const struct option opts[] = {
		{"user", no_argument, NULL, O_USER},
		{"system", no_argument, NULL, O_SYSTEM},
		{"config", required_argument, NULL, O_CONFIG},
		{"socket", required_argument, NULL, 1},
		{"data-dir", required_argument, NULL, 1},
		{"listen", required_argument, NULL, 1},
		{"token-file", required_argument, NULL, 1},
		{"tls-cert", required_argument, NULL, 1},
		{"tls-key", required_argument, NULL, 1},
		{"idle-timeout", required_argument, NULL, 1},
		{"drain-timeout", required_argument, NULL, 1},
		{"timeout", required_argument, NULL, 1},
		{"max-concurrent", required_argument, NULL, 1},
		{"max-queued", required_argument, NULL, 1},
		{"console-cap", required_argument, NULL, 1},
		{"max-image-size", required_argument, NULL, 1},
		{"console-grace-ms", required_argument, NULL, 1},
		{"loader-idle-ms", required_argument, NULL, 1},
		{"header-timeout", required_argument, NULL, 1},
		{"keepalive-timeout", required_argument, NULL, 1},
		{"max-connections", required_argument, NULL, 1},
		{"log", required_argument, NULL, 1},
		{"log-level", required_argument, NULL, 1},
		{"libvirt-uri", required_argument, NULL, 1},
		{"xen-uri", required_argument, NULL, 1},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	/* Pass 1: mode and config file; the file's values come before the flags'. */
	int idx, o;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "hV", opts, &idx)) != -1) {
		if (o == O_USER)
			c->user_mode = 1;
		else if (o == O_SYSTEM)
			c->user_mode = 0;
		else if (o == O_CONFIG) {
			free(c->config_file);
			c->config_file = strdup(optarg);
		}
	}
	if (!c->config_file)
		c->config_file = default_config(c->user_mode);
	if (c->config_file) {
		int r = config_read(c, c->config_file);
		if (r != 0) {
			fprintf(stderr, "runnerd: %s: %s\n", c->config_file,
			        r < 0 ? "cannot read the file" : "invalid configuration");
			return 2;
		}
	}
	optind = 1;
	opterr = 1;
	while ((o = getopt_long(argc, argv, "hV", opts, &idx)) != -1) {
		switch (o) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("runnerd %s\n", UKRUN_VERSION);
			return 0;
		case 1:
			if (config_apply(c, opts[idx].name, optarg) < 0) {
				fprintf(stderr, "runnerd: bad value for --%s: '%s'\n", opts[idx].name, optarg);
				return 2;
			}
			break;
		case O_USER:
		case O_SYSTEM:
		case O_CONFIG:
			break;
		default:
			fprintf(stderr, "Try 'runnerd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "runnerd: unexpected argument '%s'\nTry 'runnerd --help'.\n", argv[optind]);
		return 2;
	}
	return -1;
}

/* systemd socket activation (sd_listen_fds(3)): when LISTEN_PID is this process and
 * LISTEN_FDS >= 1, fd 3 is the Unix socket to serve. The protocol is two environment
 * variables, so it is read here rather than by linking libsystemd for one call. The
 * variables are removed so guests never see them. */
static int activated_fd(void)
{
	const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
	int fd = pid && n && strtol(pid, NULL, 10) == (long)getpid() && strtol(n, NULL, 10) >= 1 ? 3 : -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return fd;
}

/* What main owns on every path out of it, early refusals included (so the sanitizers
 * report no leak when runnerd refuses to start). */
static void runnerd_cleanup(struct runnerd *d)
{
	config_free(&d->cfg);
	free(d->token);
	d->token = NULL;
	tls_ctx_free(d->tls);
	d->tls = NULL;
}

int main(int argc, char **argv)
{
	struct runnerd d __attribute__((cleanup(runnerd_cleanup))) = {0};
	struct config *c = &d.cfg;
	c->user_mode = 1;
	c->idle_timeout_s = -1;
	c->run_timeout_s = 300;
	c->max_queued = 1000;
	c->console_cap = CONSOLE_DEFAULT_CAP;
	c->max_image_size = 1ull << 30;
	c->console_grace_ms = 2000;
	c->loader_idle_ms = 150;
	c->header_timeout_s = 10;
	c->keepalive_timeout_s = 60;
	c->max_connections = 512;
	c->log_level = LOG_INFO;
	int rc = parse_args(argc, argv, c);
	if (rc >= 0)
		return rc;
	defaults(c);
	if (!c->socket_path || !c->data_dir) {
		fprintf(stderr, "runnerd: out of memory\n");
		return 1;
	}
	int activated = activated_fd();
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	log_set_level(c->log_level);

	unsigned long long nofile_old, nofile = nofile_raise(&nofile_old);
	char *err = NULL;
	char *sockdir = dirname_of(c->socket_path);
	int r = mkdir_p(c->data_dir, 0700);
	if (r == 0 && sockdir)
		r = mkdir_p(sockdir, c->user_mode ? 0700 : 0750);
	if (r < 0) {
		fprintf(stderr, "runnerd: cannot create '%s' or the socket's directory: %s\n", c->data_dir,
		        strerror(-r));
		free(sockdir);
		return 1;
	}
	r = sockdir ? check_socket_dir(sockdir, &err) : -ENOMEM;
	free(sockdir);
	if (r < 0) {
		fprintf(stderr, "runnerd: %s\n", err ? err : "out of memory");
		free(err);
		return 1;
	}
	/* Before anything reads or changes the data directory (lost runs, leftover guests). */
	char *lock_err = NULL;
	int lock_fd = datalock_take(c->data_dir, c->socket_path, &lock_err);
	if (lock_fd < 0) {
		fprintf(stderr, "runnerd: %s\n", lock_err ? lock_err : strerror(-lock_fd));
		free(lock_err);
		return lock_fd == -EWOULDBLOCK ? 3 : 1;
	}
	if (c->log_file && (r = log_open(c->log_file)) < 0) {
		fprintf(stderr, "runnerd: cannot open log '%s': %s\n", c->log_file, strerror(-r));
		return 1;
	}
	if (nofile != nofile_old)
		log_info("file descriptor limit raised from %llu to %llu", nofile_old, nofile);
	unsigned listeners = c->listen_tcp ? 2 : 1;
	if (c->max_connections && (unsigned long long)c->max_connections * listeners + 64 > nofile)
		log_warn("%u connections per listener can use up the %llu file descriptors this process may "
		         "open (RLIMIT_NOFILE): new connections are then closed at once",
		         c->max_connections, nofile);
	if (c->listen_tcp) {
		if (!c->token_file) {
			fprintf(stderr, "runnerd: --listen needs --token-file (TCP clients must authenticate)\n");
			return 2;
		}
		d.token = read_token(c->token_file, &err);
		if (!d.token) {
			fprintf(stderr, "runnerd: %s\n", err ? err : "cannot read the token");
			return 1;
		}
		if (strncmp(c->listen_tcp, "tls://", 6) == 0) {
			if (!c->tls_cert || !c->tls_key) {
				fprintf(stderr, "runnerd: --listen tls://... needs --tls-cert FILE and --tls-key FILE\n");
				return 2;
			}
			d.tls = tls_ctx_new(c->tls_cert, c->tls_key, &err);
			if (!d.tls) {
				fprintf(stderr, "runnerd: %s\n", err ? err : "cannot set up TLS");
				free(err);
				return 1;
			}
		}
	}
	if ((c->tls_cert || c->tls_key) && !d.tls) {
		fprintf(stderr, "runnerd: --tls-cert and --tls-key need --listen tls://HOST:PORT\n");
		return 2;
	}

	d.loop = uv_default_loop();
	char *dbpath = path_join(c->data_dir, "runnerd.db");
	char *runs_dir = path_join(c->data_dir, "runs");
	r = store_open(dbpath, &d.db, &err);
	if (r < 0) {
		log_error("%s", err ? err : "cannot open the database");
		fprintf(stderr, "runnerd: %s\n", err ? err : "cannot open the database");
		return 1;
	}
	r = image_store_init(&d.images, c->data_dir, c->max_image_size, d.db);
	/* The local host's driver options (struct drv_host): each driver reads its own. */
	char opt_libvirt[4200], opt_xen[4200];
	char *local_options[3] = {NULL, NULL, NULL};
	size_t nopt = 0;
	if (c->libvirt_uri) {
		snprintf(opt_libvirt, sizeof(opt_libvirt), "libvirt-uri=%s", c->libvirt_uri);
		local_options[nopt++] = opt_libvirt;
	}
	if (c->xen_uri) {
		snprintf(opt_xen, sizeof(opt_xen), "xen-uri=%s", c->xen_uri);
		local_options[nopt++] = opt_xen;
	}
	/* What no sandbox may see even under a bind: runnerd's data and its socket. */
	char *hidden[3] = {c->data_dir, c->socket_path, NULL};
	struct run_host_config hosts[CONFIG_MAX_HOSTS];
	for (size_t i = 0; i < c->nhosts; i++)
		hosts[i] = (struct run_host_config){
			.name = c->hosts[i].name,
			.uri = c->hosts[i].uri,
			.capacity = c->hosts[i].capacity,
			.memory_mb = c->hosts[i].memory_mb,
			.image_quota_mb = c->hosts[i].image_quota_mb,
			.labels = c->hosts[i].labels,
		};
	struct run_config rcfg = {
		.runs_dir = runs_dir,
		.default_timeout_s = c->run_timeout_s,
		.max_timeout_s = 7 * 86400,
		.max_concurrent = c->max_concurrent,
		.max_queued = c->max_queued,
		.console_cap = c->console_cap,
		.console_grace_ms = c->console_grace_ms,
		.loader_idle_ms = c->loader_idle_ms,
		.local_options = local_options,
		.hidden = hidden,
		.hosts = hosts,
		.nhosts = c->nhosts,
	};
	if (r == 0)
		r = run_manager_init(&d.runs, d.loop, d.db, &d.images, &rcfg);
	if (r < 0) {
		log_error("cannot set up '%s': %s", c->data_dir, strerror(-r));
		fprintf(stderr, "runnerd: cannot set up '%s': %s\n", c->data_dir, strerror(-r));
		return 1;
	}
	d.api = (struct api){
		.runs = &d.runs,
		.images = &d.images,
		.db = d.db,
		.token = d.token,
		.remote_binds = (int)c->remote_binds,
		.loop = d.loop,
		.last_request_ms = uv_now(d.loop),
	};
	struct http_handler handler;
	api_handler(&d.api, &handler);
	struct server_limits limits = {
		.http = {
			.header_timeout_ms = (uint64_t)c->header_timeout_s * 1000,
			.idle_timeout_ms = (uint64_t)c->keepalive_timeout_s * 1000,
		},
		.max_conns = c->max_connections,
	};
	r = server_init(&d.srv, d.loop, &handler, &limits);
	if (r < 0)
		errf(&err, "Cannot reserve a spare file descriptor: %s", strerror(-r));
	if (r == 0)
		r = activated >= 0 ? server_listen_unix_fd(&d.srv, activated, &err)
		                   : server_listen_unix(&d.srv, c->socket_path, c->user_mode ? 0600 : 0660, &err);
	if (r == 0 && c->listen_tcp)
		r = server_listen_tcp(&d.srv, c->listen_tcp, d.tls, &err);
	if (r < 0) {
		log_error("%s", err ? err : "cannot listen");
		fprintf(stderr, "runnerd: %s\n", err ? err : "cannot listen");
		return r == UV_EADDRINUSE ? 3 : 1;
	}
	uv_signal_init(d.loop, &d.sigint);
	uv_signal_init(d.loop, &d.sigterm);
	uv_signal_init(d.loop, &d.sighup);
	d.sigint.data = d.sigterm.data = d.sighup.data = &d;
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sighup, on_signal, SIGHUP);
	uv_timer_init(d.loop, &d.tick);
	d.tick.data = &d;
	uv_timer_start(&d.tick, on_tick, 1000, 1000);
	log_info("runnerd %s ready (%s mode, data %s, idle timeout %lds; connections: header timeout %us, "
	         "keep-alive %us, at most %u per listener, %llu file descriptors)",
	         UKRUN_VERSION, c->user_mode ? "user" : "system", c->data_dir, c->idle_timeout_s,
	         c->header_timeout_s, c->keepalive_timeout_s, c->max_connections, nofile);

	uv_run(d.loop, UV_RUN_DEFAULT);

	run_manager_fini(&d.runs);
	image_store_fini(&d.images);
	store_close(d.db);
	uv_loop_close(d.loop);
	log_info("runnerd stopped");
	free(dbpath);
	free(runs_dir);
	free(err);
	close(lock_fd);
	return 0;
}
