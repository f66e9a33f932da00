/*
 * qemu.c — the qemu driver: multiboot kernels (Unikraft, bootimage-style,
 * elfloader + Linux program) under qemu-system-x86_64.
 *
 * One launch may run QEMU twice: under KVM first and, when the (software) KVM
 * of the host cannot emulate the guest, again under TCG (DESIGN §8). Each run
 * of QEMU is an `attempt` owning its process and pipes; the instance owns the
 * callbacks and the console accounting across attempts. Probing the host
 * lives in qemu_probe.c.
 */
#include "qemu_int.h"
#include "procbusy.h"
#include "tailbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QEMU_ERRTAIL 8192         /* last bytes of QEMU's stderr kept for messages */
#define QEMU_PREFIX_MAX (64 * 1024) /* KVM-attempt console kept to compare with the TCG rerun */
/* After a console read shorter than this, reading pauses QEMU_GATHER_MS: QEMU writes the
 * UART's bytes a few at a time, and a reader that wakes for each write slows the guest
 * (docs/performance.md, "Console throughput"). */
#define QEMU_GATHER_BELOW 4096
#define QEMU_GATHER_MS 1
#define QEMU_QMP_TIMEOUT_MS 15000
#define HWRNG_TEXT "Could not initialize the HWRNG"

struct attempt {
	struct drv_instance *inst; /* NULL once detached (superseded or destroyed) */
	uv_poll_t proc; /* QEMU's pidfd: readable once it has exited */
	pid_t pid;
	int pidfd;
	uv_pipe_t out, err;
	uv_timer_t gather; /* the pause after a short console read */
	int throttled;     /* the core stopped the console (qemu_throttle) */
	int handles; /* libuv handles not yet closed */
	int kvm;
	int exited, out_eof, err_eof, qmp_done, done;
	int64_t status;
	int signal;
	int handshake;
	int kvm_failed;
	int qmp_error; /* QMP failed before the handshake */
	enum qmp_guest_event ev;
	struct qmp *qmp;
	uint64_t bytes; /* console bytes produced by this attempt */
	char errtail[QEMU_ERRTAIL];
	size_t errlen;
	char rbuf[65536];
};

struct drv_instance {
	struct qemu_state *st;      /* driver state: records a KVM failure for later runs */
	const struct drv_spec *spec;
	char *qmp_path, *pid_path;
	struct cmd *cmd; /* command of the next/current attempt */
	int kvm;
	uv_loop_t *loop;
	struct drv_callbacks cb;
	struct attempt *cur;
	int killed, reported, started_sent, hint_sent, mismatch_noted;
	uint64_t delivered; /* console bytes handed to cb->console */
	uint64_t skip;      /* bytes of the current attempt already delivered by the KVM attempt */
	char *prefix;       /* first bytes delivered by the KVM attempt */
	size_t prefix_len;
	size_t hint_match;
};

/* ---- pure parts (unit-tested) ---- */

int qemu_kvm_failure(const char *text, size_t len)
{
	static const char *const needles[] = {"KVM internal error", "emulation failure"};
	for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
		if (memmem(text, len, needles[i], strlen(needles[i])))
			return 1;
	return 0;
}

int qemu_kernel_refused(const char *text, size_t len)
{
	static const char *const needles[] = {
		"Error loading uncompressed kernel without PVH ELF Note", /* ELF: no multiboot v1, no PVH */
		"Error while loading elf kernel",
		"Cannot load x86-64 image, give a 32bit one", /* multiboot v1 header in an ELF64 */
		"qemu: invalid kernel header",                /* neither ELF nor Linux bzImage */
	};
	for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
		if (memmem(text, len, needles[i], strlen(needles[i])))
			return 1;
	return 0;
}

void qemu_classify_end(const struct qemu_end_facts *f, struct drv_outcome *ret_out)
{
	*ret_out = (struct drv_outcome){.end = DRV_END_ERROR};
	if (f->killed) {
		ret_out->end = DRV_END_KILLED;
	} else if (f->signal) {
		ret_out->end = DRV_END_ERROR;
		ret_out->value = f->signal;
	} else if (f->ev == QMP_EV_PANIC) {
		ret_out->end = DRV_END_PANIC;
	} else if (f->handshake && (f->status & 1)) {
		/* isa-debug-exit: QEMU exits (v << 1) | 1. A QEMU that failed to start
		 * (status 1 too) never completed the QMP handshake. */
		ret_out->end = DRV_END_DEBUG_EXIT;
		ret_out->value = f->status >> 1;
	} else if (f->ev == QMP_EV_RESET) {
		ret_out->end = DRV_END_RESET;
	} else if (f->ev == QMP_EV_POWEROFF) {
		ret_out->end = DRV_END_POWEROFF;
	} else {
		ret_out->value = f->status;
	}
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v';
}

