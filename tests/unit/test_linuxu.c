/* test_linuxu.c — the linuxu driver's pure parts: guest argv, the bwrap
 * command line, bwrap's status JSON, exit-code mapping, libparam detection. */
#include <elf.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "linuxu_int.h"

/* argv of `c` from index `from` as one "|"-joined string (caller frees). */
static char *join_from(const struct cmd *c, size_t from)
{
	char *const *argv = cmd_argv(c);
	size_t cap = 1, n = 0;
	for (size_t i = 0; argv[i]; i++)
		cap += strlen(argv[i]) + 1;
	char *out = calloc(1, cap);
	for (size_t i = 0; argv[i]; i++) {
		if (i < from)
			continue;
		if (n++)
			strcat(out, "|");
		strcat(out, argv[i]);
	}
	return out;
}

static void assert_guest(const struct drv_spec *spec, int libparam, unsigned heap, const char *want)
{
	struct cmd *c = cmd_new("name");
	linuxu_append_guest_args(c, spec, libparam, heap);
	char *got = join_from(c, 1);
	assert_string_equal(got, want);
	free(got);
	cmd_free(c);
}

static void test_guest_args(void **unused)
{
	char *args[] = {"foo", "bar baz", ""};
	char *params[] = {"vfs.fstab=[a]", "env.vars=[X=1]"};
	char *heap[] = {"linuxu.heap_size=8"};
	struct drv_spec spec = {.args = args, .nargs = 3};

	/* Plain programs: arguments untouched, parameters never added. */
	assert_guest(&spec, 0, 0, "foo|bar baz|");
	spec.uk_params = params;
	spec.nuk_params = 2;
	assert_guest(&spec, 1, 64, "foo|bar baz|");

	/* Unikraft with libukparam: params, heap, "--", args. */
	spec.flags = DRV_F_UNIKRAFT;
	assert_guest(&spec, 1, 64, "vfs.fstab=[a]|env.vars=[X=1]|linuxu.heap_size=64|--|foo|bar baz|");
	assert_guest(&spec, 1, 0, "vfs.fstab=[a]|env.vars=[X=1]|--|foo|bar baz|");
	/* The user's own heap size wins. */
	spec.uk_params = heap;
	spec.nuk_params = 1;
	assert_guest(&spec, 1, 64, "linuxu.heap_size=8|--|foo|bar baz|");
	/* No params: "--" still separates, so an argument "x=y" never becomes a parameter. */
	spec.nuk_params = 0;
	assert_guest(&spec, 1, 0, "--|foo|bar baz|");

	/* Unikraft without libukparam: main sees every word, so no "--" and no heap. */
	assert_guest(&spec, 0, 64, "foo|bar baz|");
	spec.uk_params = params;
	spec.nuk_params = 1;
	assert_guest(&spec, 0, 64, "vfs.fstab=[a]|--|foo|bar baz|");
}

static void test_guest_name(void **unused)
{
	struct drv_spec spec = {.image_path = "/store/ab/cd", .image_name = "my test.elf"};
	char *n = linuxu_guest_name(&spec);
	assert_string_equal(n, "my test.elf");
	free(n);
	spec.image_name = "target/debug/deps/app-123";
	n = linuxu_guest_name(&spec);
	assert_string_equal(n, "app-123");
	free(n);
	spec.image_name = NULL;
	n = linuxu_guest_name(&spec);
	assert_string_equal(n, "cd");
	free(n);
	spec.image_name = "..";
	n = linuxu_guest_name(&spec);
	assert_string_equal(n, "guest");
	free(n);
	spec.image_name = "dir/";
	n = linuxu_guest_name(&spec);
	assert_string_equal(n, "guest");
	free(n);
}

static void test_status_json(void **unused)
{
	long pid = 0;
	int code = -1;
	const char *l1 = "{ \"child-pid\": 10384, \"cgroup-namespace\": 4026532181, \"net-namespace\": 4026532182 }";
	assert_int_equal(linuxu_parse_status_line(l1, strlen(l1), &pid, &code), 1);
	assert_int_equal(pid, 10384);
	const char *l2 = "{ \"exit-code\": 139 }";
	assert_int_equal(linuxu_parse_status_line(l2, strlen(l2), &pid, &code), 2);
	assert_int_equal(code, 139);
	assert_int_equal(linuxu_parse_status_line("{}", 2, &pid, &code), 0);
	assert_int_equal(linuxu_parse_status_line("bwrap: oops", 11, &pid, &code), -EINVAL);
	assert_int_equal(linuxu_parse_status_line("[1]", 3, &pid, &code), -EINVAL);
	assert_int_equal(linuxu_parse_status_line("{\"exit-code\": \"7\"}", 18, &pid, &code), 0);
}

