/*
 * testparse.c — libtest / Unikraft console parser (see testparse.h).
 *
 * Bytes are gathered into one line at a time; a complete line is cleaned
 * (terminal escapes, CR) and matched against a handful of patterns. libtest
 * prints "test NAME ... " before running a test when it runs one at a time,
 * so a case can stay RUNNING across lines of its own output until a bare
 * "ok"/"FAILED" line, the suite's "failures:" list or "test result:" line
 * settles it. Suites follow each other; only the current one is kept in
 * detail, finished ones are folded into running totals. libtest's JSON
 * events are read in testparse_json.c, uktest's lines in testparse_uktest.c.
 */
#include "testparse.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testparse_int.h"

struct testparse *testparse_new(void)
{
	struct testparse *tp = calloc(1, sizeof(*tp));

	if (!tp)
		return NULL;
	tp->main_returned = -1;
	tp->cap_case = tp->msg_case = tp->uk_cur = -1;
	return tp;
}

void testparse_free(struct testparse *tp)
{
	if (!tp)
		return;
	for (size_t i = 0; i < tp->ncases; i++) {
		free(tp->cases[i].name);
		free(tp->cases[i].message);
		free(tp->cases[i].location);
		free(tp->cases[i].output);
	}
	free(tp->line);
	free(tp->cases);
	free(tp->runstack);
	free(tp);
}

bool tp_starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parse a non-negative decimal at *s (no sign); -1 when there are no digits. */
static long parse_count(const char *s, const char **ret_end)
{
	long v = 0;
	const char *p = s;

	while (*p >= '0' && *p <= '9') {
		if (v < 100000000L)
			v = v * 10 + (*p - '0');
		p++;
	}
	if (ret_end)
		*ret_end = p;
	return p == s ? -1 : v;
}

/* a + b for counts (both >= 0), saturating at INT_MAX: the numbers come from console text. */
static int count_add(int a, int b)
{
	return a > INT_MAX - b ? INT_MAX : a + b;
}

/* The number right before `word` in `line` ("3 passed"), or 0. */
int tp_count_before(const char *line, const char *word)
{
	const char *w = strstr(line, word);
	const char *p;

	if (!w || w == line)
		return 0;
	p = w;
	while (p > line && p[-1] >= '0' && p[-1] <= '9')
		p--;
	if (p == w)
		return 0;
	return (int)parse_count(p, NULL);
}

/* Remove terminal escape sequences and trailing CR/space, in place. */
static size_t clean_line(char *s, size_t len)
{
	size_t r = 0, w = 0;

	while (r < len) {
		unsigned char c = (unsigned char)s[r];
		if (c == 0x1b) {
			r++;
			if (r < len && s[r] == '[') {
				r++;
				while (r < len && !((unsigned char)s[r] >= 0x40 && (unsigned char)s[r] <= 0x7e))
					r++;
				r++; /* final byte */
			} else if (r < len && (s[r] == '(' || s[r] == ')')) {
				r += 2; /* charset designation, e.g. ESC ( B in tput sgr0 */
			} else {
				r++;
			}
			continue;
		}
		s[w++] = c == '\0' ? '?' : (char)c;
		r++;
	}
	while (w > 0 && (s[w - 1] == '\r' || s[w - 1] == ' ' || s[w - 1] == '\t'))
		w--;
	s[w] = '\0';
	return w;
}

void tp_set_last_running(struct testparse *tp, const char *name)
{
	size_t n = strlen(name);

	if (n >= sizeof(tp->last_running))
		n = sizeof(tp->last_running) - 1;
	memcpy(tp->last_running, name, n);
	tp->last_running[n] = '\0';
}

static void count_outcome(struct suite *s, enum tp_outcome o)
{
	switch (o) {
	case TP_OK: s->ok++; break;
	case TP_FAILED: s->failed++; break;
	case TP_IGNORED: s->ignored++; break;
	case TP_CRASHED: s->crashed++; break;
	default: break;
	}
}