/* Quote one word for Unikraft's uk_argnparse: ' and " toggle quoting (the other
 * kind is literal inside), no backslash escapes, adjacent pieces join. */
static int uk_quote(FILE *f, const char *arg)
{
	if (!*arg)
		return -EINVAL; /* the parser drops empty words: cannot be carried */
	const char *p = arg;
	while (*p) {
		if (*p == '"' || *p == '\'') {
			fprintf(f, *p == '"' ? "'\"'" : "\"'\"");
			p++;
			continue;
		}
		size_t n = strcspn(p, "\"'");
		int ws = 0;
		for (size_t i = 0; i < n; i++)
			ws |= is_space(p[i]);
		fprintf(f, ws ? "\"%.*s\"" : "%.*s", (int)n, p);
		p += n;
	}
	return 0;
}

/* One word that must stay one word (an env.vars item): in double quotes when it
 * has no '"' of its own, else uk_quote's pieces. */
static int uk_quote_word(FILE *f, const char *arg)
{
	if (strchr(arg, '"'))
		return uk_quote(f, arg);
	fprintf(f, "\"%s\"", arg);
	return 0;
}

int qemu_build_append(const struct drv_spec *spec, char **ret_append, char **ret_err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	int r = 0;
	int sep = 0;
	if (spec->flags & (DRV_F_UNIKRAFT | DRV_F_LOADER)) {
		/* `--` only when library parameters precede it: Unikraft strips it only
		 * after at least one parameter (ukboot: rc > 0), and images without
		 * uklibparam (all reference images) hand it to main verbatim. */
		for (size_t i = 0; i < spec->nuk_params && r == 0; i++) {
			fputs(sep++ ? " " : "", f);
			r = uk_quote(f, spec->uk_params[i]);
		}
		/* posix_environ's parameter; on such a kernel a `--` among plain arguments
		 * swallows the words before it, so the list (even empty) and `--` always go first. */
		if (spec->flags & DRV_F_ENV) {
			fputs(sep++ ? " env.vars=[" : "env.vars=[", f);
			for (size_t i = 0; i < spec->nenv && r == 0; i++) {
				fputc(' ', f);
				r = uk_quote_word(f, spec->env[i]);
			}
			fputs(" ]", f);
		}
		if (spec->nuk_params || (spec->flags & DRV_F_ENV))
			fputs(" --", f);
		for (size_t i = 0; i < spec->nargs && r == 0; i++) {
			fputs(sep++ ? " " : "", f);
			r = uk_quote(f, spec->args[i]);
		}
	} else {
		if (spec->nuk_params)
			r = -EINVAL;
		for (size_t i = 0; i < spec->nargs && r == 0; i++) {
			if (!*spec->args[i] || strpbrk(spec->args[i], " \t\n\r\v"))
				r = -EINVAL; /* a plain multiboot command line has no quoting */
			fprintf(f, "%s%s", i ? " " : "", spec->args[i]);
		}
	}
	fclose(f);
	if (r < 0) {
		free(buf);
		return errmsg_fail(ret_err, r,
		            (spec->flags & (DRV_F_UNIKRAFT | DRV_F_LOADER))
		                ? "Empty arguments cannot be passed to a Unikraft guest"
		                : "Arguments of a non-Unikraft kernel cannot be empty, contain whitespace "
		                  "or carry Unikraft library parameters");
	}
	*ret_append = buf;
	return 0;
}

int qemu_unikraft_release(const char *buf, size_t len)
{
	static const char tag[] = "Unikraft ";
	const char *p = buf, *end = buf + len;
	while (p < end) {
		const char *hit = memmem(p, (size_t)(end - p), tag, sizeof(tag) - 1);
		if (!hit)
			return -1;
		/* "Unikraft Calypso 0.17.0~eaf6fda1" or "Unikraft Calypso (0.17.0~...)" */
		const char *q = hit + sizeof(tag) - 1;
		while (q < end && ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z')))
			q++;
		if (q > hit + sizeof(tag) - 1 && q < end && *q == ' ')
			q++;
		if (q < end && *q == '(')
			q++;
		unsigned major = 0, minor = 0, nd = 0;
		while (q < end && *q >= '0' && *q <= '9' && nd < 3) {
			major = major * 10 + (unsigned)(*q++ - '0');
			nd++;
		}
		if (nd && q < end && *q == '.') {
			unsigned nm = 0;
			for (q++; q < end && *q >= '0' && *q <= '9' && nm < 3; q++, nm++)
				minor = minor * 10 + (unsigned)(*q - '0');
			if (nm)
				return (int)(major * 100 + minor);
		}
		p = hit + 1;
	}
	return -1;
}

/* qemu_unikraft_release of the image file (its banner is in .rodata), -1 when unreadable. */
static int image_unikraft_release(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat sb;
	int rel = -1;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && sb.st_size <= QEMU_UK_SCAN_MAX) {
		void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m != MAP_FAILED) {
			rel = qemu_unikraft_release(m, (size_t)sb.st_size);
			munmap(m, (size_t)sb.st_size);
		}
	}
	close(fd);
	return rel;
}