static void test_status_stream(void **unused)
{
	/* Lines split across reads, the way on_status feeds them. */
	struct drv_instance *inst = calloc(1, sizeof(*inst));
	const char *chunks[] = {"{ \"child-pid\": 5", "0 }\n{ \"exit-", "code\": 7 }\n"};
	for (size_t i = 0; i < 3; i++) {
		memcpy(inst->sbuf + inst->slen, chunks[i], strlen(chunks[i]));
		inst->slen += strlen(chunks[i]);
		linuxu_status_consume(inst);
	}
	assert_int_equal(inst->child_pid, 50);
	assert_true(inst->have_exit_code);
	assert_int_equal(inst->exit_code, 7);
	assert_int_equal(inst->slen, 0);
	free(inst);
}

static void test_exit_mapping(void **unused)
{
	struct drv_outcome o;
	linuxu_map_exit_code(0, &o);
	assert_true(o.end == DRV_END_EXIT && o.value == 0);
	linuxu_map_exit_code(7, &o);
	assert_true(o.end == DRV_END_EXIT && o.value == 7);
	linuxu_map_exit_code(139, &o);
	assert_true(o.end == DRV_END_SIGNAL && o.value == SIGSEGV);
	linuxu_map_exit_code(134, &o);
	assert_true(o.end == DRV_END_SIGNAL && o.value == SIGABRT);
	linuxu_map_exit_code(128, &o);
	assert_true(o.end == DRV_END_EXIT && o.value == 128);
	linuxu_map_exit_code(128 + SIGCHLD, &o); /* SIGCHLD never kills */
	assert_true(o.end == DRV_END_EXIT && o.value == 128 + SIGCHLD);
	linuxu_map_exit_code(255, &o);
	assert_true(o.end == DRV_END_EXIT && o.value == 255);
}

/* A minimal ELF64 with one extra section named `secname`. */
static void write_elf(const char *path, const char *secname)
{
	char strtab[64] = "";
	size_t off_shstr = 1, off_sec = 1 + strlen(".shstrtab") + 1;
	strcpy(strtab + off_shstr, ".shstrtab");
	strcpy(strtab + off_sec, secname);
	size_t strsz = off_sec + strlen(secname) + 1;
	Elf64_Ehdr eh = {0};
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_ehsize = sizeof(eh);
	eh.e_shentsize = sizeof(Elf64_Shdr);
	eh.e_shnum = 3;
	eh.e_shstrndx = 1;
	eh.e_shoff = sizeof(eh) + 64;
	eh.e_entry = 0x401000;
	eh.e_phoff = eh.e_shoff + 3 * sizeof(Elf64_Shdr); /* one PT_LOAD: an executable, as detect wants */
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 1;
	Elf64_Phdr ph = {.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_vaddr = 0x400000, .p_align = 4096};
	Elf64_Shdr sh[3] = {{0}};
	sh[1].sh_name = (Elf64_Word)off_shstr;
	sh[1].sh_type = SHT_STRTAB;
	sh[1].sh_offset = sizeof(eh);
	sh[1].sh_size = strsz;
	sh[2].sh_name = (Elf64_Word)off_sec;
	sh[2].sh_type = SHT_PROGBITS;
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fwrite(&eh, sizeof(eh), 1, f);
	fwrite(strtab, 64, 1, f);
	fwrite(sh, sizeof(sh), 1, f);
	fwrite(&ph, sizeof(ph), 1, f);
	fclose(f);
}

static void test_libparam_detect(void **unused)
{
	char path[] = "/tmp/test_linuxu_elfXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_elf(path, ".uk_libparam_params");
	assert_true(linuxu_image_has_libparam(path));
	write_elf(path, "linuxu__param_arg");
	assert_true(linuxu_image_has_libparam(path));
	write_elf(path, ".uk_bootinfo");
	assert_false(linuxu_image_has_libparam(path));
	unlink(path);
	assert_false(linuxu_image_has_libparam(path));
	assert_false(linuxu_image_has_libparam("/dev/null"));
	/* The reference image was built without libukparam. */
	const char *fx = "/work/shared/fixtures/helloworld_linuxu-x86_64";
	if (access(fx, R_OK) == 0)
		assert_false(linuxu_image_has_libparam(fx));
}