static bool push_running(struct testparse *tp, size_t idx)
{
	if (tp->nrun == tp->caprun) {
		size_t ncap = tp->caprun ? tp->caprun * 2 : 16;
		size_t *n = realloc(tp->runstack, ncap * sizeof(*n));
		if (!n)
			return false;
		tp->runstack = n;
		tp->caprun = ncap;
	}
	tp->runstack[tp->nrun++] = idx;
	return true;
}

/* Record a case; returns its index or -1 when it could not be recorded. */
long tp_record_case(struct testparse *tp, const char *name, size_t namelen, enum tp_outcome o,
                        double dur)
{
	if (namelen > NAME_MAX_LEN)
		namelen = NAME_MAX_LEN;
	if (tp->ncases >= TESTPARSE_MAX_CASES || tp->name_bytes + namelen + 1 > NAME_BUDGET)
		return -1;
	if (tp->ncases == tp->capcases) {
		size_t ncap = tp->capcases ? tp->capcases * 2 : 64;
		struct tp_case *n = realloc(tp->cases, ncap * sizeof(*n));
		if (!n)
			return -1;
		tp->cases = n;
		tp->capcases = ncap;
	}
	char *copy = strndup(name, namelen);
	if (!copy)
		return -1;
	tp->name_bytes += namelen + 1;
	tp->cases[tp->ncases] = (struct tp_case){ .name = copy, .outcome = o, .duration_s = dur };
	return (long)tp->ncases++;
}

/* Append n bytes of s to *field (a line of it when `line`), within the per-case and total caps. */
void tp_detail_append(struct testparse *tp, char **field, const char *s, size_t n, bool line, size_t cap)
{
	size_t have = *field ? strlen(*field) : 0;
	size_t sep = line && have ? 1 : 0;

	if (have + sep >= cap || tp->detail_bytes >= DETAIL_BUDGET)
		return;
	if (n > cap - have - sep)
		n = cap - have - sep;
	if (n > DETAIL_BUDGET - tp->detail_bytes)
		n = DETAIL_BUDGET - tp->detail_bytes;
	char *g = realloc(*field, have + sep + n + 1);
	if (!g)
		return;
	if (sep)
		g[have] = '\n';
	memcpy(g + have + sep, s, n);
	g[have + sep + n] = '\0';
	*field = g;
	tp->detail_bytes += sep + n;
}

void tp_detail_set(struct testparse *tp, char **field, const char *s, size_t n, size_t cap)
{
	if (*field)
		return; /* the first panic of a case is the one that failed it */
	tp_detail_append(tp, field, s, n, false, cap);
}

/* The latest recorded case called `name`, or -1. */
static long find_case(const struct testparse *tp, const char *name, size_t namelen)
{
	for (size_t i = tp->ncases; i-- > 0;)
		if (strlen(tp->cases[i].name) == namelen && memcmp(tp->cases[i].name, name, namelen) == 0)
			return (long)i;
	return -1;
}

static int running_count(const struct testparse *tp)
{
	return (int)tp->nrun + tp->running_unrecorded;
}

/* Settle the most recent running case (libtest runs one at a time when it prints "test X ... " alone). */
static void settle_latest(struct testparse *tp, enum tp_outcome o, double dur)
{
	if (tp->nrun > 0) {
		struct tp_case *c = &tp->cases[tp->runstack[--tp->nrun]];
		c->outcome = o;
		c->duration_s = dur;
	} else if (tp->running_unrecorded > 0) {
		tp->running_unrecorded--;
	} else {
		return;
	}
	count_outcome(&tp->cur, o);
}

/* Settle the running case called `name`: its index, or -1 when none runs. */
long tp_settle_named(struct testparse *tp, const char *name, enum tp_outcome o, double dur)
{
	for (size_t i = tp->nrun; i-- > 0;) {
		size_t idx = tp->runstack[i];
		struct tp_case *c = &tp->cases[idx];
		if (strcmp(c->name, name) != 0)
			continue;
		c->outcome = o;
		if (dur >= 0)
			c->duration_s = dur;
		memmove(&tp->runstack[i], &tp->runstack[i + 1], (tp->nrun - i - 1) * sizeof(size_t));
		tp->nrun--;
		count_outcome(&tp->cur, o);
		return (long)idx;
	}
	return -1;
}

