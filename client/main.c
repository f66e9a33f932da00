/*
 * ukrun — run a unikernel (or a Linux test binary) through runnerd, as a
 * cargo runner: console on stdout byte-exact, diagnostics on stderr, the
 * guest's verdict as exit status. Subcommands inspect and control runs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autospawn.h"
#include "cmds.h"
#include "httpc.h"
#include "opts.h"
#include "runner.h"

/* Set by SIGINT/SIGTERM; transfers and waits poll it. The one global: a signal handler needs it. */
static volatile sig_atomic_t interrupted;

static const char help_text[] =
	"Usage: ukrun [OPTIONS] IMAGE [ARGS...]\n"
	"       ukrun SUBCOMMAND [--json] [ARGS...]\n"
	"\n"
	"Run IMAGE (a Unikraft kernel or a Linux x86-64 program) through runnerd and\n"
	"exit with the guest's status. The console goes to stdout byte-exact; ukrun's\n"
	"own messages go to stderr. Options come before IMAGE (or before `--`);\n"
	"everything after IMAGE is passed to the guest unchanged.\n"
	"A Linux program on linuxu runs as natively as it can: its stdout on stdout,\n"
	"its stderr on stderr, ukrun's stdin forwarded unless it is a terminal or\n"
	"/dev/null, started in the working directory, which it sees read-only along\n"
	"with the package directory ($CARGO_MANIFEST_DIR). A qemu guest has one\n"
	"console (stdout) and no stdin.\n"
	"\n"
	"Options:\n"
	"  --platform qemu|linuxu  platform to run on (default: detected from the image)\n"
	"  --timeout S             kill the guest after S seconds (also Nm, Nh; default:\n"
	"                          the daemon's, 300 s)\n"
	"  --memory MB             guest memory in MiB (also NG; at most 65536 MiB)\n"
	"  --vcpus N               virtual CPUs (1..64)\n"
	"  --accel auto|kvm|tcg    qemu accelerator (auto: KVM when usable, else TCG)\n"
	"  --machine M             qemu machine type (microvm, pc, q35, ...)\n"
	"  --driver NAME           run on this driver (qemu, linuxu, libvirt); default from the platform\n"
	"  --host NAME             run on this host only: local or a farm host (`ukrun hosts`); default: any that fits\n"
	"  --require LABEL         only on a host with this label (repeatable), e.g. kvm\n"
	"  --priority N            queue order, -1000..1000 (higher first; default 0)\n"
	"  --retries N             run again elsewhere if its host is lost mid-run (0..3; default 0)\n"
	"  --success-code V        treat isa-debug-exit value V as success (exit 0)\n"
	"  --uk-param P            Unikraft library parameter, placed before `--` on the\n"
	"                          kernel command line (repeatable)\n"
	"  --env NAME[=VALUE]      put NAME in the program's environment (repeatable;\n"
	"                          RUST_BACKTRACE, CARGO_*, NEXTEST* ... always pass)\n"
	"  --bind DIR              show DIR to a linuxu program, read-only, at the same\n"
	"                          path (repeatable; refused over TCP by default)\n"
	"  --no-bind               do not show the working and package directories\n"
	"  --console raw|app       stdout: the console byte-exact (raw, default) or the\n"
	"                          program's lines only (app; default for --list)\n"
	"  --label k=v             label the run (repeatable)\n"
	"  --loader KERNEL         loader mode: IMAGE is a static-pie Linux program run\n"
	"                          inside the Unikraft elfloader kernel KERNEL\n"
	"  --junit FILE            after the run, write its tests to FILE as JUnit XML\n"
	"  --socket PATH           runnerd's Unix socket\n"
	"  --cacert FILE           CA certificates (PEM) for an https $UKRUN_URL\n"
	"  -q, --quiet             no notes on stderr (the default under cargo and nextest)\n"
	"  -v, --verbose           progress on stderr (digests, uploads, run id)\n"
	"  -h, --help              this help\n"
	"  -V, --version           ukrun's version\n"
	"\n"
	"Subcommands (only as the first argument; run a file named like one as ./ps;\n"
	"`ukrun SUBCOMMAND --help` shows its options; --json prints the daemon's records):\n"
	"%s"
	"\n"
	"Examples:\n"
	"  ukrun ./hello_qemu-x86_64                  run a Unikraft kernel\n"
	"  ukrun --memory 256 --timeout 2m ./app      with more memory and a shorter timeout\n"
	"  ukrun --loader elfloader_qemu-x86_64 ./t   a static-pie Linux program in loader mode\n"
	"  ukrun ps --state error -n 5                the last five failed runs\n"
	"  ukrun ps --label GITHUB_SHA=abc123 --json  runs of one CI commit, as JSON\n"
	"  ukrun logs -f 42                           follow run 42's console\n"
	"  ukrun logs --stderr 42                     run 42's stderr alone (linuxu)\n"
	"  echo hi | ukrun ./cat                      stdin reaches a linuxu program\n"
	"  ukrun --bind ../shared ./test-binary       another directory, read-only\n"
	"  ukrun rm ./old_image                       forget a stored image\n"
	"  ukrun daemon stop                          stop the per-user runnerd\n"
	"\n"
	"Exit status:\n"
	"  c        a linuxu process exited with code c\n"
	"  128+s    a linuxu process was killed by signal s\n"
	"  v        a qemu guest wrote v to isa-debug-exit (0 with --success-code v)\n"
	"  0        clean power-off or Unikraft halt with no failure on the console\n"
	"  101      the console shows a Rust panic, `test result: FAILED` or a failed\n"
	"           uktest case\n"
	"  124      timeout\n"
	"  125      ukrun or runnerd failed (daemon unreachable, driver error)\n"
	"  126      IMAGE is not runnable (missing, not a kernel or Linux ELF)\n"
	"  130      interrupted or cancelled\n"
	"  134      the guest crashed (triple fault, Unikraft crash, panic device)\n"
	"  2        usage error\n"
	"  Guest values outside 0..255 become 1; 141 when stdout closes early (the run\n"
	"  is cancelled).\n"
	"  Subcommands exit 0, 1 when runnerd refuses (no such run, image in use), 2 on\n"
	"  a usage error, 125 when runnerd is unreachable; `daemon status` exits 3 when\n"
	"  it is not running.\n"
	"\n"
	"Environment:\n"
	"  UKRUN_SOCKET     runnerd socket (default $XDG_RUNTIME_DIR/ukrun/runnerd.sock,\n"
	"                   else /tmp/ukrun-$UID/runnerd.sock)\n"
	"  UKRUN_URL        talk to runnerd over TCP or TLS (http://HOST:PORT or\n"
	"                   https://HOST:PORT; no auto-start)\n"
	"  UKRUN_TOKEN      bearer token for UKRUN_URL\n"
	"  UKRUN_CA_FILE    CA certificates (PEM) for an https UKRUN_URL (like --cacert)\n"
	"  UKRUN_PLATFORM   default for --platform\n"
	"  UKRUN_TIMEOUT    default for --timeout\n"
	"  UKRUN_MEMORY     default for --memory\n"
	"  UKRUN_LABELS     labels for every run: k=v[,k=v...] (--label wins on a clash)\n"
	"  GITHUB_SHA GITHUB_RUN_ID GITHUB_REPOSITORY CI_JOB_ID CI_COMMIT_SHA\n"
	"  CI_PIPELINE_ID BUILDKITE_BUILD_ID\n"
	"                   recorded as labels of the same name when set (CI metadata)\n"
	"  NO_COLOR         no colour in tables (colour is used only on a terminal)\n"
	"  UKRUN_LOADER     default for --loader (loader mode when set and non-empty)\n"
	"  UKRUN_ENV        more --env words, blank-separated\n"
	"  UKRUN_RUNNERD    runnerd executable to start when none is running\n"
	"  UKRUN_DATA_DIR   --data-dir for a runnerd that ukrun starts\n"
	"\n"
	"When no runnerd answers on the socket, ukrun starts `runnerd --user` in the\n"
	"background; it exits by itself after a while without work.\n"
	"\n"
	"Cargo: in .cargo/config.toml\n"
	"  [target.x86_64-unikraft-linux-musl]\n"
	"  runner = \"ukrun\"\n"
	"then `cargo test` and `cargo run` run every binary through ukrun.\n"
	"\n"
	"See ukrun(1).\n";