/* The machine profile when the run names none (DESIGN §8, chosen by measurement: bench/run,
 * docs/performance.md). pc + qboot boots plain multiboot kernels and Unikraft ≥ 0.17 with the
 * same console bytes as SeaBIOS, in less time (TCG) and far less under a nested KVM, where
 * SeaBIOS alone takes seconds; Unikraft ≤ 0.16 (the elfloader kernels) trips an assertion
 * on qboot's memory map, and a kernel whose release cannot be read keeps SeaBIOS. */
static const char *default_machine(const struct qemu_state *st, const struct drv_spec *spec, int unikraft)
{
	if (!st->qboot)
		return "pc";
	if (!unikraft)
		return "qboot";
	return image_unikraft_release(spec->image_path) >= QEMU_UK_QBOOT_MIN ? "qboot" : "pc";
}

int qemu_build_cmd(const struct qemu_state *st, const struct drv_spec *spec, int kvm,
                   struct cmd **ret_cmd, char **ret_err)
{
	int unikraft = !!(spec->flags & (DRV_F_UNIKRAFT | DRV_F_LOADER));
	if (!spec->image_path || !spec->workdir || !spec->run_id)
		return errmsg_fail(ret_err, -EINVAL, "qemu: the run has no image, workdir or id");
	if ((spec->flags & DRV_F_LOADER) && !spec->initrd_path)
		return errmsg_fail(ret_err, -EINVAL, "qemu: loader mode needs the program (initrd)");
	/* QEMU splits -initrd at ',' (module list) and ' ' (module command line),
	 * and -qmp/-pidfile option values at ','. */
	if (spec->initrd_path && strpbrk(spec->initrd_path, ", "))
		return errmsg_fail(ret_err, -EINVAL, "qemu: the initrd path must not contain ',' or ' '");
	if (strchr(spec->workdir, ','))
		return errmsg_fail(ret_err, -EINVAL, "qemu: the run directory must not contain ','");
	if (strlen(spec->workdir) + sizeof("/qmp.sock") > 108)
		return errmsg_fail(ret_err, -ENAMETOOLONG, "qemu: the run directory path is too long for a socket");

	char *append = NULL;
	int r = qemu_build_append(spec, &append, ret_err);
	if (r < 0)
		return r;

	struct cmd *c = cmd_new(st->binary);
	cmd_arg(c, "-nodefaults");
	cmd_arg(c, "-no-user-config");
	cmd_arg(c, "-display");
	cmd_arg(c, "none");
	cmd_arg(c, "-no-reboot");
	cmd_arg(c, "-name");
	cmd_argf(c, "ukrun-%s", spec->run_id);

	/* Machine: the run's, else the fastest that boots this kind of image. */
	const char *machine = spec->machine;
	if (!machine)
		machine = default_machine(st, spec, unikraft);
	cmd_arg(c, "-M");
	if (strcmp(machine, "qboot") == 0) {
		cmd_arg(c, "pc");
		cmd_arg(c, "-bios");
		cmd_arg(c, QEMU_QBOOT_ROM);
	} else {
		cmd_arg(c, machine);
		if (strncmp(machine, "microvm", 7) != 0) {
			/* SeaBIOS: no banner or escape sequences on the serial port. */
			cmd_arg(c, "-fw_cfg");
			cmd_arg(c, "name=etc/sercon-port,string=0");
		}
	}
	if (strcmp(machine, "qboot") == 0 || strcmp(machine, "pc") == 0) {
		/* No ACPI PCI hotplug AML: nothing is ever hot-plugged into a run, and QEMU
		 * builds those tables (again when the firmware reads them) in ≈ 35 ms of CPU
		 * per boot here (docs/performance.md). Power-off through PIIX4 PM stays. */
		cmd_arg(c, "-global");
		cmd_arg(c, "PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off");
		cmd_arg(c, "-global");
		cmd_arg(c, "PIIX4_PM.acpi-root-pci-hotplug=off");
	}

	cmd_arg(c, "-accel");
	if (kvm) {
		cmd_arg(c, "kvm");
		if (st->kvm_cpu) {
			cmd_arg(c, "-cpu");
			cmd_arg(c, st->kvm_cpu);
		}
	} else {
		cmd_arg(c, "tcg");
		cmd_arg(c, "-cpu");
		cmd_arg(c, "max");
	}
	cmd_arg(c, "-m");
	cmd_argf(c, "%u", spec->memory_mb ? spec->memory_mb : (spec->flags & DRV_F_LOADER) ? 256 : 128);
	cmd_arg(c, "-smp");
	cmd_argf(c, "%u", spec->vcpus ? spec->vcpus : 1);