/* Settle everything still running in the current suite. */
static void settle_all(struct testparse *tp, enum tp_outcome o)
{
	while (running_count(tp) > 0)
		settle_latest(tp, o, -1);
}

/* Fold the current suite into the totals. */
static void close_suite(struct testparse *tp)
{
	struct suite *s = &tp->cur;

	if (!s->open)
		return;
	tp->closed_complete = s->result_seen && running_count(tp) == 0;
	settle_all(tp, TP_CRASHED);
	tp->t_announced = count_add(tp->t_announced, s->announced > 0 ? s->announced : 0);
	if (s->result_seen) {
		tp->t_passed = count_add(tp->t_passed, s->res_passed);
		tp->t_failed = count_add(tp->t_failed, s->res_failed);
		tp->t_ignored = count_add(tp->t_ignored, s->res_ignored);
	} else {
		tp->t_passed = count_add(tp->t_passed, s->ok);
		tp->t_failed = count_add(tp->t_failed, count_add(s->failed, s->crashed));
		tp->t_ignored = count_add(tp->t_ignored, s->ignored);
		if (s->announced > s->started)
			tp->t_not_run = count_add(tp->t_not_run, s->announced - s->started);
	}
	memset(s, 0, sizeof(*s));
}

void tp_open_suite(struct testparse *tp, int announced)
{
	close_suite(tp);
	tp->cur.open = true;
	tp->cur.announced = announced;
	tp->in_failures = false;
	tp->list_complete = false;
}

/* The outcome word(s) after "test NAME ... " or alone on a line; false if not one. */
static bool parse_outcome(const char *s, enum tp_outcome *ret_o, double *ret_dur)
{
	const char *rest;

	*ret_dur = -1;
	if (tp_starts_with(s, "ok")) {
		*ret_o = TP_OK;
		rest = s + 2;
	} else if (tp_starts_with(s, "FAILED")) {
		*ret_o = TP_FAILED;
		rest = s + 6;
	} else if (tp_starts_with(s, "ignored")) {
		*ret_o = TP_IGNORED;
		return s[7] == '\0' || s[7] == ',';
	} else if (tp_starts_with(s, "bench:")) {
		*ret_o = TP_OK;
		return true;
	} else {
		return false;
	}
	if (*rest == '\0')
		return true;
	/* --report-time: "ok <0.012s>" */
	if (rest[0] == ' ' && rest[1] == '<') {
		char *end;
		double d = strtod(rest + 2, &end);
		if (end != rest + 2 && end[0] == 's' && end[1] == '>' && end[2] == '\0' && d >= 0) {
			*ret_dur = d;
			return true;
		}
	}
	return false;
}

/* "test NAME ... REST" (REST "" when a JSON "started" event): the case's index or -1. */
long tp_on_test_line(struct testparse *tp, const char *name, size_t namelen, const char *rest)
{
	static const char sp[] = " - should panic";
	enum tp_outcome o;
	double dur;
	long idx;

	if (namelen > sizeof(sp) - 1 && memcmp(name + namelen - (sizeof(sp) - 1), sp, sizeof(sp) - 1) == 0)
		namelen -= sizeof(sp) - 1;
	if (!tp->cur.open || tp->cur.result_seen)
		tp_open_suite(tp, 0);
	while (*rest == ' ')
		rest++;
	if (!parse_outcome(rest, &o, &dur))
		o = TP_RUNNING; /* nothing or the test's own output follows the dots */
	tp->cur.started++;
	idx = tp_record_case(tp, name, namelen, o, dur);
	if (o != TP_RUNNING) {
		count_outcome(&tp->cur, o);
		return idx;
	}
	{
		char shortname[sizeof(tp->last_running)];
		size_t n = namelen < sizeof(shortname) - 1 ? namelen : sizeof(shortname) - 1;
		memcpy(shortname, name, n);
		shortname[n] = '\0';
		tp_set_last_running(tp, shortname);
	}
	if (idx < 0 || !push_running(tp, (size_t)idx))
		tp->running_unrecorded++;
	return idx;
}

