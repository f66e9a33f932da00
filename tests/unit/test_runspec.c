/*
 * test_runspec.c — the run request parser: a full valid request, then every
 * field's type and range errors (the message names the field), unknown and
 * duplicate keys, argument characters and byte caps, uk_params format, machine
 * charset, labels bounds, success_code and non-object bodies. Partial failures
 * must free what was built (the sanitizer build checks for leaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runspec.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* Parse `json`; expect -EINVAL with an error message containing `needle`. */
static void expect_bad(const char *json, const char *needle)
{
	struct run_request req;
	char *err = NULL;
	int r = runspec_parse(json, strlen(json), &req, &err);
	if (r != -EINVAL || !err || !strstr(err, needle))
		print_error("request %s: r=%d err=%s (wanted '%s')\n", json, r, err ? err : "(null)", needle);
	assert_int_equal(r, -EINVAL);
	assert_non_null(err);
	assert_non_null(strstr(err, needle));
	/* Failure leaves a freed, reset request. */
	assert_null(req.args);
	assert_null(req.uk_params);
	assert_null(req.labels);
	assert_null(req.name);
	assert_null(req.machine);
	free(err);
}

static void parse_ok(const char *json, struct run_request *req)
{
	char *err = NULL;
	int r = runspec_parse(json, strlen(json), req, &err);
	if (r < 0)
		print_error("request %s: %s\n", json, err ? err : "(null)");
	assert_int_equal(r, 0);
	assert_null(err);
}

static void test_full_request(void **state)
{
	(void)state;
	const char *json = "{\"image\":\"" SHA_A "\",\"loader\":\"" SHA_B "\",\"name\":\"app.elf\","
	                   "\"platform\":\"qemu\",\"args\":[\"--test\",\"a\\tb\",\"\"],"
	                   "\"uk_params\":[\"vfs.fstab=x\",\"netdev.ip=1.2.3.4/24\"],\"memory_mb\":256,"
	                   "\"vcpus\":2,\"timeout_s\":60,\"accel\":\"tcg\",\"machine\":\"pc-q35_8.0\","
	                   "\"success_code\":0,\"labels\":{\"ci/job\":\"42\",\"suite\":\"\"},\"host\":\"local\"}";
	struct run_request req;
	parse_ok(json, &req);
	assert_string_equal(req.image, SHA_A);
	assert_string_equal(req.loader, SHA_B);
	assert_string_equal(req.name, "app.elf");
	assert_int_equal(req.platform, DRV_PLATFORM_QEMU);
	assert_int_equal(req.nargs, 3);
	assert_string_equal(req.args[0], "--test");
	assert_string_equal(req.args[1], "a\tb");
	assert_string_equal(req.args[2], "");
	assert_null(req.args[3]);
	assert_int_equal(req.nuk_params, 2);
	assert_string_equal(req.uk_params[0], "vfs.fstab=x");
	assert_string_equal(req.uk_params[1], "netdev.ip=1.2.3.4/24");
	assert_null(req.uk_params[2]);
	assert_int_equal(req.memory_mb, 256);
	assert_int_equal(req.vcpus, 2);
	assert_int_equal(req.timeout_s, 60);
	assert_int_equal(req.accel, DRV_ACCEL_TCG);
	assert_string_equal(req.machine, "pc-q35_8.0");
	assert_int_equal(req.success_code, 0);
	assert_non_null(req.labels);
	assert_string_equal(json_string_value(json_object_get(req.labels, "ci/job")), "42");
	assert_string_equal(json_string_value(json_object_get(req.labels, "suite")), "");
	runspec_free(&req);
	assert_null(req.args);
	assert_int_equal(req.success_code, -1);
	/* runspec_free twice is harmless (the struct was reset). */
	runspec_free(&req);
}

