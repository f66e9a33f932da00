/*
 * opts.h — the ukrun command line and what it turns into.
 *
 * `ukrun [OPTIONS] IMAGE [ARGS...]`: options only before IMAGE (or `--`),
 * everything after IMAGE reaches the guest verbatim, because cargo calls
 * `RUNNER BINARY ARGS...` and the test binary's own flags (--nocapture, a
 * filter) must not be eaten by ukrun. Environment defaults ($UKRUN_PLATFORM,
 * $UKRUN_TIMEOUT, $UKRUN_LOADER) apply only where no option was given.
 *
 * Pure apart from getenv/getcwd/getuid, so the unit tests drive it directly.
 */
#ifndef UKRUN_CLIENT_OPTS_H
#define UKRUN_CLIENT_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* Exit statuses of ukrun itself (DESIGN §4); guest statuses pass through. */
#define UKRUN_EXIT_USAGE 2       /* bad command line */
#define UKRUN_EXIT_TIMEOUT 124   /* the run hit its timeout, as timeout(1) */
#define UKRUN_EXIT_INFRA 125     /* daemon unreachable, driver failed, HTTP error */
#define UKRUN_EXIT_NOTRUN 126    /* image not runnable */
#define UKRUN_EXIT_CANCELLED 130 /* interrupted / cancelled */

/* Size of an error message buffer for the parsers below. */
#define OPTS_ERR_MAX 256

/* Verbosity levels. */
#define OPTS_QUIET (-1)  /* -q: no notes */
#define OPTS_NORMAL 0
#define OPTS_VERBOSE 1   /* -v: progress on stderr */

/* --console: what ukrun's stdout carries. */
#define OPTS_CONSOLE_AUTO 0 /* app for a list request (`--list` among the arguments), else raw */
#define OPTS_CONSOLE_RAW 1  /* the console byte-exact */
#define OPTS_CONSOLE_APP 2  /* the program's lines only: LF line ends, no Unikraft banner or kernel log */

/* Variables of the caller's environment that reach the program without --env
 * (cargo's and libtest's): exact names, then prefixes ending in '*'. */
#define OPTS_FORWARD_ENV                                                                            \
	"RUST_BACKTRACE", "RUST_LIB_BACKTRACE", "RUST_TEST_THREADS", "RUST_TEST_NOCAPTURE", "RUST_MIN_STACK", \
		"RUSTC_BOOTSTRAP", "CARGO_*", "NEXTEST*"

struct opts {
	const char *platform;    /* "qemu" | "linuxu"; NULL = the daemon detects */
	long timeout_s;          /* -1 = daemon default */
	long memory_mb;          /* 0 = driver default */
	long vcpus;              /* 0 = driver default */
	const char *accel;       /* "auto" | "kvm" | "tcg"; NULL = default */
	const char *machine;     /* qemu machine type; NULL = default */
	const char *driver;      /* driver by name ("libvirt"); NULL = the platform's default */
	const char *host;        /* host by name ("local"); NULL = the daemon's choice */
	const char **require;    /* --require LABEL: host labels the run needs (borrowed) */
	size_t nrequire;
	long priority;           /* --priority: higher first (0) */
	long retries;            /* --retries: attempts again after a lost host (0) */
	long success_code;       /* debug-exit value meaning success; -1 = none */
	const char **uk_params;  /* Unikraft library parameters (borrowed strings) */
	size_t nuk_params;
	const char **labels;     /* "key=value" (borrowed strings, validated) */
	size_t nlabels;
	char **env_labels;       /* "key=value" from $UKRUN_LABELS and CI variables (owned) */
	size_t nenv_labels;
	const char **envs;       /* --env NAME=value or NAME (borrowed strings, validated) */
	size_t nenvs;
	const char *env_list;    /* $UKRUN_ENV: the same words, blank-separated (borrowed) */
	const char **binds;      /* --bind DIR (borrowed strings) */
	size_t nbinds;
	bool no_bind;            /* --no-bind: not the package directory by default */
	bool remote;             /* runnerd is reached over TCP/TLS: no default bind (set by the caller) */
	bool want_stdin;         /* the program's stdin is forwarded (set by the caller) */
	int console;             /* OPTS_CONSOLE_* */
	const char *loader;      /* loader mode: the elfloader kernel; NULL = off */
	const char *socket;      /* --socket; NULL = resolved from the environment */
	const char *junit;       /* --junit FILE: the run's tests as JUnit XML after it ends; NULL = none */
	const char *cacert;      /* --cacert: CA file for an https $UKRUN_URL; NULL = $UKRUN_CA_FILE */
	int verbosity;           /* OPTS_QUIET / OPTS_NORMAL / OPTS_VERBOSE */
	bool help;
	bool version;
	const char *image;       /* IMAGE; NULL only with help/version */
	char **args;             /* guest arguments: the argv tail after IMAGE (borrowed) */
	size_t nargs;
	/* Which fields came from the command line (so the environment does not override them). */
	bool set_platform, set_timeout, set_loader, set_verbosity;
};