/* A failed case named only in a failures block or list (terse output): record it once. */
static long failed_case(struct testparse *tp, const char *name, size_t namelen)
{
	long idx = find_case(tp, name, namelen);

	if (idx >= 0)
		return idx;
	if (!tp->cur.open || tp->cur.result_seen)
		tp_open_suite(tp, 0);
	tp->cur.started++;
	count_outcome(&tp->cur, TP_FAILED);
	return tp_record_case(tp, name, namelen, TP_FAILED, -1);
}

/* A suite's result ("test result:" line or JSON suite event). */
void tp_suite_result(struct testparse *tp, bool failed, int passed, int nfailed, int ignored)
{
	if (!tp->cur.open || tp->cur.result_seen)
		tp_open_suite(tp, -1);
	/* libtest lists every failed test before this line, so what still runs passed. */
	settle_all(tp, TP_OK);
	tp->cap_case = tp->msg_case = -1;
	tp->cur.result_seen = true;
	tp->cur.res_passed = passed;
	tp->cur.res_failed = nfailed;
	tp->cur.res_ignored = ignored;
	if (tp->cur.announced < 0)
		tp->cur.announced = count_add(count_add(tp->cur.res_passed, tp->cur.res_failed),
		                              tp->cur.res_ignored);
	tp->result_lines++;
	if (failed)
		tp->result_failed = 1;
	tp->in_failures = false;
}

static void on_result_line(struct testparse *tp, const char *rest)
{
	tp_suite_result(tp, tp_starts_with(rest, "FAILED"), tp_count_before(rest, " passed"), tp_count_before(rest, " failed"),
	             tp_count_before(rest, " ignored"));
}

/* The case a panic or crash belongs to: the one named, else the block being captured, else
 * the latest running libtest or uktest case; -1 when none. */
static long owner_case(const struct testparse *tp, const char *name, size_t namelen)
{
	long idx = name ? find_case(tp, name, namelen) : -1;

	if (idx < 0)
		idx = tp->cap_case;
	if (idx < 0 && tp->nrun > 0)
		idx = (long)tp->runstack[tp->nrun - 1];
	if (idx < 0)
		idx = tp->uk_cur;
	return idx;
}

/* "thread 'NAME' panicked at LOCATION:" (Rust >= 1.73, the message on the following lines;
 * "thread 'NAME' (TID) panicked at" since 1.89) or "thread 'NAME' panicked at 'MESSAGE',
 * LOCATION" (older): note it on its case. */
static void on_panic(struct testparse *tp, const char *l)
{
	const char *p = strstr(l, "thread '");
	const char *q = p ? strstr(p + 8, " panicked at ") : NULL;
	const char *ne = q ? memchr(p + 8, '\'', (size_t)(q - p - 8)) : NULL;

	if (!ne)
		return;
	tp->panicked = 1;
	long idx = owner_case(tp, p + 8, (size_t)(ne - p - 8));
	if (idx < 0)
		return;
	struct tp_case *c = &tp->cases[idx];
	const char *rest = q + strlen(" panicked at ");
	size_t rl = strlen(rest);
	if (c->message || c->location)
		return; /* the first panic of a case is the one that failed it */
	if (rest[0] == '\'') {
		const char *e = NULL;
		for (const char *t = strstr(rest + 1, "', "); t; t = strstr(t + 1, "', "))
			e = t;
		if (e) {
			tp_detail_set(tp, &c->message, rest + 1, (size_t)(e - rest - 1), MESSAGE_MAX);
			tp_detail_set(tp, &c->location, e + 3, strlen(e + 3), MESSAGE_MAX);
			return;
		}
	}
	if (rl > 0 && rest[rl - 1] == ':') {
		tp_detail_set(tp, &c->location, rest, rl - 1, MESSAGE_MAX);
		tp->msg_case = idx;
	} else {
		tp_detail_set(tp, &c->location, rest, rl, MESSAGE_MAX);
	}
}