static void test_minimal_defaults(void **state)
{
	(void)state;
	struct run_request req;
	parse_ok("{\"image\":\"" SHA_A "\",\"name\":null,\"machine\":null,\"labels\":null,"
	         "\"success_code\":null,\"memory_mb\":null,\"platform\":\"auto\",\"accel\":\"auto\",\"loader\":\"\"}",
	         &req);
	assert_string_equal(req.image, SHA_A);
	assert_string_equal(req.loader, "");
	assert_null(req.name);
	assert_null(req.machine);
	assert_null(req.labels);
	assert_int_equal(req.platform, DRV_PLATFORM_NONE);
	assert_int_equal(req.accel, DRV_ACCEL_AUTO);
	assert_int_equal(req.success_code, -1);
	assert_int_equal(req.memory_mb, 0);
	assert_int_equal(req.vcpus, 0);
	assert_int_equal(req.timeout_s, 0);
	assert_int_equal(req.nargs, 0);
	assert_non_null(req.args);
	assert_null(req.args[0]);
	assert_int_equal(req.nuk_params, 0);
	assert_non_null(req.uk_params);
	runspec_free(&req);

	parse_ok("{\"image\":\"" SHA_A "\",\"platform\":\"linuxu\",\"accel\":\"kvm\"}", &req);
	assert_int_equal(req.platform, DRV_PLATFORM_LINUXU);
	assert_int_equal(req.accel, DRV_ACCEL_KVM);
	runspec_free(&req);
}

