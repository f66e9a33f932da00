/*
 * testparse_json.c — libtest's JSON output (--format json -Z unstable-options,
 * one event object per line, read with jansson), and the parsed tests as the
 * JSON document the store keeps. See testparse.h.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "testparse_int.h"

static double json_seconds(const json_t *v)
{
	return json_is_number(v) && json_number_value(v) >= 0 ? json_number_value(v) : -1;
}

static int json_count(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v < 0 ? 0 : v > INT_MAX ? INT_MAX : (int)v;
}

/* libtest --format json: one event object per line. False when the line is not one. */
bool tp_on_json(struct testparse *tp, const char *l)
{
	json_t *o = json_loads(l, 0, NULL);
	const char *type = json_string_value(json_object_get(o, "type"));
	const char *ev = json_string_value(json_object_get(o, "event"));
	const char *name = json_string_value(json_object_get(o, "name"));
	bool ours = type && ev && (strcmp(type, "suite") == 0 || strcmp(type, "test") == 0 || strcmp(type, "bench") == 0);

	if (!ours) {
		json_decref(o);
		return false;
	}
	tp->seen_json = true;
	if (strcmp(type, "suite") == 0) {
		if (strcmp(ev, "started") == 0) {
			tp->seen_libtest = 1;
			tp_open_suite(tp, json_count(o, "test_count"));
		} else if (strcmp(ev, "ok") == 0 || strcmp(ev, "failed") == 0) {
			tp_suite_result(tp, strcmp(ev, "failed") == 0, json_count(o, "passed"), json_count(o, "failed"),
			             json_count(o, "ignored"));
		}
	} else if (name && strcmp(ev, "started") == 0) {
		tp_on_test_line(tp, name, strlen(name), "");
	} else if (name && strcmp(type, "bench") == 0) {
		if (tp_settle_named(tp, name, TP_OK, -1) < 0)
			tp_on_test_line(tp, name, strlen(name), "ok");
	} else if (name && (strcmp(ev, "ok") == 0 || strcmp(ev, "failed") == 0 || strcmp(ev, "ignored") == 0)) {
		enum tp_outcome oc = ev[0] == 'o' ? TP_OK : ev[0] == 'f' ? TP_FAILED : TP_IGNORED;
		double dur = json_seconds(json_object_get(o, "exec_time"));
		long idx = tp_settle_named(tp, name, oc, dur);
		if (idx < 0)
			idx = tp_on_test_line(tp, name, strlen(name), oc == TP_OK ? "ok" : oc == TP_FAILED ? "FAILED" : "ignored");
		if (idx >= 0 && dur >= 0)
			tp->cases[idx].duration_s = dur;
		if (idx >= 0 && oc == TP_FAILED) {
			const char *msg = json_string_value(json_object_get(o, "message"));
			tp_case_output(tp, idx, json_string_value(json_object_get(o, "stdout")));
			if (msg)
				tp_detail_set(tp, &tp->cases[idx].message, msg, strlen(msg), MESSAGE_MAX);
		}
	}
	json_decref(o);
	return true;
}

/* Console text as a JSON string: bytes that are not UTF-8 become '?' (JSON cannot carry them). */
static json_t *text_json(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j || !s)
		return j;
	copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static int set_opt_string(json_t *o, const char *key, const char *v)
{
	return v ? json_object_set_new(o, key, text_json(v)) : 0;
}

json_t *testparse_json(const struct testparse *tp)
{
	struct tp_summary s;
	const char *fw = testparse_framework(tp);
	json_t *cases = json_array();
	json_t *ret;

	testparse_summary(tp, &s);
	ret = json_pack("{s:o?,s:i,s:o}", "framework", fw ? json_string(fw) : NULL, "not_run", s.not_run, "cases",
	                cases);
	for (size_t i = 0; ret && i < testparse_ncases(tp); i++) {
		const struct tp_case *c = testparse_case(tp, i);
		json_t *o = json_pack("{s:o,s:s}", "name", text_json(c->name), "outcome", tp_outcome_name(c->outcome));
		int r = o ? 0 : -1;
		if (o && c->duration_s >= 0)
			r |= json_object_set_new(o, "duration_s", json_real(c->duration_s));
		if (o)
			r |= set_opt_string(o, "message", c->message) | set_opt_string(o, "location", c->location) |
			     set_opt_string(o, "output", c->output);
		if (r < 0 || json_array_append_new(cases, o) < 0) {
			json_decref(ret);
			return NULL;
		}
	}
	return ret;
}