	cmd_arg(c, "-serial");
	cmd_arg(c, "stdio");
	cmd_arg(c, "-device");
	cmd_arg(c, "isa-debug-exit,iobase=0xf4,iosize=0x04");
	cmd_arg(c, "-device");
	cmd_arg(c, "isa-debug-exit,iobase=0x501,iosize=0x02");
	cmd_arg(c, "-device");
	cmd_arg(c, "pvpanic");
	/* A panic must end QEMU (exit 0 + SHUTDOWN guest-panic), not pause the guest. */
	cmd_arg(c, "-action");
	cmd_arg(c, "panic=shutdown");

	cmd_arg(c, "-pidfile");
	cmd_argf(c, "%s/qemu.pid", spec->workdir);
	cmd_arg(c, "-qmp");
	cmd_argf(c, "unix:%s/qmp.sock,server=on,wait=on", spec->workdir);
	cmd_arg(c, "-S");
	if (st->sandbox) {
		cmd_arg(c, "-sandbox");
		cmd_arg(c, "on");
	}

	/* Unikraft's argv[0] is the -kernel string QEMU passes on: the user's file name
	 * (the run's link to the image, run.c) from the link's directory, not a daemon path. */
	const char *kslash = strrchr(spec->image_path, '/');
	const char *kernel = spec->image_path;
	if (unikraft && kslash && kslash != spec->image_path && spec->image_name &&
	    strcmp(kslash + 1, spec->image_name) == 0 && !strpbrk(kslash + 1, " \t\n\r\v\"'")) {
		char *dir = strndup(spec->image_path, (size_t)(kslash - spec->image_path));
		if (dir) {
			cmd_cwd(c, dir);
			kernel = kslash + 1;
		}
		free(dir);
	}
	cmd_arg(c, "-kernel");
	cmd_arg(c, kernel);
	if (spec->initrd_path) {
		cmd_arg(c, "-initrd");
		cmd_arg(c, spec->initrd_path);
	}
	if (*append) {
		cmd_arg(c, "-append");
		cmd_arg(c, append);
	}
	free(append);
	*ret_cmd = c;
	return 0;
}

/* ---- prepare ---- */

static int qemu_prepare(void *state, const struct drv_spec *spec, struct drv_instance **ret_inst,
                        char **ret_err)
{
	struct qemu_state *st = state;
	int kvm;
	switch (spec->accel) {
	case DRV_ACCEL_KVM:
		if (!st->kvm)
			return errmsg_fail(ret_err, -ENODEV, "qemu: KVM requested but /dev/kvm is not usable here");
		kvm = 1;
		break;
	case DRV_ACCEL_TCG:
		kvm = 0;
		break;
	default:
		/* A KVM that could not run one Unikraft guest will not run the next: skip
		 * the doomed attempt (seconds of firmware boot before the failure). */
		kvm = st->kvm && !((spec->flags & (DRV_F_UNIKRAFT | DRV_F_LOADER)) && st->kvm_fails_unikraft);
		break;
	}
	struct drv_instance *inst = calloc(1, sizeof(*inst));
	if (!inst)
		return -ENOMEM;
	int r = qemu_build_cmd(st, spec, kvm, &inst->cmd, ret_err);
	if (r < 0) {
		free(inst);
		return r;
	}
	inst->st = st;
	inst->spec = spec;
	inst->kvm = kvm;
	inst->qmp_path = errmsg_printf("%s/qmp.sock", spec->workdir);
	inst->pid_path = errmsg_printf("%s/qemu.pid", spec->workdir);
	*ret_inst = inst;
	return 0;
}

/* ---- launch: attempts ---- */

static void attempt_check_done(struct attempt *a);

static void attempt_handle_closed(uv_handle_t *h)
{
	struct attempt *a = h->data;
	if (h == (uv_handle_t *)&a->proc && a->pidfd >= 0) {
		close(a->pidfd); /* only once nothing polls it */
		a->pidfd = -1;
	}
	if (--a->handles == 0)
		free(a);
}

static void attempt_close(struct attempt *a, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, attempt_handle_closed);
}

static void attempt_kill(struct attempt *a)
{
	if (a->exited || a->pid <= 0)
		return;
	/* QEMU leads its own session and process group (cmd_start): take the whole group. */
	kill(-a->pid, SIGKILL);
	kill(a->pid, SIGKILL);
}

static void report(struct drv_instance *inst, const struct drv_outcome *o)
{
	if (inst->reported)
		return;
	inst->reported = 1;
	inst->cb.exit(inst->cb.ctx, o);
}

static void note(struct drv_instance *inst, const char *key, const char *value, const char *msg)
{
	if (inst->cb.note)
		inst->cb.note(inst->cb.ctx, key, value, msg);
}

/* The line of QEMU's stderr that says what went wrong: the last "qemu...:" line
 * that is not an info/warning (the QMP wait notice, the fw_cfg name warning),
 * else the last non-empty line. */