/* A line after "panicked at LOCATION:": part of the message until a line that is not. */
static void message_line(struct testparse *tp, const char *l)
{
	enum tp_outcome o;
	double dur;

	if (tp->msg_case < 0)
		return;
	if (*l == '\0' || tp_starts_with(l, "note: ") || tp_starts_with(l, "stack backtrace:") || tp_starts_with(l, "---- ") ||
	    tp_starts_with(l, "test ") || tp_starts_with(l, "failures:") || tp_starts_with(l, "error: ") ||
	    tp_strip_klog(l) != l || parse_outcome(l, &o, &dur)) {
		tp->msg_case = -1;
		return;
	}
	tp_detail_append(tp, &tp->cases[tp->msg_case].message, l, strlen(l), true, MESSAGE_MAX);
}

/* Captured output handed over in one piece (the JSON "stdout" field): keep it, find its panic. */
void tp_case_output(struct testparse *tp, long idx, const char *out)
{
	long saved_cap = tp->cap_case;

	if (idx < 0 || !out || !*out)
		return;
	size_t n = strlen(out);
	while (n > 0 && out[n - 1] == '\n')
		n--;
	tp_detail_append(tp, &tp->cases[idx].output, out, n, true, TESTPARSE_DETAIL_MAX);
	tp->cap_case = idx;
	for (const char *l = out; *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);
		char buf[TESTPARSE_LINE_MAX + 1];
		if (len > TESTPARSE_LINE_MAX)
			len = TESTPARSE_LINE_MAX;
		memcpy(buf, l, len);
		buf[len] = '\0';
		if (len && buf[len - 1] == '\r')
			buf[len - 1] = '\0';
		message_line(tp, buf);
		on_panic(tp, buf);
		if (!e)
			break;
		l = e + 1;
	}
	tp->msg_case = -1;
	tp->cap_case = saved_cap;
}

bool tp_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_crash_text(const char *l)
{
	if (strcasestr(l, "Unikraft crash") || strstr(l, "Kernel panic"))
		return true;
	return strstr(l, "CRIT") && strcasestr(l, "crash");
}

/* A "---- NAME stdout ----" block of the failures section: its lines are NAME's output. */
static bool on_capture(struct testparse *tp, const char *l)
{
	static const char tail[] = " stdout ----";

	if (tp_starts_with(l, "---- ") && tp_ends_with(l, tail) && strlen(l) > 5 + sizeof(tail) - 1) {
		tp->cap_case = failed_case(tp, l + 5, strlen(l) - 5 - (sizeof(tail) - 1));
		tp->msg_case = -1;
		return true;
	}
	if (tp->cap_case < 0)
		return false;
	if (strcmp(l, "failures:") == 0 || tp_starts_with(l, "test result: ")) {
		tp->cap_case = -1;
		return false;
	}
	struct tp_case *c = &tp->cases[tp->cap_case];
	tp_detail_append(tp, &c->output, l, strlen(l), c->output != NULL, TESTPARSE_DETAIL_MAX);
	message_line(tp, l);
	on_panic(tp, l);
	return true;
}

/* The lines of a captured block end with the blank line libtest prints after each. */
static void trim_output(struct tp_case *c)
{
	size_t n = c->output ? strlen(c->output) : 0;

	while (n > 0 && c->output[n - 1] == '\n')
		c->output[--n] = '\0';
}