static void test_prepare_argv(void **unused)
{
	char path[] = "/tmp/test_linuxu_imgXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_elf(path, ".text");
	chmod(path, 0755);
	char *args[] = {"a b", "--nocapture"};
	struct drv_spec spec = {.image_path = path, .image_name = "my app", .args = args, .nargs = 2,
	                        .memory_mb = 100};
	struct linuxu_state st = {0};
	struct drv_instance *inst = NULL;
	char *err = NULL;
	assert_int_equal(drv_linuxu.prepare(&st, &spec, &inst, &err), 0);
	char *all = join_from(inst->cmd, 0);
	/* The rlimits are set between fork and exec: bwrap is the first program. */
	unsigned long long v = 0;
	assert_true(cmd_rlimit_get(inst->cmd, RLIMIT_DATA, &v));
	assert_int_equal(v, 104857600ull);
	assert_true(cmd_rlimit_get(inst->cmd, RLIMIT_CPU, &v));
	assert_int_equal(v, 3600);
	assert_true(cmd_rlimit_get(inst->cmd, RLIMIT_CORE, &v));
	assert_int_equal(v, 0);
	assert_true(cmd_rlimit_get(inst->cmd, RLIMIT_NOFILE, &v));
	assert_true(v > 0 && v <= 1024);
	assert_false(cmd_rlimit_get(inst->cmd, RLIMIT_NPROC, &v)); /* set inside the user namespace */
	unsigned uid = 0, gid = 0;
	assert_false(cmd_user_get(inst->cmd, &uid, &gid));
	assert_non_null(strstr(all, "bwrap|--unshare-all|--die-with-parent|--new-session|"));
	assert_int_equal(strncmp(all, "bwrap|", 6), 0);
	char want[256];
	snprintf(want, sizeof(want), "|--ro-bind|%s|/run/ukrun/my app|", path);
	assert_non_null(strstr(all, want));
	assert_null(strstr(all, "TERM")); /* no terminal, no TERM */
	/* Every writable mount is a tmpfs of the run's memory; / and /dev end read-only. */
	assert_non_null(strstr(all, "|--dev|/dev|--size|104857600|--tmpfs|/dev/shm|--remount-ro|/dev|"
	                            "--size|104857600|--tmpfs|/tmp|"));
	snprintf(want, sizeof(want), "|/run/ukrun/my app|--remount-ro|/|");
	assert_non_null(strstr(all, want));
	/* Files may grow past the tmpfs size (so the tmpfs says ENOSPC, not SIGXFSZ), not much further (memfd). */
	assert_true(cmd_rlimit_get(inst->cmd, RLIMIT_FSIZE, &v));
	assert_int_equal(v, 105906176ull);
	assert_null(strstr(all, "setpriv"));
	/* The process limit is set inside the sandbox, where it counts per user namespace. */
	const char *tail = "|--json-status-fd|3|--|prlimit|--nproc=4096|--|my app|a b|--nocapture";
	assert_string_equal(all + strlen(all) - strlen(tail), tail);
	assert_false(inst->use_pty);
	free(all);
	drv_linuxu.destroy(inst);

	/* Not executable on the host: copied in with --file; Unikraft gets a terminal. */
	chmod(path, 0644);
	spec.flags = DRV_F_UNIKRAFT;
	assert_int_equal(drv_linuxu.prepare(&st, &spec, &inst, &err), 0);
	all = join_from(inst->cmd, 0);
	assert_non_null(strstr(all, "|--perms|0555|--file|4|/run/ukrun/my app|"));
	assert_non_null(strstr(all, "|--setenv|TERM|dumb|"));
	assert_true(inst->use_pty);
	free(all);
	drv_linuxu.destroy(inst);

	/* No budget of its own (a root daemon that cannot switch uid): the run is told why. */
	st.limits_why = "setpriv failed";
	assert_int_equal(drv_linuxu.prepare(&st, &spec, &inst, &err), 0);
	assert_string_equal(inst->limits_value, "none");
	assert_string_equal(inst->limits_note, "the run's process limit is not its own: setpriv failed");
	drv_linuxu.destroy(inst);
	st.limits_why = NULL;
	unlink(path);

	assert_true(drv_linuxu.prepare(&st, &spec, &inst, &err) < 0);
	assert_non_null(err);
	free(err);
}