static const char *errtail_reason(const struct attempt *a, char *buf, size_t cap)
{
	const char *best = NULL, *last = NULL;
	size_t best_len = 0, last_len = 0;
	size_t end = a->errlen;
	while (end > 0) {
		size_t start = end;
		while (start && a->errtail[start - 1] != '\n')
			start--;
		const char *l = a->errtail + start;
		size_t n = end - start;
		while (n && (l[n - 1] == '\n' || l[n - 1] == '\r'))
			n--;
		if (n && !last) {
			last = l;
			last_len = n;
		}
		if (n > 4 && memcmp(l, "qemu", 4) == 0 && !memmem(l, n, "info: ", 6) &&
		    !memmem(l, n, "warning: ", 9)) {
			best = l;
			best_len = n;
			break;
		}
		end = start ? start - 1 : 0;
	}
	if (!best) {
		best = last;
		best_len = last_len;
	}
	size_t n = best_len < cap - 1 ? best_len : cap - 1;
	if (n)
		memcpy(buf, best, n);
	buf[n] = '\0';
	return buf;
}

static void console_scan_hint(struct drv_instance *inst, const char *buf, size_t len)
{
	static const char needle[] = HWRNG_TEXT;
	/* The needle's first byte occurs only once in it, so a plain restart is exact. */
	for (size_t i = 0; i < len && !inst->hint_sent; i++) {
		if (buf[i] == needle[inst->hint_match])
			inst->hint_match++;
		else
			inst->hint_match = buf[i] == needle[0];
		if (inst->hint_match == sizeof(needle) - 1) {
			inst->hint_sent = 1;
			note(inst, "hint", "rdseed",
			     "the image needs RDRAND/RDSEED in the guest CPU (libukrandom); QEMU 7.2's TCG "
			     "`-cpu max` lacks RDSEED: run it under KVM or build it without libukrandom");
		}
	}
}

