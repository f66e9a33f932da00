/*
 * main.c — runnerd: arguments, configuration (flags > runnerd.conf > defaults),
 * directories, signals, idle exit, and the one libuv loop.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "config.h"
#include "console.h"
#include "image.h"
#include "log.h"
#include "run.h"
#include "server.h"
#include "store.h"

/* The daemon's single context. */
struct runnerd {
	struct config cfg;
	uv_loop_t *loop;
	struct store *db;
	struct image_store images;
	struct run_manager runs;
	struct api api;
	struct server srv;
	uv_signal_t sigint, sigterm;
	uv_timer_t tick;
	char *token;
	int stopping;
};

static void usage(FILE *f)
{
	fputs("Usage: runnerd [OPTIONS]\n"
	      "The ukrun daemon: runs unikernel images on qemu/linuxu and records every run.\n\n"
	      "  --user                 per-user daemon (default): XDG paths, exits when idle\n"
	      "  --system               system daemon: /run/ukrun/runnerd.sock (0660), /var/lib/ukrun\n"
	      "  --socket PATH          Unix socket to serve\n"
	      "  --data-dir DIR         database, images and console logs\n"
	      "  --listen tcp://H:P     also serve TCP (needs --token-file; never all addresses by default)\n"
	      "  --token-file FILE      bearer token for TCP clients\n"
	      "  --config FILE          runnerd.conf (key = value; keys as the long options; default\n"
	      "                         ~/.config/ukrun/runnerd.conf, system: /etc/ukrun/runnerd.conf)\n"
	      "  --idle-timeout S       exit after S idle seconds (user default 600; 0 = never)\n"
	      "  --timeout S            default run timeout (300)\n"
	      "  --max-concurrent N     runs at once (default: number of CPUs)\n"
	      "  --max-queued N         waiting runs before 503 (1000)\n"
	      "  --console-cap BYTES    console bytes kept per run (16 MiB)\n"
	      "  --max-image-size BYTES largest accepted image (1 GiB)\n"
	      "  --console-grace-ms MS  loader mode: silence after libtest's summary that ends a run (2000)\n"
	      "  --log FILE             log file (user mode default: DATA_DIR/runnerd.log)\n"
	      "  --log-level LEVEL      error, warn, info (default), debug\n"
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

static int mkdir_parents(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static char *dirname_of(const char *path)
{
	char *d = strdup(path);
	char *slash = d ? strrchr(d, '/') : NULL;
	if (slash && slash != d)
		*slash = '\0';
	return d;
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

static void begin_stop(struct runnerd *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("stopping: %s", why);
	server_close(&d->srv);
	run_manager_stop(&d->runs);
	/* on_tick finishes once every run has recorded its end. */
	uv_timer_start(&d->tick, on_tick, 0, 50);
}

static void on_tick(uv_timer_t *t)
{
	struct runnerd *d = t->data;
	uint64_t now = uv_now(d->loop);
	if (d->stopping) {
		if (run_manager_active(&d->runs) == 0) {
			uv_timer_stop(t);
			server_close_connections(&d->srv);
			uv_walk(d->loop, tick_close_all, NULL);
		}
		return;
	}
	if (d->cfg.idle_timeout_s > 0 && run_manager_active(&d->runs) == 0 &&
	    now - d->api.last_request_ms >= (uint64_t)d->cfg.idle_timeout_s * 1000)
		begin_stop(d, "idle timeout");
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct runnerd *d = s->data;
	begin_stop(d, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static char *read_token(const char *path, char **ret_err)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		if (asprintf(ret_err, "Cannot read token file '%s': %s", path, strerror(errno)) < 0)
			*ret_err = NULL;
		return NULL;
	}
	char buf[512] = "";
	char *ok = fgets(buf, sizeof(buf), f);
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!ok || strlen(buf) < 16) {
		if (asprintf(ret_err, "Token in '%s' must be at least 16 characters", path) < 0)
			*ret_err = NULL;
		return NULL;
	}
	return strdup(buf);
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
		{"idle-timeout", required_argument, NULL, 1},
		{"timeout", required_argument, NULL, 1},
		{"max-concurrent", required_argument, NULL, 1},
		{"max-queued", required_argument, NULL, 1},
		{"console-cap", required_argument, NULL, 1},
		{"max-image-size", required_argument, NULL, 1},
		{"console-grace-ms", required_argument, NULL, 1},
		{"log", required_argument, NULL, 1},
		{"log-level", required_argument, NULL, 1},
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

int main(int argc, char **argv)
{
	struct runnerd d = {0};
	struct config *c = &d.cfg;
	c->user_mode = 1;
	c->idle_timeout_s = -1;
	c->run_timeout_s = 300;
	c->max_queued = 1000;
	c->console_cap = CONSOLE_DEFAULT_CAP;
	c->max_image_size = 1ull << 30;
	c->console_grace_ms = 2000;
	c->log_level = LOG_INFO;
	int rc = parse_args(argc, argv, c);
	if (rc >= 0)
		return rc;
	defaults(c);
	if (!c->socket_path || !c->data_dir) {
		fprintf(stderr, "runnerd: out of memory\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	log_set_level(c->log_level);

	char *sockdir = dirname_of(c->socket_path);
	int r = mkdir_parents(c->data_dir, 0700);
	if (r == 0 && sockdir)
		r = mkdir_parents(sockdir, c->user_mode ? 0700 : 0750);
	free(sockdir);
	if (r < 0) {
		fprintf(stderr, "runnerd: cannot create '%s' or the socket's directory: %s\n", c->data_dir,
		        strerror(-r));
		return 1;
	}
	if (c->log_file && (r = log_open(c->log_file)) < 0) {
		fprintf(stderr, "runnerd: cannot open log '%s': %s\n", c->log_file, strerror(-r));
		return 1;
	}
	char *err = NULL;
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
	struct run_config rcfg = {
		.runs_dir = runs_dir,
		.default_timeout_s = c->run_timeout_s,
		.max_timeout_s = 7 * 86400,
		.max_concurrent = c->max_concurrent,
		.max_queued = c->max_queued,
		.console_cap = c->console_cap,
		.console_grace_ms = c->console_grace_ms,
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
		.loop = d.loop,
		.last_request_ms = uv_now(d.loop),
	};
	struct http_handler handler;
	api_handler(&d.api, &handler);
	r = server_listen_unix(&d.srv, d.loop, c->socket_path, c->user_mode ? 0600 : 0660, &handler, &err);
	if (r == 0 && c->listen_tcp)
		r = server_listen_tcp(&d.srv, c->listen_tcp, &err);
	if (r < 0) {
		log_error("%s", err ? err : "cannot listen");
		fprintf(stderr, "runnerd: %s\n", err ? err : "cannot listen");
		return r == UV_EADDRINUSE ? 3 : 1;
	}
	uv_signal_init(d.loop, &d.sigint);
	uv_signal_init(d.loop, &d.sigterm);
	d.sigint.data = d.sigterm.data = &d;
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_timer_init(d.loop, &d.tick);
	d.tick.data = &d;
	uv_timer_start(&d.tick, on_tick, 1000, 1000);
	log_info("runnerd %s ready (%s mode, data %s, idle timeout %lds)", UKRUN_VERSION,
	         c->user_mode ? "user" : "system", c->data_dir, c->idle_timeout_s);

	uv_run(d.loop, UV_RUN_DEFAULT);

	run_manager_fini(&d.runs);
	image_store_fini(&d.images);
	store_close(d.db);
	uv_loop_close(d.loop);
	log_info("runnerd stopped");
	free(dbpath);
	free(runs_dir);
	free(d.token);
	free(err);
	config_free(c);
	return 0;
}
