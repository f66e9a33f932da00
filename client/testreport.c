/* Test results as text and JUnit XML: see testreport.h. */
#include "testreport.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *sval(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static json_int_t ival(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

void testreport_summary(const json_t *tests, char *buf, size_t len)
{
	const json_t *s = json_object_get(tests, "summary");
	const char *fw = sval(tests, "framework");
	const char *crashed_in = sval(s, "crashed_in");
	size_t n;

	snprintf(buf, len, "%s: %lld ok, %lld failed, %lld ignored", fw ? fw : "tests", (long long)ival(s, "ok"),
	         (long long)ival(s, "failed"), (long long)ival(s, "ignored"));
	n = strlen(buf);
	if (ival(s, "crashed") && n < len)
		n += (size_t)snprintf(buf + n, len - n, ", %lld crashed", (long long)ival(s, "crashed"));
	if (ival(s, "not_run") && n < len)
		n += (size_t)snprintf(buf + n, len - n, ", %lld not run", (long long)ival(s, "not_run"));
	if (ival(s, "running") && n < len)
		n += (size_t)snprintf(buf + n, len - n, ", %lld without a result", (long long)ival(s, "running"));
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n, " (%lld test%s)", (long long)ival(s, "total"),
		                      ival(s, "total") == 1 ? "" : "s");
	if (crashed_in && n < len)
		snprintf(buf + n, len - n, "; the run crashed during %s%s", crashed_in,
		         ival(s, "not_run") ? ", the tests after it did not run" : "");
}

/* `text` with each line after the first indented by `indent`. */
static void print_indented(FILE *f, const char *text, const char *indent)
{
	for (const char *p = text; *p; p++) {
		fputc(*p, f);
		if (*p == '\n' && p[1])
			fputs(indent, f);
	}
	fputc('\n', f);
}

static const char *status_word(const char *outcome)
{
	if (!outcome)
		return "?";
	if (!strcmp(outcome, "failed"))
		return "FAILED";
	if (!strcmp(outcome, "crashed"))
		return "CRASHED";
	if (!strcmp(outcome, "not_run"))
		return "not run";
	return outcome;
}

void testreport_print(FILE *f, const json_t *tests)
{
	const json_t *c;
	size_t i;
	char sum[512];

	json_array_foreach(json_object_get(tests, "cases"), i, c) {
		const char *name = sval(c, "name");
		const json_t *dur = json_object_get(c, "duration_s");
		const char *msg = sval(c, "message"), *loc = sval(c, "location");

		fprintf(f, "%-8s %s", status_word(sval(c, "outcome")), name ? name : "?");
		if (json_is_number(dur))
			fprintf(f, " (%.3fs)", json_number_value(dur));
		fputc('\n', f);
		if (loc)
			fprintf(f, "         at %s\n", loc);
		if (msg) {
			fputs("         ", f);
			print_indented(f, msg, "         ");
		}
	}
	testreport_summary(tests, sum, sizeof(sum));
	fprintf(f, "%s\n", sum);
}

/* ---- JUnit XML ---- */

/* Character data or an attribute value: markup escaped, newlines kept in attributes, and the
 * control characters XML 1.0 cannot carry at all shown as '?'. The input is UTF-8 (JSON). */
static void xml_text(FILE *f, const char *s, bool attr)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs(attr ? "&quot;" : "\"", f); break;
		case '\n': fputs(attr ? "&#10;" : "\n", f); break;
		case '\r': fputs("&#13;", f); break;
		case '\t': fputs(attr ? "&#9;" : "\t", f); break;
		default: fputc(c < 0x20 || c == 0x7f ? '?' : c, f); break;
		}
	}
}

static void xml_attr(FILE *f, const char *name, const char *value)
{
	fprintf(f, " %s=\"", name);
	xml_text(f, value, true);
	fputc('"', f);
}

static void xml_attr_int(FILE *f, const char *name, long long v)
{
	fprintf(f, " %s=\"%lld\"", name, v);
}

/* libtest "mod::sub::name" → classname "mod::sub", name "name"; uktest "suite->case" likewise. */
static void split_name(const char *full, const char *suite, char **ret_class, const char **ret_leaf)
{
	const char *cut = NULL, *p;
	size_t seplen = 0;

	for (p = full; (p = strstr(p, "::")); p += 2)
		cut = p, seplen = 2;
	if (!cut && (p = strstr(full, "->")))
		cut = p, seplen = 2;
	if (cut && cut > full && cut[seplen]) {
		*ret_class = strndup(full, (size_t)(cut - full));
		*ret_leaf = cut + seplen;
	} else {
		*ret_class = strdup(suite);
		*ret_leaf = full;
	}
}

static void property(FILE *f, const char *name, const char *value)
{
	if (!value)
		return;
	fputs("      <property", f);
	xml_attr(f, "name", name);
	xml_attr(f, "value", value);
	fputs("/>\n", f);
}

/* <failure>/<error> body: where, then what. */
static void problem(FILE *f, const char *elem, const char *type, const char *msg, const char *loc, const char *dflt)
{
	fprintf(f, "      <%s", elem);
	xml_attr(f, "message", msg ? msg : dflt);
	xml_attr(f, "type", type);
	fputc('>', f);
	if (loc) {
		xml_text(f, loc, false);
		fputs(msg ? ": " : "", f);
	}
	xml_text(f, msg ? msg : dflt, false);
	fprintf(f, "</%s>\n", elem);
}