static void test_prepare_uid(void **unused)
{
	char path[] = "/tmp/test_linuxu_imgXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_elf(path, ".text");
	chmod(path, 0755);
	struct drv_spec spec = {.image_path = path, .image_name = "app", .memory_mb = 100};
	struct linuxu_state *st = calloc(1, sizeof(*st));
	st->limits = LINUXU_LIMITS_UID;
	st->prlimit_path = "/usr/bin/prlimit";
	st->uid_next = LINUXU_UID_COUNT - 1;
	struct drv_instance *a = NULL, *b = NULL;
	char *err = NULL;
	assert_int_equal(drv_linuxu.prepare(st, &spec, &a, &err), 0);
	assert_int_equal(drv_linuxu.prepare(st, &spec, &b, &err), 0);
	/* Each run its own uid from the reserved range (next fit wraps around). */
	assert_int_equal(a->uid, LINUXU_UID_BASE + LINUXU_UID_COUNT - 1);
	assert_int_equal(b->uid, LINUXU_UID_BASE);
	assert_string_equal(a->limits_value, "uid");
	char *all = join_from(a->cmd, 0);
	/* The uid (gid the same, no groups) is switched between fork and exec. */
	unsigned uid = 0, gid = 0;
	assert_true(cmd_user_get(a->cmd, &uid, &gid));
	assert_int_equal(uid, a->uid);
	assert_int_equal(gid, a->uid);
	assert_int_equal(strncmp(all, "bwrap|--unshare-all|--unshare-user|", 35), 0);
	assert_null(strstr(all, "setpriv"));
	/* The store need not be readable by that uid: the image comes in through an fd. */
	assert_non_null(strstr(all, "|--file|4|/run/ukrun/app|"));
	assert_non_null(strstr(all, "|--|/usr/bin/prlimit|--nproc=100|--|app"));
	free(all);
	unsigned ua = a->uid;
	drv_linuxu.destroy(a);
	assert_false(st->uid_used[(ua - LINUXU_UID_BASE) / 8] & (1u << ((ua - LINUXU_UID_BASE) % 8)));
	drv_linuxu.destroy(b);
	unlink(path);
	free(st);
}

static void test_uid_pool(void **unused)
{
	struct linuxu_state *st = calloc(1, sizeof(*st));
	unsigned uid = 0, last = 0;
	for (unsigned i = 0; i < LINUXU_UID_COUNT; i++) {
		assert_int_equal(linuxu_uid_take(st, &uid), 0);
		assert_int_equal(uid, LINUXU_UID_BASE + i);
	}
	assert_int_equal(linuxu_uid_take(st, &last), -EAGAIN);
	linuxu_uid_release(st, LINUXU_UID_BASE + 7);
	linuxu_uid_release(st, 0);    /* not a per-run uid: ignored */
	linuxu_uid_release(NULL, 12); /* no-op */
	assert_int_equal(linuxu_uid_take(st, &uid), 0);
	assert_int_equal(uid, LINUXU_UID_BASE + 7);
	free(st);
}

static void test_nproc(void **unused)
{
	assert_int_equal(linuxu_nproc(LINUXU_LIMITS_UID, 0), 64);
	assert_int_equal(linuxu_nproc(LINUXU_LIMITS_UID, 64), 64);
	assert_int_equal(linuxu_nproc(LINUXU_LIMITS_USERNS, 300), 300);
	assert_int_equal(linuxu_nproc(LINUXU_LIMITS_USERNS, 2048), 1024);
	/* Counted with every process of the uid: only a fork-bomb guard. */
	assert_int_equal(linuxu_nproc(LINUXU_LIMITS_SHARED, 64), 4096);
	assert_int_equal(linuxu_nproc(LINUXU_LIMITS_NONE, 64), 4096);
	assert_string_equal(linuxu_limits_name(LINUXU_LIMITS_UID), "uid");
	assert_string_equal(linuxu_limits_name(LINUXU_LIMITS_USERNS), "userns");
}

