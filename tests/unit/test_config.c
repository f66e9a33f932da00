/*
 * test_config.c — runnerd's settings: every key of config_apply with its
 * bounds, and runnerd.conf read through config_read from real files (top-level
 * keys only, the first bad line reported, a missing file told apart).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static void test_apply_numbers(void **state)
{
	struct config c = {0};
	(void)state;
	assert_int_equal(config_apply(&c, "timeout", "604800"), 0);
	assert_int_equal(c.run_timeout_s, 604800);
	assert_int_equal(config_apply(&c, "timeout", "604801"), -EINVAL);
	assert_int_equal(c.run_timeout_s, 604800);
	assert_int_equal(config_apply(&c, "max-concurrent", "1024"), 0);
	assert_int_equal(c.max_concurrent, 1024);
	assert_int_equal(config_apply(&c, "max-concurrent", "1025"), -EINVAL);
	assert_int_equal(config_apply(&c, "max-queued", "0"), 0);
	assert_int_equal(c.max_queued, 0);
	assert_int_equal(config_apply(&c, "console-cap", "1099511627776"), 0);
	assert_true(c.console_cap == 1ull << 40);
	assert_int_equal(config_apply(&c, "max-image-size", "1099511627777"), -EINVAL);
	assert_int_equal(config_apply(&c, "console-grace-ms", "3600000"), 0);
	assert_int_equal(c.console_grace_ms, 3600000);
	assert_int_equal(config_apply(&c, "idle-timeout", "0"), 0);
	assert_int_equal(c.idle_timeout_s, 0);
	static const char *const bad[] = { "", "-1", "12x", "1 ", "1.5", "0x10", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(config_apply(&c, "timeout", bad[i]), -EINVAL);
	assert_int_equal(c.run_timeout_s, 604800);
}

static void test_apply_strings(void **state)
{
	struct config c = {0};
	(void)state;
	assert_int_equal(config_apply(&c, "socket", "/tmp/a.sock"), 0);
	assert_int_equal(config_apply(&c, "socket", "/tmp/b.sock"), 0); /* replaces, no leak */
	assert_string_equal(c.socket_path, "/tmp/b.sock");
	assert_int_equal(config_apply(&c, "data-dir", "/d"), 0);
	assert_int_equal(config_apply(&c, "listen", "tcp://127.0.0.1:1"), 0);
	assert_int_equal(config_apply(&c, "token-file", "/t"), 0);
	assert_int_equal(config_apply(&c, "log", "/l"), 0);
	assert_string_equal(c.data_dir, "/d");
	assert_string_equal(c.listen_tcp, "tcp://127.0.0.1:1");
	assert_string_equal(c.token_file, "/t");
	assert_string_equal(c.log_file, "/l");
	assert_int_equal(config_apply(&c, "tls-cert", "/c.pem"), 0);
	assert_int_equal(config_apply(&c, "tls-key", "/k.pem"), 0);
	assert_string_equal(c.tls_cert, "/c.pem");
	assert_string_equal(c.tls_key, "/k.pem");
	assert_int_equal(config_apply(&c, "log-level", "debug"), 0);
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_int_equal(config_apply(&c, "log-level", "error"), 0);
	assert_int_equal(c.log_level, LOG_ERROR);
	assert_int_equal(config_apply(&c, "log-level", "verbose"), -EINVAL);
	assert_int_equal(config_apply(&c, "sockets", "/x"), -ENOENT);
	assert_int_equal(config_apply(&c, "Timeout", "1"), -ENOENT);
	config_free(&c);
	assert_null(c.socket_path);
	assert_null(c.tls_cert);
	assert_null(c.tls_key);
	config_free(&c); /* twice is fine */
}

/* Write `text` to a fresh temp file; its path in `path`. */
static void write_conf(char *path, size_t len, const char *text)
{
	snprintf(path, len, "/tmp/ukrun-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_read_file(void **state)
{
	struct config c = { .run_timeout_s = 300, .max_queued = 1000 };
	char path[64];
	(void)state;
	write_conf(path, sizeof(path),
	           "# runnerd.conf\n"
	           "socket = /tmp/x.sock\n"
	           "timeout=42\n"
	           "; a comment\n"
	           "\n"
	           "[elsewhere]\n"
	           "timeout = 7\n"
	           "not-ours = anything\n");
	assert_int_equal(config_read(&c, path), 0);
	assert_string_equal(c.socket_path, "/tmp/x.sock");
	assert_int_equal(c.run_timeout_s, 42); /* keys in sections are not runnerd's: ignored */
	assert_int_equal(c.max_queued, 1000);
	unlink(path);
	config_free(&c);
}

/* [host NAME] sections: remote libvirt hosts with a URI and a capacity. */
static void test_read_hosts(void **state)
{
	struct config c = {0};
	char path[64];
	(void)state;
	write_conf(path, sizeof(path),
	           "[host kvm-1]\nuri = qemu+tcp://10.0.0.1/system\ncapacity = 8\n"
	           "[host kvm-2]\nuri = qemu+ssh://ci@10.0.0.2/system\n");
	assert_int_equal(config_read(&c, path), 0);
	assert_int_equal(c.nhosts, 2);
	assert_string_equal(c.hosts[0].name, "kvm-1");
	assert_string_equal(c.hosts[0].uri, "qemu+tcp://10.0.0.1/system");
	assert_int_equal(c.hosts[0].capacity, 8);
	assert_string_equal(c.hosts[1].uri, "qemu+ssh://ci@10.0.0.2/system");
	assert_int_equal(c.hosts[1].capacity, 4);
	unlink(path);
	config_free(&c);
	memset(&c, 0, sizeof(c));
	write_conf(path, sizeof(path), "[host local]\nuri = qemu+tcp://x/system\n"); /* "local" is this machine */
	assert_int_equal(config_read(&c, path), 2);
	unlink(path);
	config_free(&c);
	memset(&c, 0, sizeof(c));
	write_conf(path, sizeof(path), "[host a]\nuri = qemu+tcp://x/system\ncapacity = 0\n");
	assert_int_equal(config_read(&c, path), 3);
	unlink(path);
	config_free(&c);
	memset(&c, 0, sizeof(c));
	write_conf(path, sizeof(path), "[host a]\ncapacity = 2\n"); /* no uri */
	assert_int_equal(config_read(&c, path), 1);
	unlink(path);
	config_free(&c);
	memset(&c, 0, sizeof(c));
	write_conf(path, sizeof(path), "[host a]\nuri = qemu+tcp://x/system\nlabel = kvm\n");
	assert_int_equal(config_read(&c, path), 3);
	unlink(path);
	config_free(&c);
}

static void test_read_bad_lines(void **state)
{
	struct config c = {0};
	char path[64];
	(void)state;
	write_conf(path, sizeof(path), "timeout = 5\nmax-queued = lots\n");
	assert_int_equal(config_read(&c, path), 2);
	assert_int_equal(c.run_timeout_s, 5);
	unlink(path);
	write_conf(path, sizeof(path), "\n\n\nbogus = 1\n");
	assert_int_equal(config_read(&c, path), 4);
	unlink(path);
	write_conf(path, sizeof(path), "this line has no equals sign\n");
	assert_int_equal(config_read(&c, path), 1);
	unlink(path);
	assert_true(config_read(&c, "/nonexistent/runnerd.conf") < 0);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply_numbers),
		cmocka_unit_test(test_apply_strings),
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_read_hosts),
		cmocka_unit_test(test_read_bad_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