static void test_field_types_and_ranges(void **state)
{
	(void)state;
	static const struct {
		const char *extra; /* appended after the image field */
		const char *needle;
	} rows[] = {
		{ "", NULL },
		{ ",\"memory_mb\":0", "'memory_mb'" },
		{ ",\"memory_mb\":65537", "'memory_mb'" },
		{ ",\"memory_mb\":-1", "'memory_mb'" },
		{ ",\"memory_mb\":1.5", "'memory_mb'" },
		{ ",\"memory_mb\":\"256\"", "'memory_mb'" },
		{ ",\"memory_mb\":4294967297", "'memory_mb'" },
		{ ",\"vcpus\":0", "'vcpus'" },
		{ ",\"vcpus\":65", "'vcpus'" },
		{ ",\"vcpus\":true", "'vcpus'" },
		{ ",\"timeout_s\":0", "'timeout_s'" },
		{ ",\"timeout_s\":604801", "'timeout_s'" },
		{ ",\"timeout_s\":[]", "'timeout_s'" },
		{ ",\"success_code\":-1", "'success_code'" },
		{ ",\"success_code\":2147483648", "'success_code'" },
		{ ",\"success_code\":\"0\"", "'success_code'" },
		{ ",\"name\":5", "'name'" },
		{ ",\"name\":\"a/b\"", "'name'" },
		{ ",\"name\":\"a\\nb\"", "'name'" },
		{ ",\"platform\":\"vmware\"", "platform 'vmware'" },
		{ ",\"platform\":1", "'platform'" },
		{ ",\"accel\":\"hvf\"", "accel 'hvf'" },
		{ ",\"accel\":{}", "'accel'" },
		{ ",\"host\":\"remote 1\"", "'host' must be a host name" }, /* which hosts exist: run.c */
		{ ",\"host\":false", "'host'" },
		{ ",\"loader\":\"abc\"", "'loader'" },
		{ ",\"loader\":7", "'loader'" },
		{ ",\"args\":\"--x\"", "'args'" },
		{ ",\"args\":null", "'args'" },
		{ ",\"args\":[1]", "'args[0]'" },
		{ ",\"args\":[\"ok\",null]", "'args[1]'" },
		{ ",\"uk_params\":{}", "'uk_params'" },
		{ ",\"uk_params\":[\"a=b\",3]", "'uk_params[1]'" },
		{ ",\"labels\":[]", "'labels'" },
		{ ",\"labels\":\"x\"", "'labels'" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char json[512];
		snprintf(json, sizeof(json), "{\"image\":\"" SHA_A "\"%s}", rows[i].extra);
		if (!rows[i].needle) {
			struct run_request req;
			parse_ok(json, &req);
			runspec_free(&req);
		} else {
			expect_bad(json, rows[i].needle);
		}
	}
	/* Upper bounds are inclusive. */
	struct run_request req;
	parse_ok("{\"image\":\"" SHA_A "\",\"memory_mb\":65536,\"vcpus\":64,\"timeout_s\":604800,"
	         "\"success_code\":2147483647}", &req);
	assert_int_equal(req.memory_mb, RUNSPEC_MAX_MEMORY_MB);
	assert_int_equal(req.vcpus, RUNSPEC_MAX_VCPUS);
	assert_int_equal(req.timeout_s, 604800);
	assert_int_equal(req.success_code, 0x7fffffff);
	runspec_free(&req);
}

static void test_image_required(void **state)
{
	(void)state;
	expect_bad("{}", "'image'");
	expect_bad("{\"image\":null}", "'image'");
	expect_bad("{\"image\":12}", "'image'");
	expect_bad("{\"image\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}", "'image'");
	expect_bad("{\"image\":\"" SHA_A "a\"}", "'image'");
	expect_bad("{\"image\":\"" SHA_A "\",\"image\":\"" SHA_B "\"}", "");
}

static void test_unknown_and_duplicate(void **state)
{
	(void)state;
	expect_bad("{\"image\":\"" SHA_A "\",\"memory\":128}", "unknown field 'memory'");
	expect_bad("{\"image\":\"" SHA_A "\",\"Args\":[]}", "unknown field 'Args'");
	expect_bad("{\"image\":\"" SHA_A "\",\"vcpus\":1,\"vcpus\":2}", "duplicate");
	expect_bad("{\"image\":\"" SHA_A "\",\"labels\":{\"a\":\"1\",\"a\":\"2\"}}", "duplicate");
}

static void test_not_an_object(void **state)
{
	(void)state;
	expect_bad("[]", "must be a JSON object");
	expect_bad("{\"labels\":{}}[]", "malformed JSON");
	/* Scalars are refused by the JSON decoder itself (no JSON_DECODE_ANY). */
	expect_bad("\"x\"", "malformed JSON");
	expect_bad("42", "malformed JSON");
	expect_bad("null", "malformed JSON");
	expect_bad("", "malformed JSON");
	expect_bad("{", "malformed JSON");
	expect_bad("{\"image\": \"" SHA_A "\",}", "malformed JSON");
	/* Only `len` bytes count: a valid prefix followed by garbage outside len parses. */
	const char *text = "{\"image\":\"" SHA_A "\"}GARBAGE";
	struct run_request req;
	char *err = NULL;
	assert_int_equal(runspec_parse(text, strlen(text) - 7, &req, &err), 0);
	runspec_free(&req);
	assert_int_equal(runspec_parse(text, strlen(text), &req, &err), -EINVAL);
	free(err);
}

/* Since 401528f arguments may hold any character a JSON string can carry (newlines and tabs
 * are valid argv on linuxu; the qemu driver quotes them or refuses them per kernel kind).
 * Only NUL cannot pass: the JSON decoder refuses \u0000, so no argument is cut short. */
static void test_args_characters(void **state)
{
	(void)state;
	struct run_request req;
	parse_ok("{\"image\":\"" SHA_A "\",\"args\":[\"a\\nb\",\"x\\ty\",\"\\r\\u001b[31m\",\"h\\u00e9\"],"
	         "\"uk_params\":[\"a=\\u0001\"]}", &req);
	assert_int_equal(req.nargs, 4);
	assert_string_equal(req.args[0], "a\nb");
	assert_string_equal(req.args[1], "x\ty");
	assert_string_equal(req.args[2], "\r\x1b[31m");
	assert_string_equal(req.args[3], "h\xc3\xa9");
	assert_string_equal(req.uk_params[0], "a=\x01");
	runspec_free(&req);
	expect_bad("{\"image\":\"" SHA_A "\",\"args\":[\"a\\u0000b\"]}", "malformed JSON");
	expect_bad("{\"image\":\"" SHA_A "\",\"uk_params\":[\"a=\\u0000\"]}", "malformed JSON");
}

/* A request with `n` args of `each` bytes plus `params` uk_params of `each` bytes. */
static char *big_request(size_t n, size_t each, size_t params)
{
	size_t cap = (n + params) * (each + 8) + 256;
	char *s = malloc(cap), *p = s;
	p += sprintf(p, "{\"image\":\"" SHA_A "\",\"args\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		*p++ = '"';
		memset(p, 'x', each);
		p += each;
		*p++ = '"';
	}
	p += sprintf(p, "],\"uk_params\":[");
	for (size_t i = 0; i < params; i++) {
		p += sprintf(p, "%s\"a=", i ? "," : "");
		memset(p, 'y', each - 2);
		p += each - 2;
		*p++ = '"';
	}
	p += sprintf(p, "]}");
	assert_true((size_t)(p - s) < cap);
	return s;
}

static void test_args_byte_cap(void **state)
{
	(void)state;
	struct run_request req;
	char *err = NULL;
	/* 64 args of 1023 bytes (+1 each) = exactly 64 KiB: allowed. */
	char *s = big_request(64, 1023, 0);
	assert_int_equal(runspec_parse(s, strlen(s), &req, &err), 0);
	assert_int_equal(req.nargs, 64);
	runspec_free(&req);
	free(s);
	/* One byte more is refused. */
	s = big_request(63, 1023, 1);
	assert_int_equal(runspec_parse(s, strlen(s), &req, &err), 0);
	runspec_free(&req);
	free(s);
	s = big_request(64, 1024, 0);
	assert_int_equal(runspec_parse(s, strlen(s), &req, &err), -EINVAL);
	assert_non_null(strstr(err, "65536 bytes"));
	free(err);
	free(s);
	/* The cap covers args and uk_params together: the overflow lands in uk_params. */
	s = big_request(60, 1023, 5);
	err = NULL;
	assert_int_equal(runspec_parse(s, strlen(s), &req, &err), -EINVAL);
	assert_non_null(strstr(err, "bytes in all"));
	assert_null(req.args);
	free(err);
	free(s);
	/* Too many items. */
	s = big_request(RUNSPEC_MAX_ARGS + 1, 1, 0);
	err = NULL;
	assert_int_equal(runspec_parse(s, strlen(s), &req, &err), -EINVAL);
	assert_non_null(strstr(err, "'args' has 1025 items"));
	free(err);
	free(s);
	s = big_request(RUNSPEC_MAX_ARGS, 1, 0);
	assert_int_equal(runspec_parse(s, strlen(s), &req, &err), 0);
	assert_int_equal(req.nargs, RUNSPEC_MAX_ARGS);
	runspec_free(&req);
	free(s);
}

static void test_uk_params_format(void **state)
{
	(void)state;
	expect_bad("{\"image\":\"" SHA_A "\",\"uk_params\":[\"novalue\"]}", "'uk_params[0]' must look like");
	expect_bad("{\"image\":\"" SHA_A "\",\"uk_params\":[\"a=1\",\"b = 2\"]}", "'uk_params[1]'");
	expect_bad("{\"image\":\"" SHA_A "\",\"uk_params\":[\"--\"]}", "'uk_params[0]'");
	expect_bad("{\"image\":\"" SHA_A "\",\"uk_params\":[\"\"]}", "'uk_params[0]'");
	struct run_request req;
	parse_ok("{\"image\":\"" SHA_A "\",\"uk_params\":[\"a=\",\"x.y=z=w\"]}", &req);
	assert_int_equal(req.nuk_params, 2);
	assert_string_equal(req.uk_params[1], "x.y=z=w");
	runspec_free(&req);
}

static void test_driver(void **state)
{
	(void)state;
	struct run_request req;
	parse_ok("{\"image\":\"" SHA_A "\"}", &req);
	assert_null(req.driver); /* default: the platform's first driver */
	runspec_free(&req);
	parse_ok("{\"image\":\"" SHA_A "\",\"driver\":\"libvirt\"}", &req);
	assert_string_equal(req.driver, "libvirt");
	runspec_free(&req);
	assert_null(req.driver);
	parse_ok("{\"image\":\"" SHA_A "\",\"driver\":null}", &req);
	assert_null(req.driver);
	runspec_free(&req);
	expect_bad("{\"image\":\"" SHA_A "\",\"driver\":\"\"}", "'driver'");
	expect_bad("{\"image\":\"" SHA_A "\",\"driver\":\"lib virt\"}", "'driver'");
	expect_bad("{\"image\":\"" SHA_A "\",\"driver\":\"a/b\"}", "'driver'");
	expect_bad("{\"image\":\"" SHA_A "\",\"driver\":7}", "'driver'");
}

static void test_machine_charset(void **state)
{
	(void)state;
	expect_bad("{\"image\":\"" SHA_A "\",\"machine\":\"pc,accel=kvm\"}", "'machine'");
	expect_bad("{\"image\":\"" SHA_A "\",\"machine\":\"\"}", "'machine'");
	expect_bad("{\"image\":\"" SHA_A "\",\"machine\":\"q35 x\"}", "'machine'");
	expect_bad("{\"image\":\"" SHA_A "\",\"machine\":\"a/b\"}", "'machine'");
	expect_bad("{\"image\":\"" SHA_A "\",\"machine\":3}", "'machine'");
	char json[256];
	char name[66];
	memset(name, 'm', 65);
	name[65] = '\0';
	snprintf(json, sizeof(json), "{\"image\":\"" SHA_A "\",\"machine\":\"%s\"}", name);
	expect_bad(json, "'machine'");
	name[64] = '\0';
	snprintf(json, sizeof(json), "{\"image\":\"" SHA_A "\",\"machine\":\"%s\"}", name);
	struct run_request req;
	parse_ok(json, &req);
	assert_int_equal(strlen(req.machine), 64);
	runspec_free(&req);
	parse_ok("{\"image\":\"" SHA_A "\",\"machine\":\"microvm\"}", &req);
	assert_string_equal(req.machine, "microvm");
	runspec_free(&req);
}

static void test_labels_bounds(void **state)
{
	(void)state;
	char json[16384];
	char *p;
	struct run_request req;

	/* 64 labels are fine, 65 are not. */
	for (int n = 64; n <= 65; n++) {
		p = json + sprintf(json, "{\"image\":\"" SHA_A "\",\"labels\":{");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "%s\"k%d\":\"v\"", i ? "," : "", i);
		sprintf(p, "}}");
		if (n == 64) {
			parse_ok(json, &req);
			assert_int_equal(json_object_size(req.labels), 64);
			runspec_free(&req);
		} else {
			expect_bad(json, "'labels'");
		}
	}
	/* Key: 63 chars ok, 64 not; charset. */
	char key[70];
	memset(key, 'k', 64);
	key[64] = '\0';
	snprintf(json, sizeof(json), "{\"image\":\"" SHA_A "\",\"labels\":{\"%s\":\"v\"}}", key);
	expect_bad(json, "label '");
	key[63] = '\0';
	snprintf(json, sizeof(json), "{\"image\":\"" SHA_A "\",\"labels\":{\"%s\":\"v\"}}", key);
	parse_ok(json, &req);
	runspec_free(&req);
	expect_bad("{\"image\":\"" SHA_A "\",\"labels\":{\"\":\"v\"}}", "label ''");
	expect_bad("{\"image\":\"" SHA_A "\",\"labels\":{\"a b\":\"v\"}}", "label 'a b'");
	expect_bad("{\"image\":\"" SHA_A "\",\"labels\":{\"a=b\":\"v\"}}", "label 'a=b'");
	expect_bad("{\"image\":\"" SHA_A "\",\"labels\":{\"n\":1}}", "label 'n'");
	expect_bad("{\"image\":\"" SHA_A "\",\"labels\":{\"n\":null}}", "label 'n'");
	/* Value: 255 bytes ok, 256 not. */
	char val[300];
	memset(val, 'v', 256);
	val[256] = '\0';
	snprintf(json, sizeof(json), "{\"image\":\"" SHA_A "\",\"labels\":{\"k\":\"%s\"}}", val);
	expect_bad(json, "label 'k'");
	val[255] = '\0';
	snprintf(json, sizeof(json), "{\"image\":\"" SHA_A "\",\"labels\":{\"k\":\"%s\"}}", val);
	parse_ok(json, &req);
	runspec_free(&req);
}