/* Parse argv[1..argc-1] into *o (zeroed first; strings borrowed from argv).
 * Returns 0, -EINVAL with a one-line message in err for a usage error, or
 * -ENOMEM. Free with opts_free() in every case. */
int opts_parse(struct opts *o, int argc, char **argv, char *err, size_t errlen);

/* Apply $UKRUN_PLATFORM, $UKRUN_TIMEOUT, $UKRUN_LOADER, $UKRUN_MEMORY (set and
 * non-empty) where the command line gave nothing; quiet under cargo ($CARGO) or
 * nextest ($NEXTEST) unless -q/-v was given; labels from $UKRUN_LABELS and the
 * CI variables (GITHUB_SHA, ...). Returns 0, -EINVAL (message in err) or -ENOMEM. */
int opts_apply_env(struct opts *o, char *err, size_t errlen);

/* Release what opts_parse allocated; the struct may be reused after. */
void opts_free(struct opts *o);

/* Parse a duration "N", "Ns", "Nm" or "Nh" into seconds (1 s .. 7 days).
 * Returns 0 or -EINVAL. */
int opts_parse_duration(const char *s, long *ret_s);

/* Parse a size in MiB: "N", "NM" or "NG" (1 MiB .. 1 TiB). Returns 0 or -EINVAL. */
int opts_parse_mib(const char *s, long *ret_mib);

/* Check a label "key=value": non-empty key of [A-Za-z0-9._/-], value of
 * printable characters, both bounded. Returns 0 or -EINVAL. */
int opts_check_label(const char *kv);

/* The body of POST /v1/runs for this command line: `image_sha` (the program
 * in loader mode), its file `name`, `loader_sha` (NULL unless loader mode).
 * Only options that were given appear. Returns a new reference or NULL (ENOMEM). */
json_t *opts_run_spec(const struct opts *o, const char *image_sha, const char *name, const char *loader_sha);

/* Is NAME=value (or NAME alone when `bare` is allowed) a valid --env word?
 * NAME is [A-Za-z_][A-Za-z0-9_-]* of at most 128 bytes ('-': cargo's CARGO_BIN_EXE_my-tool). Returns 0 or -EINVAL. */
int opts_check_env(const char *word, bool bare);

/* The "binds" array of the run: the package directory ($CARGO_MANIFEST_DIR, else the
 * working directory) unless --no-bind or `remote`, then every --bind made absolute;
 * duplicates dropped. Returns a new reference (maybe empty) or NULL (ENOMEM). */
json_t *opts_binds(const struct opts *o);

/* Does this command line get the app view of the console? */
bool opts_console_app(const struct opts *o);

/* The "env" object of the run: --env words first, then $UKRUN_ENV's, then the
 * forwarded variables of `envp` (OPTS_FORWARD_ENV); the first occurrence of a
 * name wins. NAME alone takes its value from `envp` (skipped when unset).
 * Returns a new reference (maybe empty) or NULL (ENOMEM). */
json_t *opts_env_object(const struct opts *o, char *const *envp);

/* The daemon's Unix socket: `explicit_path` (--socket), else $UKRUN_SOCKET,
 * else $XDG_RUNTIME_DIR/ukrun/runnerd.sock, else /tmp/ukrun-$UID/runnerd.sock;
 * made absolute against the working directory (the daemon runs in /).
 * Returns 0, -ENAMETOOLONG when it does not fit `len` or sockaddr_un, or -errno. */
int opts_socket_path(const char *explicit_path, char *buf, size_t len);

#endif