static void console_bytes(struct attempt *a, const char *buf, size_t len)
{
	struct drv_instance *inst = a->inst;
	uint64_t pos = a->bytes;
	a->bytes += len;
	if (pos < inst->skip) {
		/* A rerun under TCG repeats what the KVM attempt already delivered. */
		size_t drop = inst->skip - pos < len ? (size_t)(inst->skip - pos) : len;
		if (pos < inst->prefix_len) {
			size_t n = inst->prefix_len - pos < drop ? (size_t)(inst->prefix_len - pos) : drop;
			if (memcmp(inst->prefix + pos, buf, n) != 0 && !inst->mismatch_noted) {
				inst->mismatch_noted = 1;
				note(inst, NULL, NULL, "console output under TCG differed from the KVM attempt; "
				                       "its first bytes were dropped anyway");
			}
		}
		buf += drop;
		len -= drop;
	}
	if (!len)
		return;
	if (a->kvm && inst->prefix_len < QEMU_PREFIX_MAX) {
		size_t n = QEMU_PREFIX_MAX - inst->prefix_len < len ? QEMU_PREFIX_MAX - inst->prefix_len : len;
		if (!inst->prefix)
			inst->prefix = malloc(QEMU_PREFIX_MAX);
		if (inst->prefix) {
			memcpy(inst->prefix + inst->prefix_len, buf, n);
			inst->prefix_len += n;
		}
	}
	inst->delivered += len;
	console_scan_hint(inst, buf, len);
	inst->cb.console(inst->cb.ctx, DRV_STREAM_CONSOLE, buf, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct attempt *a = h->data;
	*buf = uv_buf_init(a->rbuf, sizeof(a->rbuf));
}

static void on_out(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_gather(uv_timer_t *t)
{
	struct attempt *a = t->data;
	if (!a->throttled && !a->out_eof && !uv_is_closing((uv_handle_t *)&a->out))
		uv_read_start((uv_stream_t *)&a->out, on_alloc, on_out);
}

static void on_out(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct attempt *a = s->data;
	if (nread > 0 && a->inst) {
		console_bytes(a, buf->base, (size_t)nread);
		if (nread < QEMU_GATHER_BELOW && a->inst && !a->inst->killed && !a->throttled &&
		    !uv_is_closing((uv_handle_t *)&a->gather)) {
			uv_read_stop(s);
			uv_timer_start(&a->gather, on_gather, QEMU_GATHER_MS, 0);
		}
	} else if (nread < 0) {
		a->out_eof = 1;
		attempt_close(a, (uv_handle_t *)s);
		attempt_close(a, (uv_handle_t *)&a->gather);
		attempt_check_done(a);
	}
}

static void on_err(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct attempt *a = s->data;
	if (nread < 0) {
		a->err_eof = 1;
		attempt_close(a, (uv_handle_t *)s);
		attempt_check_done(a);
		return;
	}
	tailbuf_append(a->errtail, sizeof(a->errtail), &a->errlen, buf->base, (size_t)nread);
	/* The software KVM of these hosts stops Unikraft early and QEMU then hangs:
	 * never wait for a timeout, rerun under TCG at once (DESIGN §8). */
	if (a->inst && a->kvm && !a->kvm_failed && a->inst->spec->accel == DRV_ACCEL_AUTO &&
	    qemu_kvm_failure(a->errtail, a->errlen)) {
		a->kvm_failed = 1;
		attempt_kill(a);
	}
}

/* The pidfd is readable: QEMU has exited (reap it), or the poll failed. */
static void on_exit_proc(uv_poll_t *p, int pstatus, int events)
{
	struct attempt *a = p->data;
	int64_t status = 0;
	int sig = 0;
	(void)events;
	int r = cmd_reap(a->pid, &status, &sig);
	if (r == 0 && pstatus >= 0)
		return; /* not yet (a spurious wake-up) */
	if (r <= 0) {
		/* The pidfd cannot be watched (or the reap failed): end QEMU rather than lose it. */
		cmd_kill_reap(a->pid, &status, &sig);
	}
	uv_poll_stop(p);
	a->exited = 1;
	a->status = status;
	a->signal = sig;
	attempt_close(a, (uv_handle_t *)p);
	if (!a->handshake && !a->qmp_done && !qmp_connected(a->qmp)) {
		/* QEMU is gone before anyone connected: stop retrying the socket. (Once
		 * connected, the replies and the SHUTDOWN event can still be unread when the
		 * exit is reaped: the socket's EOF ends QMP after them.) */
		qmp_close(a->qmp);
		a->qmp = NULL;
		a->qmp_done = 1;
	}
	attempt_check_done(a);
}

static void on_qmp_ready(void *ctx)
{
	struct attempt *a = ctx;
	a->handshake = 1;
	if (a->inst && !a->inst->started_sent) {
		a->inst->started_sent = 1;
		if (a->inst->cb.started)
			a->inst->cb.started(a->inst->cb.ctx);
	}
}

static void on_qmp_event(void *ctx, const char *name, json_t *data)
{
	struct attempt *a = ctx;
	enum qmp_guest_event ev = qmp_event_classify(name, data);
	if (ev > a->ev) /* PANIC > RESET > POWEROFF: a panic is followed by SHUTDOWN */
		a->ev = ev;
}

static void on_qmp_closed(void *ctx, int status)
{
	struct attempt *a = ctx;
	a->qmp_done = 1;
	if (status < 0 && status != -ECONNRESET && !a->handshake && !a->exited) {
		/* QEMU waits for a QMP client forever: without one it is useless.
		 * (A reset is QEMU exiting on its own: let its status speak.) */
		a->qmp_error = status;
		attempt_kill(a);
	}
	attempt_check_done(a);
}

static int attempt_start(struct drv_instance *inst, char **ret_err);

static void attempt_finished(struct attempt *a)
{
	struct drv_instance *inst = a->inst;
	qmp_close(a->qmp);
	a->qmp = NULL;
	if (!inst)
		return;
	a->inst = NULL;
	inst->cur = NULL;
	if (a->kvm_failed && !inst->killed) {
		char *err = NULL;
		cmd_free(inst->cmd);
		inst->cmd = NULL;
		inst->kvm = 0;
		inst->skip = inst->delivered;
		if (inst->spec->flags & (DRV_F_UNIKRAFT | DRV_F_LOADER))
			inst->st->kvm_fails_unikraft = 1;
		note(inst, "accel", "tcg",
		     "KVM could not run this guest (emulation failure); retrying under TCG");
		int r = qemu_build_cmd(inst->st, inst->spec, 0, &inst->cmd, &err);
		if (r >= 0)
			r = attempt_start(inst, &err);
		if (r < 0) {
			struct drv_outcome o = {.end = DRV_END_ERROR, .value = r, .message = err};
			report(inst, &o);
		}
		free(err);
		return;
	}
	struct qemu_end_facts f = {
		.killed = inst->killed,
		.handshake = a->handshake,
		.ev = a->ev,
		.signal = a->signal,
		.status = (int)a->status,
	};
	struct drv_outcome o;
	qemu_classify_end(&f, &o);
	char line[512], *msg = NULL;
	if (o.end == DRV_END_ERROR) {
		errtail_reason(a, line, sizeof(line));
		if (a->qmp_error && a->signal == SIGKILL)
			msg = errmsg_printf("QEMU's QMP socket failed (%s)%s%s", strerror(-a->qmp_error),
			                     *line ? ": " : "", line);
		else if (a->signal)
			msg = errmsg_printf("QEMU was killed by signal %d%s%s", a->signal, *line ? ": " : "", line);
		else
			msg = errmsg_printf("QEMU exited with status %d%s%s", (int)a->status, *line ? ": " : "",
			                     *line ? line : " and no shutdown event");
		o.message = msg;
		if (!a->handshake && qemu_kernel_refused(a->errtail, a->errlen))
			o.value = ENOEXEC;
	}
	report(inst, &o);
	free(msg);
}

static void attempt_check_done(struct attempt *a)
{
	if (a->done || !a->exited || !a->out_eof || !a->err_eof || !a->qmp_done)
		return;
	a->done = 1;
	attempt_finished(a);
}

static int attempt_start(struct drv_instance *inst, char **ret_err)
{
	struct attempt *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	/* The console on a pipe(2), not libuv's socketpair: QEMU writes the UART's bytes a
	 * few at a time, and a write to a socket costs far more (an skb and a wake-up each)
	 * than to a pipe (bare QEMU, mb_flood under TCG: docs/performance.md). stderr stays
	 * a libuv pipe: it only carries messages. */
	int cfd[2], efd[2];
	if (pipe2(cfd, O_CLOEXEC) < 0) {
		int e = -errno;
		free(a);
		return errmsg_fail(ret_err, e, "qemu: cannot create the console pipe: %s", strerror(-e));
	}
	if (pipe2(efd, O_CLOEXEC) < 0) {
		int e = -errno;
		close(cfd[0]);
		close(cfd[1]);
		free(a);
		return errmsg_fail(ret_err, e, "qemu: cannot create the stderr pipe: %s", strerror(-e));
	}
	a->inst = inst;
	a->kvm = inst->kvm;
	a->pidfd = -1;
	uv_pipe_init(inst->loop, &a->out, 0);
	uv_pipe_init(inst->loop, &a->err, 0);
	uv_timer_init(inst->loop, &a->gather);
	a->out.data = a->err.data = a->proc.data = a->gather.data = a;
	a->handles = 4;
	/* A stale socket would let us connect to nothing; QEMU recreates both. */
	unlink(inst->qmp_path);
	unlink(inst->pid_path);
	int polled = 0;
	int r = uv_pipe_open(&a->out, cfd[0]);
	if (r < 0) {
		close(cfd[0]);
		close(efd[0]);
		errmsg_fail(ret_err, r, "qemu: cannot watch the console pipe: %s", uv_strerror(r));
	} else if ((r = uv_pipe_open(&a->err, efd[0])) < 0) {
		close(efd[0]);
		errmsg_fail(ret_err, r, "qemu: cannot watch QEMU's stderr: %s", uv_strerror(r));
	} else {
		/* Started by a fork + exec of our own (cmd_start): the die-with-daemon signal is
		 * set in the child, with no setpriv exec in front of QEMU (3.3 ms a boot). */
		cmd_stdio_fd(inst->cmd, 1, cfd[1]);
		cmd_stdio_fd(inst->cmd, 2, efd[1]);
		cmd_die_with_daemon(inst->cmd);
		r = cmd_start(inst->cmd, &a->pid, &a->pidfd, ret_err);
		if (r == 0 && (r = uv_poll_init(inst->loop, &a->proc, a->pidfd)) == 0) {
			polled = 1;
			r = uv_poll_start(&a->proc, UV_READABLE, on_exit_proc);
		}
		if (r < 0 && a->pid > 0) {
			/* Running but not watched: stop and reap it here (SIGKILL: it is quick). */
			errmsg_fail(ret_err, r, "qemu: cannot watch QEMU: %s", uv_strerror(r));
			cmd_kill_reap(a->pid, NULL, NULL);
		}
	}
	close(cfd[1]); /* the child has its own copies */
	close(efd[1]);
	if (r < 0) {
		a->inst = NULL;
		a->exited = 1;
		if (polled) {
			attempt_close(a, (uv_handle_t *)&a->proc); /* closes the pidfd */
		} else {
			a->handles--; /* no process handle was initialised */
			if (a->pidfd >= 0)
				close(a->pidfd);
			a->pidfd = -1;
		}
		attempt_close(a, (uv_handle_t *)&a->out);
		attempt_close(a, (uv_handle_t *)&a->gather);
		attempt_close(a, (uv_handle_t *)&a->err);
		return r;
	}
	uv_read_start((uv_stream_t *)&a->out, on_alloc, on_out);
	uv_read_start((uv_stream_t *)&a->err, on_alloc, on_err);
	struct qmp_callbacks qcb = {
		.ready = on_qmp_ready, .event = on_qmp_event, .closed = on_qmp_closed, .ctx = a};
	r = qmp_connect(inst->loop, inst->qmp_path, QEMU_QMP_TIMEOUT_MS, &qcb, &a->qmp);
	if (r < 0) {
		a->qmp_error = r;
		a->qmp_done = 1;
		attempt_kill(a);
	}
	inst->cur = a;
	return 0;
}

static int qemu_launch(struct drv_instance *inst, uv_loop_t *loop, const struct drv_callbacks *cb,
                       char **ret_err)
{
	if (inst->loop)
		return errmsg_fail(ret_err, -EALREADY, "qemu: this run was already launched");
	inst->loop = loop;
	inst->cb = *cb;
	int r = attempt_start(inst, ret_err);
	if (r < 0)
		return r;
	if (inst->kvm) {
		char *msg = errmsg_printf("running under KVM (cpu %s)",
		                          inst->st->kvm_cpu ? inst->st->kvm_cpu : "default");
		note(inst, "accel", "kvm", msg);
		free(msg);
	} else if (inst->spec->accel == DRV_ACCEL_AUTO && inst->st->kvm) {
		note(inst, "accel", "tcg",
		     "KVM failed to run a Unikraft guest earlier on this host: running under TCG (slower)");
	} else if (inst->spec->accel == DRV_ACCEL_AUTO) {
		note(inst, "accel", "tcg", "no usable /dev/kvm: running under TCG (slower)");
	} else {
		note(inst, "accel", "tcg", "running under TCG");
	}
	char *line = cmd_to_string(inst->cmd);
	note(inst, "command", line, NULL);
	free(line);
	return 0;
}

static int qemu_throttle(struct drv_instance *inst, int paused)
{
	struct attempt *a = inst->cur;
	if (!a || a->out_eof || uv_is_closing((uv_handle_t *)&a->out))
		return 0;
	a->throttled = paused;
	uv_timer_stop(&a->gather);
	if (paused)
		return uv_read_stop((uv_stream_t *)&a->out);
	int r = uv_read_start((uv_stream_t *)&a->out, on_alloc, on_out);
	return r == UV_EALREADY ? 0 : r;
}

static int qemu_kill(struct drv_instance *inst, unsigned flags)
{
	inst->killed = 1;
	qemu_throttle(inst, 0); /* the pipe must drain to its EOF for the end to be reported */
	if (inst->cur)
		attempt_kill(inst->cur);
	return 0;
}

/* QEMU's threads: the vCPUs, the main loop (device emulation, the console) and its helpers.
 * All of them, so a vCPU asleep on a lock that a preempted main thread holds still counts as
 * busy (that thread is waiting for a CPU). */
static int qemu_guest_busy(struct drv_instance *inst, uint64_t *ret_ns)
{
	struct attempt *a = inst->cur;
	if (!a || a->exited || a->pid <= 0)
		return -ESRCH;
	int active = 0;
	int r = proc_sample(a->pid, ret_ns, &active);
	if (r == 0 && active > 0)
		*ret_ns += 1000000000ull; /* running, runnable or in the kernel now: not idle, whatever schedstat says */
	return r;
}

static void qemu_destroy(struct drv_instance *inst)
{
	if (!inst)
		return;
	struct attempt *a = inst->cur;
	if (a) {
		/* Detach: the attempt frees itself once QEMU is reaped and the pipes close. */
		a->inst = NULL;
		attempt_kill(a);
		qmp_close(a->qmp);
		a->qmp = NULL;
		attempt_close(a, (uv_handle_t *)&a->out);
		attempt_close(a, (uv_handle_t *)&a->gather);
		attempt_close(a, (uv_handle_t *)&a->err);
	}
	if (inst->qmp_path)
		unlink(inst->qmp_path);
	if (inst->pid_path)
		unlink(inst->pid_path);
	cmd_free(inst->cmd);
	free(inst->qmp_path);
	free(inst->pid_path);
	free(inst->prefix);
	free(inst);
}

/* This machine only; the state is the host's QEMU facts (qemu_probe.c). */
static int qemu_probe_host(const struct drv_host *host, void **ret_state, char **ret_info, char **ret_err)
{
	if (host && host->uri)
		return -ENOTSUP;
	return qemu_probe(ret_state, ret_info, ret_err);
}

/* A dead daemon's QEMU processes: each wrote its pid to the run's workdir (-pidfile). */
static int qemu_reap(void *state, const char *runs_dir, const char *const *lost_ids, size_t nlost, char **ret_err)
{
	(void)state;
	(void)ret_err;
	return drv_reap_pidfiles(runs_dir, lost_ids, nlost, "qemu.pid");
}

const struct driver drv_qemu = {
	.name = "qemu",
	.platforms = DRV_PLATFORM_QEMU,
	.caps = DRV_CAP_ARGS | DRV_CAP_MEMORY | DRV_CAP_VCPUS | DRV_CAP_INITRD,
	.probe = qemu_probe_host,
	.reap = qemu_reap,
	.unprobe = qemu_unprobe,
	.prepare = qemu_prepare,
	.launch = qemu_launch,
	.kill = qemu_kill,
	.throttle = qemu_throttle,
	.guest_busy = qemu_guest_busy,
	.destroy = qemu_destroy,
};