static struct drv_outcome refused_outcome;
static char refused_message[300];
static int refused_calls;

static void on_refused_exit(void *ctx, const struct drv_outcome *o)
{
	refused_calls++;
	refused_outcome = *o;
	snprintf(refused_message, sizeof(refused_message), "%s", o->message ? o->message : "");
}

static void on_console_unused(void *ctx, enum drv_stream stream, const char *buf, size_t len)
{
	fail_msg("console bytes from a refused image");
}

static void test_refused(void **unused)
{
	/* A script forced onto linuxu never reaches execvp (which would hand it to /bin/sh). */
	char path[] = "/tmp/test_linuxu_txtXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "#!/bin/sh\necho hi\n", 18), 18);
	close(fd);
	chmod(path, 0755);
	struct drv_spec spec = {.image_path = path, .image_name = "run.sh"};
	struct linuxu_state st = {0};
	struct drv_instance *inst = NULL;
	char *err = NULL;
	assert_int_equal(drv_linuxu.prepare(&st, &spec, &inst, &err), 0);
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	struct drv_callbacks cb = {.console = on_console_unused, .exit = on_refused_exit};
	assert_int_equal(drv_linuxu.launch(inst, &loop, &cb, &err), 0);
	assert_int_equal(refused_calls, 0); /* reported from the loop, not inside launch */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(refused_calls, 1);
	assert_int_equal(refused_outcome.end, DRV_END_ERROR);
	assert_int_equal(refused_outcome.value, ENOEXEC);
	assert_non_null(strstr(refused_message, "'run.sh' is not an x86-64 Linux program: not an ELF"));
	drv_linuxu.kill(inst, DRV_KILL_FORCE); /* nothing to stop */
	drv_linuxu.destroy(inst);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(refused_calls, 1);
	unlink(path);
}

/* Binds: read-only at the same path, runnerd's own files under them shadowed, the start directory the
 * caller's only when a bind shows it; under a per-run uid a directory closed to others is left out. */
static void test_prepare_binds(void **unused)
{
	char path[] = "/tmp/test_linuxu_imgXXXXXX", top[] = "/tmp/test_linuxu_bindXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_elf(path, ".text");
	chmod(path, 0755);
	assert_non_null(mkdtemp(top));
	chmod(top, 0755);
	char data[64], sock[64], closed[64], cwd[64];
	snprintf(data, sizeof(data), "%s/data", top);
	snprintf(sock, sizeof(sock), "%s/s.sock", top);
	snprintf(closed, sizeof(closed), "%s/closed", top);
	snprintf(cwd, sizeof(cwd), "%s/sub", top);
	assert_int_equal(mkdir(data, 0700), 0);
	assert_int_equal(mkdir(closed, 0700), 0);
	fd = open(sock, O_CREAT | O_WRONLY, 0600);
	close(fd);
	char *binds[] = {top, closed, NULL};
	char *hide[] = {data, sock, "/elsewhere", NULL};
	struct drv_spec spec = {.image_path = path, .image_name = "app", .binds = binds, .nbinds = 2,
	                        .cwd = cwd, .hide = hide, .nhide = 3, .flags = DRV_F_STREAMS | DRV_F_STDIN};
	struct linuxu_state st = {0};
	struct drv_instance *inst = NULL;
	char *err = NULL, want[1024];
	assert_int_equal(drv_linuxu.prepare(&st, &spec, &inst, &err), 0);
	assert_true(inst->split);
	assert_true(inst->want_stdin);
	char *all = join_from(inst->cmd, 0);
	snprintf(want, sizeof(want), "|--ro-bind|%s|%s|--ro-bind|%s|%s|--size|4096|--tmpfs|%s|--remount-ro|%s|"
	         "--ro-bind|/dev/null|%s|", top, top, closed, closed, data, data, sock);
	assert_non_null(strstr(all, want));
	assert_null(strstr(all, "/elsewhere")); /* not under a bind: nothing to hide */
	snprintf(want, sizeof(want), "|--chdir|%s|", cwd);
	assert_non_null(strstr(all, want));
	free(all);
	drv_linuxu.destroy(inst);

	/* Not under a bind: the sandbox's /tmp. A Unikraft image keeps one stream and its terminal. */
	spec.cwd = "/not/shown";
	spec.flags = DRV_F_UNIKRAFT | DRV_F_STREAMS | DRV_F_STDIN;
	assert_int_equal(drv_linuxu.prepare(&st, &spec, &inst, &err), 0);
	assert_false(inst->split);
	assert_false(inst->want_stdin);
	all = join_from(inst->cmd, 0);
	assert_non_null(strstr(all, "|--chdir|/tmp|"));
	free(all);
	drv_linuxu.destroy(inst);

	/* A per-run uid cannot reach a 0700 directory: left out, with a note naming it. */
	st.limits = LINUXU_LIMITS_UID;
	spec.flags = 0;
	assert_int_equal(drv_linuxu.prepare(&st, &spec, &inst, &err), 0);
	assert_int_equal(inst->nbinds, 1);
	assert_string_equal(inst->binds[0], top);
	assert_non_null(inst->bind_note);
	assert_non_null(strstr(inst->bind_note, closed));
	drv_linuxu.destroy(inst);

	unlink(sock);
	rmdir(data);
	rmdir(closed);
	rmdir(top);
	unlink(path);
}