static void parse_line(struct testparse *tp, char *l)
{
	const char *p;
	long prev_cap = tp->cap_case;

	if (is_crash_text(l)) {
		long idx = owner_case(tp, NULL, 0);
		tp->crashed = 1;
		if (idx >= 0 && tp->cases[idx].outcome == TP_RUNNING)
			tp_detail_set(tp, &tp->cases[idx].message, l, strlen(l), MESSAGE_MAX);
	}
	if (l[0] == '{' && tp_on_json(tp, l))
		return;
	if (on_capture(tp, l))
		return;
	if (prev_cap >= 0)
		trim_output(&tp->cases[prev_cap]);
	message_line(tp, l);
	on_panic(tp, l);
	if (tp_on_uktest(tp, tp_strip_klog(l)))
		return;
	p = strstr(l, "main returned ");
	if (p) {
		const char *num = p + strlen("main returned ");
		bool neg = *num == '-';
		long v = parse_count(num + neg, NULL);
		if (v >= 0)
			tp->main_returned = neg ? (int)(-v & 0xff) : (int)v;
	}

	if (tp_starts_with(l, "running ")) {
		const char *end;
		long n = parse_count(l + 8, &end);
		if (n >= 0 && (strcmp(end, " tests") == 0 || strcmp(end, " test") == 0)) {
			tp->seen_libtest = 1;
			tp_open_suite(tp, (int)n);
			return;
		}
	}
	if (tp_starts_with(l, "test result: ")) {
		on_result_line(tp, l + 13);
		return;
	}
	if (tp_starts_with(l, "test ")) {
		const char *name = l + 5;
		const char *dots = strstr(name, " ...");
		if (dots && dots > name && (dots[4] == '\0' || dots[4] == ' ')) {
			tp_on_test_line(tp, name, (size_t)(dots - name), dots + 4);
			return;
		}
	}
	if (strcmp(l, "failures:") == 0) {
		tp->in_failures = true;
		return;
	}
	/* terse (-q) names only the failed tests: "NAME --- FAILED" */
	if (tp_ends_with(l, " --- FAILED") && strlen(l) > 11 && tp->cur.open) {
		failed_case(tp, l, strlen(l) - 11);
		return;
	}
	if (tp->in_failures && tp_starts_with(l, "    ") && l[4] != ' ' && l[4] != '\0') {
		if (tp_settle_named(tp, l + 4, TP_FAILED, -1) < 0)
			failed_case(tp, l + 4, strlen(l + 4));
		return;
	}
	if (running_count(tp) > 0) {
		enum tp_outcome o;
		double dur;
		const char *s = l;
		while (*s == ' ')
			s++;
		if (parse_outcome(s, &o, &dur)) {
			settle_latest(tp, o, dur);
			return;
		}
	}
	/* --list ends with "N tests, M benchmarks" ("1 test, 0 benchmarks"). */
	{
		const char *end;
		long n = parse_count(l, &end);
		if (n >= 0 && (tp_starts_with(end, " tests, ") || tp_starts_with(end, " test, "))) {
			const char *b = strchr(end, ',') + 2;
			const char *bend;
			if (parse_count(b, &bend) >= 0 &&
			    (strcmp(bend, " benchmarks") == 0 || strcmp(bend, " benchmark") == 0)) {
				tp->list_end = 1;
				tp->list_complete = true;
			}
		}
	}
}

/* Room for `need` bytes in the line buffer. */
static bool line_reserve(struct testparse *tp, size_t need)
{
	if (need <= tp->linecap)
		return true;
	size_t ncap = tp->linecap ? tp->linecap : 256;
	while (ncap < need)
		ncap *= 2;
	char *n = realloc(tp->line, ncap);
	if (!n)
		return false;
	tp->line = n;
	tp->linecap = ncap;
	return true;
}

static void end_line(struct testparse *tp)
{
	if (!line_reserve(tp, tp->linelen + 1)) {
		tp->linelen = 0;
		return;
	}
	tp->linelen = clean_line(tp->line, tp->linelen);
	parse_line(tp, tp->line);
	tp->linelen = 0;
	if (tp->linecap > 4 * TESTPARSE_LINE_MAX) {
		/* a long JSON line is parsed: do not keep its buffer for the rest of the run */
		free(tp->line);
		tp->line = NULL;
		tp->linecap = 0;
	}
}