int testreport_junit(FILE *f, const json_t *tests, const json_t *run)
{
	const json_t *s = json_object_get(tests, "summary");
	const char *id = sval(tests, "id");
	const char *rname = sval(run, "name");
	const char *fw = sval(tests, "framework");
	const json_t *dur = json_object_get(run, "duration_ms");
	const json_t *c;
	char suite[256], sum[512], num[32];
	long long failures = ival(s, "failed"), errors = ival(s, "crashed") + ival(s, "running");
	long long skipped = ival(s, "ignored");
	long long ntests = (long long)json_array_size(json_object_get(tests, "cases"));
	size_t i;

	snprintf(suite, sizeof(suite), "%s", rname && *rname ? rname : id ? id : "run");
	json_array_foreach(json_object_get(tests, "cases"), i, c)
		if (sval(c, "outcome") && !strcmp(sval(c, "outcome"), "not_run"))
			skipped++;
	testreport_summary(tests, sum, sizeof(sum));

	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites", f);
	xml_attr(f, "name", "ukrun");
	xml_attr_int(f, "tests", ntests);
	xml_attr_int(f, "failures", failures);
	xml_attr_int(f, "errors", errors);
	if (json_is_integer(dur))
		fprintf(f, " time=\"%.3f\"", (double)json_integer_value(dur) / 1000.0);
	fputs(">\n  <testsuite", f);
	xml_attr(f, "name", suite);
	xml_attr_int(f, "tests", ntests);
	xml_attr_int(f, "failures", failures);
	xml_attr_int(f, "errors", errors);
	xml_attr_int(f, "skipped", skipped);
	if (json_is_integer(dur))
		fprintf(f, " time=\"%.3f\"", (double)json_integer_value(dur) / 1000.0);
	if (id)
		xml_attr(f, "id", id);
	if (sval(run, "created_at"))
		xml_attr(f, "timestamp", sval(run, "created_at"));
	if (sval(run, "host"))
		xml_attr(f, "hostname", sval(run, "host"));
	if (sval(tests, "framework"))
		xml_attr(f, "package", sval(tests, "framework"));
	fputs(">\n    <properties>\n", f);
	property(f, "ukrun.run", id);
	property(f, "ukrun.platform", sval(run, "platform"));
	property(f, "ukrun.framework", sval(tests, "framework"));
	if (json_is_integer(json_object_get(run, "exit_code"))) {
		snprintf(num, sizeof(num), "%lld", (long long)ival(run, "exit_code"));
		property(f, "ukrun.exit_code", num);
	}
	property(f, "ukrun.exit_source", sval(run, "exit_source"));
	property(f, "ukrun.reason", sval(run, "reason"));
	property(f, "ukrun.summary", sum);
	fputs("    </properties>\n", f);

	json_array_foreach(json_object_get(tests, "cases"), i, c) {
		const char *name = sval(c, "name"), *oc = sval(c, "outcome"), *leaf;
		const char *msg = sval(c, "message"), *loc = sval(c, "location"), *out = sval(c, "output");
		const json_t *d = json_object_get(c, "duration_s");
		char *cls;

		if (!name || !oc)
			continue;
		split_name(name, suite, &cls, &leaf);
		fputs("    <testcase", f);
		xml_attr(f, "name", leaf);
		xml_attr(f, "classname", cls ? cls : suite);
		free(cls);
		if (json_is_number(d))
			fprintf(f, " time=\"%.6f\"", json_number_value(d));
		if (!strcmp(oc, "ok") && !out) {
			fputs("/>\n", f);
			continue;
		}
		fputs(">\n", f);
		if (!strcmp(oc, "failed"))
			problem(f, "failure", fw && !strcmp(fw, "uktest") ? "assertion" : "panic", msg, loc, "failed");
		else if (!strcmp(oc, "crashed"))
			problem(f, "error", "crash", msg, loc, "the program crashed during this test");
		else if (!strcmp(oc, "running"))
			problem(f, "error", "incomplete", msg, loc, "the run ended before this test had a result");
		else if (!strcmp(oc, "ignored"))
			fputs("      <skipped/>\n", f);
		else if (!strcmp(oc, "not_run"))
			fputs("      <skipped message=\"not run: the run ended before this test started\"/>\n", f);
		if (out) {
			fputs("      <system-out>", f);
			xml_text(f, out, false);
			fputs("</system-out>\n", f);
		}
		fputs("    </testcase>\n", f);
	}
	fputs("    <system-out>", f);
	xml_text(f, sum, false);
	fputs("</system-out>\n  </testsuite>\n</testsuites>\n", f);
	return ferror(f) ? -EIO : 0;
}

int testreport_junit_file(const char *path, const json_t *tests, const json_t *run)
{
	char *tmp = NULL;
	FILE *f;
	int r;

	if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0)
		return -ENOMEM;
	f = fopen(tmp, "we");
	if (!f) {
		r = -errno;
		free(tmp);
		return r;
	}
	r = testreport_junit(f, tests, run);
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}