static void print_help(void)
{
	char *list = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&list, &len);

	if (m) {
		cmds_help(m);
		fclose(m);
	}
	printf(help_text, list ? list : "");
	free(list);
}

/* argv[1] is a bare word (no '/', not an option) that names no file: a mistyped subcommand, not an image. */
static bool not_a_file_or_subcommand(const char *word)
{
	struct stat st;

	return word[0] != '-' && word[0] && !strchr(word, '/') && stat(word, &st) != 0 && errno == ENOENT;
}

static void on_signal(int sig)
{
	interrupted = 1;
}

/* SA_RESETHAND: a second Ctrl-C while ukrun cancels the run kills ukrun at once. */
static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESETHAND };
	struct sigaction ign = { .sa_handler = SIG_IGN };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A closed stdout shows up as EPIPE from write(2), so the run can be cancelled. */
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, NULL);
}

static int run_main(int argc, char **argv)
{
	struct opts o;
	struct httpc h;
	char err[OPTS_ERR_MAX];
	int r, status;

	r = opts_parse(&o, argc, argv, err, sizeof(err));
	if (r == 0)
		r = opts_apply_env(&o, err, sizeof(err));
	if (r < 0) {
		opts_free(&o);
		if (r == -ENOMEM) {
			fprintf(stderr, "ukrun: out of memory\n");
			return UKRUN_EXIT_INFRA;
		}
		fprintf(stderr, "ukrun: %s\nTry 'ukrun --help' for more information.\n", err);
		return UKRUN_EXIT_USAGE;
	}
	if (o.help) {
		print_help();
		opts_free(&o);
		return 0;
	}
	if (o.version) {
		printf("ukrun %s\n", UKRUN_VERSION);
		opts_free(&o);
		return 0;
	}
	r = autospawn_connect(&h, o.socket, o.cacert, true, o.verbosity >= OPTS_VERBOSE, &interrupted);
	if (r < 0)
		status = r == -EINTR ? UKRUN_EXIT_CANCELLED : UKRUN_EXIT_INFRA;
	else
		status = runner_run(&h, &o);
	httpc_free(&h);
	opts_free(&o);
	return status;
}

int main(int argc, char **argv)
{
	int status;

	install_signals();
	if (argc > 1 && cmds_is(argv[1])) {
		status = cmds_main(argc - 1, argv + 1, &interrupted);
	} else if (argc > 1 && not_a_file_or_subcommand(argv[1])) {
		const char *near = cmds_suggest(argv[1]);

		fprintf(stderr, "ukrun: '%.64s' is not a subcommand or a file%s%s%s\n"
				"Try 'ukrun --help' for more information.\n",
			argv[1], near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
		status = UKRUN_EXIT_USAGE;
	} else {
		status = run_main(argc, argv);
	}
	return status;
}