static void test_success_code(void **state)
{
	(void)state;
	struct run_request req;
	parse_ok("{\"image\":\"" SHA_A "\",\"success_code\":3}", &req);
	assert_int_equal(req.success_code, 3);
	runspec_free(&req);
	parse_ok("{\"image\":\"" SHA_A "\"}", &req);
	assert_int_equal(req.success_code, -1);
	runspec_free(&req);
	expect_bad("{\"image\":\"" SHA_A "\",\"success_code\":true}", "'success_code' must be an integer from 0");
}

/* Failures after strings were already built: everything must be released (ASan's leak
 * checker fails the run otherwise) and the struct left reset. */
static void test_partial_failures_free(void **state)
{
	(void)state;
	static const char *const late[] = {
		"{\"image\":\"" SHA_A "\",\"name\":\"n\",\"machine\":\"pc\",\"args\":[\"a\",\"b\"],\"uk_params\":[\"bad\"]}",
		"{\"image\":\"" SHA_A "\",\"name\":\"n\",\"machine\":\"pc\",\"args\":[\"a\"],\"uk_params\":[\"a=1\"],\"vcpus\":0}",
		"{\"image\":\"" SHA_A "\",\"name\":\"n\",\"machine\":\"pc\",\"args\":[\"a\",\"b\",5]}",
		"{\"image\":\"" SHA_A "\",\"name\":\"n\",\"machine\":\"pc\",\"args\":[\"a\"],\"labels\":{\"k\":2}}",
		"{\"image\":\"" SHA_A "\",\"name\":\"n\",\"machine\":\"pc\",\"args\":[\"a\"],\"success_code\":-5}",
		"{\"image\":\"" SHA_A "\",\"name\":\"n\",\"machine\":\"pc,x\"}",
		"{\"image\":\"" SHA_A "\",\"name\":\"n\",\"host\":\"a/b\"}",
	};
	for (size_t i = 0; i < sizeof(late) / sizeof(late[0]); i++) {
		struct run_request req;
		char *err = NULL;
		assert_int_equal(runspec_parse(late[i], strlen(late[i]), &req, &err), -EINVAL);
		assert_non_null(err);
		assert_null(req.name);
		assert_null(req.machine);
		assert_null(req.args);
		assert_null(req.uk_params);
		assert_null(req.labels);
		assert_int_equal(req.success_code, -1);
		free(err);
		/* A NULL ret_err is allowed. */
		assert_int_equal(runspec_parse(late[i], strlen(late[i]), &req, NULL), -EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_request),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_field_types_and_ranges),
		cmocka_unit_test(test_image_required),
		cmocka_unit_test(test_unknown_and_duplicate),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_args_characters),
		cmocka_unit_test(test_args_byte_cap),
		cmocka_unit_test(test_uk_params_format),
		cmocka_unit_test(test_machine_charset),
		cmocka_unit_test(test_driver),
		cmocka_unit_test(test_labels_bounds),
		cmocka_unit_test(test_success_code),
		cmocka_unit_test(test_partial_failures_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