/* Run `c` with cmd_start, its stdout captured into `out`; returns the exit status. */
static int start_and_wait(struct cmd *c, char *out, size_t cap)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	cmd_stdio_fd(c, 1, p[1]);
	pid_t pid = 0;
	int pidfd = -1;
	char *err = NULL;
	assert_int_equal(cmd_start(c, &pid, &pidfd, &err), 0);
	assert_null(err);
	close(p[1]);
	size_t len = 0;
	ssize_t n;
	while ((n = read(p[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(p[0]);
	struct pollfd pf = {.fd = pidfd, .events = POLLIN};
	assert_int_equal(poll(&pf, 1, 10000), 1); /* the pidfd says when it exited */
	int64_t status = -1;
	int sig = -1;
	assert_int_equal(cmd_reap(pid, &status, &sig), 1);
	assert_int_equal(sig, 0);
	close(pidfd);
	return (int)status;
}

/* cmd_start sets every limit (soft = hard) and, for root, the uid, gid and no groups before
 * the exec, resets the daemon's ignored signals, and names the step that failed. */
static void test_cmd_start(void **unused)
{
	static char out[65536];
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	sigaction(SIGPIPE, &ign, &old);
	struct cmd *c = cmd_new("cat");
	cmd_arg(c, "/proc/self/limits");
	cmd_arg(c, "/proc/self/status");
	cmd_rlimit(c, RLIMIT_NOFILE, 17);
	cmd_rlimit(c, RLIMIT_CPU, 3600);
	cmd_rlimit(c, RLIMIT_CORE, 0);
	cmd_rlimit(c, RLIMIT_DATA, 1ull << 30);
	cmd_rlimit(c, RLIMIT_FSIZE, 5ull << 20);
	int root = getuid() == 0;
	gid_t extra = 4242;
	if (root) {
		cmd_user(c, LINUXU_UID_BASE + 7, LINUXU_UID_BASE + 7);
		assert_int_equal(setgroups(1, &extra), 0); /* a group the child must not keep */
	}
	assert_int_equal(start_and_wait(c, out, sizeof(out)), 0);
	if (root)
		assert_int_equal(setgroups(0, NULL), 0);
	cmd_free(c);
	assert_non_null(strstr(out, "Max open files            17                   17 "));
	assert_non_null(strstr(out, "Max cpu time              3600                 3600 "));
	assert_non_null(strstr(out, "Max core file size        0                    0 "));
	assert_non_null(strstr(out, "Max data size             1073741824           1073741824 "));
	assert_non_null(strstr(out, "Max file size             5242880              5242880 "));
	assert_non_null(strstr(out, "\nSigIgn:\t0000000000000000\n"));
	if (root) {
		char want[128];
		snprintf(want, sizeof(want), "\nUid:\t%u\t%u\t%u\t%u\n", LINUXU_UID_BASE + 7, LINUXU_UID_BASE + 7,
		         LINUXU_UID_BASE + 7, LINUXU_UID_BASE + 7);
		assert_non_null(strstr(out, want));
		snprintf(want, sizeof(want), "\nGid:\t%u\t%u\t%u\t%u\n", LINUXU_UID_BASE + 7, LINUXU_UID_BASE + 7,
		         LINUXU_UID_BASE + 7, LINUXU_UID_BASE + 7);
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, "\nGroups:\t \n")); /* none (the kernel ends the list with a space) */
		assert_non_null(strstr(out, "\nCapEff:\t0000000000000000\n"));
	}
	sigaction(SIGPIPE, &old, NULL);

	/* A step that fails is named, and nothing runs. */
	pid_t pid = 0;
	int pidfd = -1;
	char *err = NULL;
	c = cmd_new("true");
	cmd_cwd(c, "/nonexistent-ukrun-dir");
	assert_int_equal(cmd_start(c, &pid, &pidfd, &err), -ENOENT);
	assert_string_equal(err, "Failed to start 'true': cannot enter '/nonexistent-ukrun-dir': No such file or directory");
	free(err);
	err = NULL;
	cmd_free(c);
	c = cmd_new("/nonexistent-ukrun-prog");
	assert_int_equal(cmd_start(c, &pid, &pidfd, &err), -ENOENT);
	assert_string_equal(err, "Failed to start '/nonexistent-ukrun-prog': No such file or directory");
	free(err);
	err = NULL;
	cmd_free(c);
	c = cmd_new("true");
	if (root) /* above nr_open: refused even with CAP_SYS_RESOURCE */
		cmd_rlimit(c, RLIMIT_NOFILE, 1ull << 40);
	else
		cmd_user(c, 0, 0);
	assert_true(cmd_start(c, &pid, &pidfd, &err) < 0);
	assert_non_null(err);
	assert_non_null(strstr(err, root ? "cannot set RLIMIT_NOFILE: " : "cannot clear the supplementary groups: "));
	free(err);
	cmd_free(c);
	/* cmd_run_sync takes the same steps and says why the program did not start. */
	c = cmd_new("true");
	cmd_cwd(c, "/nonexistent-ukrun-dir");
	char *o = NULL;
	assert_int_equal(cmd_run_sync(c, 5000, 1024, &o), -ENOENT);
	assert_non_null(o);
	assert_non_null(strstr(o, "cannot enter '/nonexistent-ukrun-dir'"));
	free(o);
	cmd_free(c);
}

/* cmd_kill_reap ends a child that can no longer be watched: killed by SIGKILL and reaped;
 * one that already exited keeps its status; one that cannot be reaped counts as killed. */
static void test_cmd_kill_reap(void **unused)
{
	pid_t pid = 0;
	int pidfd = -1;
	char *err = NULL;
	int64_t status = -1;
	int sig = -1;
	struct cmd *c = cmd_new("sleep");
	cmd_arg(c, "60");
	assert_int_equal(cmd_start(c, &pid, &pidfd, &err), 0);
	cmd_free(c);
	cmd_kill_reap(pid, &status, &sig);
	assert_int_equal(sig, SIGKILL);
	assert_int_equal(status, 0);
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1); /* reaped */
	assert_int_equal(errno, ECHILD);
	status = sig = -1;
	cmd_kill_reap(pid, &status, &sig); /* nothing left to reap: never an exit 0 */
	assert_int_equal(sig, SIGKILL);
	assert_int_equal(status, 0);
	close(pidfd);

	c = cmd_new("sh");
	cmd_arg(c, "-c");
	cmd_arg(c, "exit 3");
	assert_int_equal(cmd_start(c, &pid, &pidfd, &err), 0);
	cmd_free(c);
	struct pollfd pf = {.fd = pidfd, .events = POLLIN};
	assert_int_equal(poll(&pf, 1, 10000), 1);
	cmd_kill_reap(pid, &status, &sig);
	assert_int_equal(sig, 0);
	assert_int_equal(status, 3);
	close(pidfd);
	(void)unused;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_args),     cmocka_unit_test(test_guest_name),
		cmocka_unit_test(test_status_json),    cmocka_unit_test(test_status_stream),
		cmocka_unit_test(test_exit_mapping),   cmocka_unit_test(test_libparam_detect),
		cmocka_unit_test(test_prepare_argv),   cmocka_unit_test(test_prepare_uid),
		cmocka_unit_test(test_prepare_binds),
		cmocka_unit_test(test_uid_pool),       cmocka_unit_test(test_nproc),
		cmocka_unit_test(test_refused),        cmocka_unit_test(test_cmd_start),
		cmocka_unit_test(test_cmd_kill_reap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