void testparse_feed(struct testparse *tp, const char *buf, size_t len)
{
	if (!tp || !buf)
		return;
	while (len > 0) {
		const char *nl = memchr(buf, '\n', len);
		size_t take = nl ? (size_t)(nl - buf) : len;

		if (!tp->overlong && take > 0) {
			bool json = tp->linelen ? tp->line[0] == '{' : buf[0] == '{';
			size_t room = (json ? TESTPARSE_JSON_LINE_MAX : TESTPARSE_LINE_MAX) - tp->linelen;
			size_t n = take < room ? take : room;
			if (!line_reserve(tp, tp->linelen + n + 1))
				n = room = 0; /* out of memory: parse what there is, drop the rest */
			memcpy(tp->line + tp->linelen, buf, n);
			tp->linelen += n;
			if (take > room) {
				/* Parse the prefix now, drop the rest of this line. */
				end_line(tp);
				tp->overlong = true;
			}
		}
		if (!nl)
			return;
		if (tp->overlong)
			tp->overlong = false;
		else
			end_line(tp);
		buf = nl + 1;
		len -= take + 1;
	}
}

void testparse_finish(struct testparse *tp)
{
	if (!tp || tp->finished)
		return;
	if (tp->linelen > 0 && !tp->overlong)
		end_line(tp);
	tp->overlong = false;
	tp->linelen = 0;
	if (tp->cap_case >= 0)
		trim_output(&tp->cases[tp->cap_case]);
	tp->cap_case = tp->msg_case = -1;
	tp_uk_settle(tp, tp->crashed ? TP_CRASHED : TP_OK);
	close_suite(tp);
	tp->finished = true;
}

void testparse_summary(const struct testparse *tp, struct tp_summary *ret)
{
	const struct suite *s;

	memset(ret, 0, sizeof(*ret));
	ret->main_returned = -1;
	if (!tp)
		return;
	s = &tp->cur;
	ret->seen_libtest = tp->seen_libtest;
	ret->result_lines = tp->result_lines;
	ret->result_failed = tp->result_failed;
	ret->announced = tp->t_announced;
	ret->passed = tp->t_passed;
	ret->failed = tp->t_failed;
	ret->ignored = tp->t_ignored;
	ret->not_run = tp->t_not_run;
	if (s->open) {
		ret->announced = count_add(ret->announced, s->announced > 0 ? s->announced : 0);
		if (s->result_seen) {
			ret->passed = count_add(ret->passed, s->res_passed);
			ret->failed = count_add(ret->failed, s->res_failed);
			ret->ignored = count_add(ret->ignored, s->res_ignored);
		} else {
			ret->passed = count_add(ret->passed, s->ok);
			ret->failed = count_add(ret->failed, count_add(s->failed, s->crashed));
			ret->ignored = count_add(ret->ignored, s->ignored);
			if (s->announced > s->started)
				ret->not_run = count_add(ret->not_run, s->announced - s->started);
		}
	}
	ret->panicked = tp->panicked;
	ret->crashed = tp->crashed;
	ret->main_returned = tp->main_returned;
	ret->list_end = tp->list_end;
	ret->running = running_count(tp);
	ret->complete = tp->list_complete ||
	                (s->open ? s->result_seen && ret->running == 0 : tp->closed_complete);
	memcpy(ret->last_running, tp->last_running, sizeof(ret->last_running));
	ret->uk_cases = tp->uk_summary ? tp->uk_sum_cases : tp->uk_seen;
	ret->uk_failed = tp->uk_summary ? tp->uk_sum_failed : tp->uk_failed_n + (tp->uk_open && tp->uk_cur_failed);
}

const char *testparse_framework(const struct testparse *tp)
{
	if (!tp)
		return NULL;
	if (tp->seen_libtest || tp->result_lines)
		return "libtest";
	return tp->uk_seen ? "uktest" : NULL;
}

size_t testparse_ncases(const struct testparse *tp)
{
	return tp ? tp->ncases : 0;
}

const struct tp_case *testparse_case(const struct testparse *tp, size_t i)
{
	if (!tp || i >= tp->ncases)
		return NULL;
	return &tp->cases[i];
}

const char *tp_outcome_name(enum tp_outcome o)
{
	switch (o) {
	case TP_OK: return "ok";
	case TP_FAILED: return "failed";
	case TP_IGNORED: return "ignored";
	case TP_CRASHED: return "crashed";
	case TP_RUNNING: return "running";
	case TP_NOT_RUN: return "not_run";
	}
	return "not_run";
}
