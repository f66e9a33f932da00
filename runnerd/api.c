/* api.c — routes and handlers of the HTTP API (see api.h). */
#include "api.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "console.h"
#include "errmsg.h"
#include "image_recv.h"
#include "log.h"
#include "runbind.h"
#include "runspec.h"

/* Internal error → HTTP status and JSON error code: the one table. */
#define API_ERRNO_MAP(X)                                   \
	X(EINVAL, 400, "bad_request")                      \
	X(EBADMSG, 400, "digest_mismatch")                 \
	X(EACCES, 401, "unauthorized")                     \
	X(ENOENT, 404, "not_found")                        \
	X(ENOSYS, 405, "method_not_allowed")               \
	X(EBUSY, 409, "in_use")                            \
	X(EEXIST, 409, "exists")                           \
	X(EPERM, 409, "not_removable")                     \
	X(EALREADY, 409, "already_ended")                  \
	X(EFBIG, 413, "too_large")                         \
	X(ENOEXEC, 422, "image_not_runnable")              \
	X(ENODEV, 503, "driver_unavailable")               \
	X(EAGAIN, 503, "queue_full")                       \
	X(ESHUTDOWN, 503, "shutting_down")                 \
	X(EPIPE, 409, "stdin_closed")                      \
	X(ENOSPC, 507, "insufficient_storage")

static void respond_errno(struct http_conn *conn, int r, const char *code_override, const char *msg)
{
	int status = 500;
	const char *code = "internal";
	switch (-r) {
#define X(e, s, c)          \
	case e:             \
		status = s; \
		code = c;   \
		break;
		API_ERRNO_MAP(X)
#undef X
	default:
		break;
	}
	if (code_override)
		code = code_override;
	http_respond_error(conn, status, code, "%s", msg ? msg : strerror(-r));
}

/* ---- helpers ---- */

/* A run id in a path: a positive decimal int64 with no leading zero. */
static int parse_id(const char *seg, size_t len, int64_t *ret_id)
{
	if (len == 0 || len > 19 || seg[0] < '1' || seg[0] > '9')
		return -ENOENT;
	int64_t id = 0;
	for (size_t i = 0; i < len; i++) {
		if (seg[i] < '0' || seg[i] > '9' || id > (INT64_MAX - 9) / 10)
			return -ENOENT;
		id = id * 10 + (seg[i] - '0');
	}
	*ret_id = id;
	return 0;
}

static int query_uint(const char *query, const char *name, uint64_t max, uint64_t *ret)
{
	char *v = http_query_get(query, name);
	if (!v)
		return 0;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	int ok = *v && !*end && errno == 0 && x <= max && v[0] != '-';
	free(v);
	if (!ok)
		return -EINVAL;
	*ret = x;
	return 1;
}

static void version_info(struct api *api, struct http_conn *conn)
{
	json_t *drivers = run_manager_drivers(api->runs), *d;
	size_t i;
	json_array_foreach(drivers, i, d) { /* here every driver has "info": its summary, or why not */
		json_t *why = json_object_get(d, "reason");
		if (why)
			json_object_set(d, "info", why);
		json_object_del(d, "reason");
		json_object_del(d, "platforms");
	}
	http_respond_json(conn, 200, json_pack("{s:s,s:i,s:o}", "version", UKRUN_VERSION, "api", 1,
	                                       "drivers", drivers));
}

static void metrics(struct api *api, struct http_conn *conn)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		respond_errno(conn, -ENOMEM, NULL, NULL);
		return;
	}
	struct run_stats m;
	run_manager_stats(api->runs, &m);
	fprintf(f, "# HELP ukrun_runs_created_total Runs accepted.\n# TYPE ukrun_runs_created_total counter\n");
	fprintf(f, "ukrun_runs_created_total %llu\n", (unsigned long long)m.created);
	fprintf(f, "# HELP ukrun_runs_finished_total Runs ended, by final state.\n"
	           "# TYPE ukrun_runs_finished_total counter\n");
	for (int i = 3; i < 7; i++)
		fprintf(f, "ukrun_runs_finished_total{state=\"%s\"} %llu\n", run_state_names[i],
		        (unsigned long long)m.finished[i]);
	fprintf(f, "# HELP ukrun_runs_active Runs queued or running.\n# TYPE ukrun_runs_active gauge\n");
	fprintf(f, "ukrun_runs_active{state=\"queued\"} %u\nukrun_runs_active{state=\"running\"} %u\n",
	        m.queued, m.running);
	fprintf(f, "# HELP ukrun_image_uploads_total Completed image uploads.\n"
	           "# TYPE ukrun_image_uploads_total counter\nukrun_image_uploads_total %llu\n",
	        (unsigned long long)api->images->uploads);
	fprintf(f, "# HELP ukrun_image_upload_bytes_total Bytes received by completed uploads.\n"
	           "# TYPE ukrun_image_upload_bytes_total counter\nukrun_image_upload_bytes_total %llu\n",
	        (unsigned long long)api->images->upload_bytes);
	fprintf(f, "# HELP ukrun_image_upload_skipped_total HEAD hits: uploads a client could skip.\n"
	           "# TYPE ukrun_image_upload_skipped_total counter\nukrun_image_upload_skipped_total %llu\n",
	        (unsigned long long)api->images->upload_skipped);
	fprintf(f, "# HELP ukrun_image_quarantined_total Stored images found damaged and moved aside.\n"
	           "# TYPE ukrun_image_quarantined_total counter\nukrun_image_quarantined_total %llu\n",
	        (unsigned long long)api->images->quarantined);
	fprintf(f, "# HELP ukrun_store_reserve_releases_total Times the disk was full and the database's reserve was used.\n"
	           "# TYPE ukrun_store_reserve_releases_total counter\nukrun_store_reserve_releases_total %llu\n",
	        (unsigned long long)store_reserve_releases(api->db));
	fprintf(f, "# HELP ukrun_http_requests_total Requests served.\n"
	           "# TYPE ukrun_http_requests_total counter\nukrun_http_requests_total %llu\n",
	        (unsigned long long)api->requests);
	fprintf(f, "# HELP ukrun_driver_available Driver usable here.\n# TYPE ukrun_driver_available gauge\n");
	json_t *drivers = run_manager_drivers(api->runs), *d;
	size_t i;
	json_array_foreach(drivers, i, d)
		fprintf(f, "ukrun_driver_available{driver=\"%s\"} %d\n", json_string_value(json_object_get(d, "name")),
		        json_is_true(json_object_get(d, "available")));
	json_decref(drivers);
	/* Per host (names are [a-z0-9._-]: safe as label values). */
	json_t *hosts = run_manager_hosts(api->runs), *hh;
	fprintf(f, "# HELP ukrun_host_capacity Guests a host runs at once.\n# TYPE ukrun_host_capacity gauge\n");
	json_array_foreach(hosts, i, hh)
		fprintf(f, "ukrun_host_capacity{host=\"%s\"} %lld\n", json_string_value(json_object_get(hh, "name")),
		        (long long)json_integer_value(json_object_get(hh, "capacity")));
	fprintf(f, "# HELP ukrun_host_runs Runs placed on a host, running (or starting) and queued.\n"
	           "# TYPE ukrun_host_runs gauge\n");
	json_array_foreach(hosts, i, hh) {
		const char *hn = json_string_value(json_object_get(hh, "name"));
		fprintf(f, "ukrun_host_runs{host=\"%s\",state=\"running\"} %lld\n", hn,
		        (long long)json_integer_value(json_object_get(hh, "active")));
		fprintf(f, "ukrun_host_runs{host=\"%s\",state=\"queued\"} %lld\n", hn,
		        (long long)json_integer_value(json_object_get(hh, "queued")));
	}
	fprintf(f, "# HELP ukrun_host_up The host takes runs (1), or is down or being probed (0).\n"
	           "# TYPE ukrun_host_up gauge\n");
	json_array_foreach(hosts, i, hh)
		fprintf(f, "ukrun_host_up{host=\"%s\"} %d\n", json_string_value(json_object_get(hh, "name")),
		        strcmp(json_string_value(json_object_get(hh, "health")), "up") == 0);
	static const struct {
		const char *metric, *field, *help;
	} counters[] = {
		{"ukrun_host_image_uploads_total", "uploads", "Images uploaded to a host's storage pool."},
		{"ukrun_host_image_bytes_sent_total", "bytes_sent", "Image bytes uploaded to a host."},
		{"ukrun_host_image_cache_hits_total", "cache_hits", "Runs whose image the host already had."},
	};
	for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", counters[c].metric, counters[c].help, counters[c].metric);
		json_array_foreach(hosts, i, hh)
			fprintf(f, "%s{host=\"%s\"} %lld\n", counters[c].metric, json_string_value(json_object_get(hh, "name")),
			        (long long)json_integer_value(json_object_get(json_object_get(hh, "images"), counters[c].field)));
	}
	fprintf(f, "# HELP ukrun_host_lost_runs_total Runs whose host was lost under them (ended lost or retried).\n"
	           "# TYPE ukrun_host_lost_runs_total counter\n");
	json_array_foreach(hosts, i, hh)
		fprintf(f, "ukrun_host_lost_runs_total{host=\"%s\"} %lld\n", json_string_value(json_object_get(hh, "name")),
		        (long long)json_integer_value(json_object_get(hh, "lost_runs")));
	json_decref(hosts);
	fclose(f);
	http_respond(conn, 200, "text/plain; version=0.0.4", buf, len);
	free(buf);
}

/* ---- images ---- */

struct upload_ctx {
	struct api *api;
	struct image_recv *rc;
	struct http_conn *conn;  /* NULL once the connection closed during sealing */
	int sealing;
	int existed;
	char sha[65];
};

static void upload_release(void *obj)
{
	struct upload_ctx *u = obj;
	if (u->sealing) {
		u->conn = NULL; /* the worker is sealing: upload_sealed records, then frees */
		return;
	}
	image_recv_abort(u->rc);
	free(u);
}

/* The upload failed before its body was in: answer (the connection drops the rest). */
static void upload_failed(struct upload_ctx *u, int r, const char *err)
{
	char msg[160];
	if (r == -EFBIG)
		snprintf(msg, sizeof(msg), "image is larger than the limit of %llu bytes",
		         (unsigned long long)u->api->images->max_size);
	struct http_conn *conn = u->conn;
	http_conn_attach(conn, NULL, NULL);
	upload_release(u);
	respond_errno(conn, r, NULL, r == -EFBIG ? msg : err); /* ends a hold: the rest is read and dropped */
}

static int upload_data(void *ctx, const char *buf, size_t len)
{
	struct upload_ctx *u = ctx;
	char *err = NULL;
	int r = image_recv_feed(u->rc, buf, len, &err);
	if (r == IMAGE_RECV_HOLD)
		http_conn_hold_input(u->conn); /* the worker is behind: upload_room reads on */
	else if (r < 0)
		upload_failed(u, r, err);
	free(err);
	return r < 0 ? r : 0;
}

static void upload_room(void *arg)
{
	struct upload_ctx *u = arg;
	http_conn_release_input(u->conn);
}

static void upload_sealed(void *arg)
{
	struct upload_ctx *u = arg;
	char *err = NULL;
	int r = image_recv_record(u->rc, &err);
	struct http_conn *conn = u->conn;
	if (conn) {
		http_conn_attach(conn, NULL, NULL);
		if (r < 0)
			respond_errno(conn, r, NULL, err);
		else
			http_respond_json(conn, u->existed ? 200 : 201, store_image_get(u->api->db, u->sha));
	}
	free(err);
	free(u);
}

static void image_put_headers(struct api *api, struct http_conn *conn, struct http_request *req,
                              const char *sha)
{
	if (req->content_length == UINT64_MAX) {
		http_respond_error(conn, 411, "length_required", "PUT of an image needs Content-Length");
		return;
	}
	if (req->content_length > api->images->max_size) {
		http_respond_error(conn, 413, "too_large", "image of %llu bytes is over the limit of %llu bytes",
		                   (unsigned long long)req->content_length,
		                   (unsigned long long)api->images->max_size);
		return;
	}
	struct upload_ctx *u = calloc(1, sizeof(*u));
	if (!u) {
		respond_errno(conn, -ENOMEM, NULL, NULL);
		return;
	}
	char *name = http_query_get(req->query, "name");
	if (name && (strchr(name, '/') || strlen(name) > 255 || !*name)) {
		free(name);
		name = NULL;
	}
	char *err = NULL;
	struct image_upload *up = NULL;
	int r = image_upload_begin(api->images, sha, name, &up, &err);
	free(name);
	static const struct image_recv_ops ops = {.room = upload_room, .sealed = upload_sealed};
	if (r == 0 && (r = image_recv_new(api->loop, up, &ops, u, &u->rc)) < 0)
		image_upload_abort(up);
	if (r < 0) {
		respond_errno(conn, r, NULL, err);
		free(err);
		free(u);
		return;
	}
	u->api = api;
	u->conn = conn;
	http_conn_attach(conn, u, upload_release);
	struct http_body_sink sink = {.data = upload_data, .ctx = u};
	http_conn_set_sink(conn, &sink);
}

/* The body is in: the worker writes what is left, then seals (fsync, rename, probe). */
static void image_put_done(struct api *api, struct http_conn *conn, const char *sha)
{
	struct upload_ctx *u = http_conn_attached(conn);
	if (!u) {
		respond_errno(conn, -EIO, NULL, "upload state lost");
		return;
	}
	u->existed = image_exists(api->images, sha);
	memcpy(u->sha, sha, 65);
	u->sealing = 1; /* (a hold from the body's last bytes ended with the body) */
	image_recv_finish(u->rc);
}

/* GET /v1/images: the stored images (rows kept only as the history of past runs, file removed, are left out). */
static void images_list(struct api *api, struct http_conn *conn)
{
	json_t *all = store_image_list(api->db), *stored = json_array(), *img;
	size_t i;
	json_array_foreach(all, i, img) {
		const char *sha = json_string_value(json_object_get(img, "sha256"));
		if (sha && image_exists(api->images, sha))
			json_array_append(stored, img);
	}
	json_decref(all);
	http_respond_json(conn, 200, json_pack("{s:o}", "images", stored));
}

/* What a route's pattern captured: {id} (a run id), {sha} (an image digest) and {name}
 * (a host name) — the last two in `sha`, any one segment of at most 64 bytes. */
struct route_args {
	int64_t id;
	char sha[65];
};

/* {sha}: a digest, or 400 (the path named an image, badly). */
static int image_arg_ok(struct http_conn *conn, const struct route_args *a)
{
	if (image_sha256_valid(a->sha))
		return 1;
	http_respond_error(conn, 400, "bad_request", "image ids are sha256 digests (64 lowercase hex digits)");
	return 0;
}

static void image_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	if (!image_arg_ok(conn, a))
		return;
	if (!image_exists(api->images, a->sha)) {
		http_respond_error(conn, 404, "image_not_found", "image %s is not stored", a->sha);
		return;
	}
	if (req->method == HTTP_HEAD) {
		api->images->upload_skipped++;
		log_info("image %s already stored: 0 bytes to upload", a->sha);
	}
	http_respond_json(conn, 200, store_image_get(api->db, a->sha));
}

static void image_put(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	if (image_arg_ok(conn, a))
		image_put_done(api, conn, a->sha);
}

static void image_del(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	if (!image_arg_ok(conn, a))
		return;
	/* A removed image keeps its row while past runs refer to it; its file is gone, so it is not stored. */
	int r = image_exists(api->images, a->sha) ? image_delete(api->images, a->sha) : -ENOENT;
	if (r < 0)
		respond_errno(conn, r, r == -ENOENT ? "image_not_found" : NULL,
		              r == -EBUSY ? "a queued or running run uses this image" : NULL);
	else
		http_respond(conn, 204, "application/json", "", 0);
}

/* ---- runs ---- */

static void runs_post(struct api *api, struct http_conn *conn, struct http_request *req)
{
	struct run_request rr;
	char *err = NULL;
	int r = runspec_parse(req->body ? req->body : "", req->body_len, &rr, &err);
	if (r < 0) {
		respond_errno(conn, r, NULL, err);
		free(err);
		return;
	}
	if ((r = runbind_check(&rr, http_conn_is_tcp(conn), api->remote_binds, http_conn_peer_uid(conn),
	                       api->runs->cfg.hidden, &err)) < 0) {
		respond_errno(conn, r, r == -EINVAL ? "bind_refused" : NULL, err);
		free(err);
		runspec_free(&rr);
		return;
	}
	int64_t id;
	r = run_create(api->runs, &rr, &id, &err);
	runspec_free(&rr);
	if (r < 0) {
		respond_errno(conn, r, r == -ENOENT ? "image_not_found" : NULL, err);
		free(err);
		return;
	}
	json_t *rec = store_run_get(api->db, id);
	http_respond_json(conn, 201, rec ? rec : json_pack("{s:I}", "id", (json_int_t)id));
}

/* A queued run's record says why it waits ("waiting for a host with label kvm"). */
static void add_waiting(struct api *api, json_t *rec)
{
	const char *id = json_string_value(json_object_get(rec, "id"));
	const char *why = id ? run_waiting(api->runs, strtoll(id, NULL, 10)) : NULL;
	if (why)
		json_object_set_new(rec, "waiting", json_string(why));
}

static void runs_list(struct api *api, struct http_conn *conn, struct http_request *req)
{
	struct run_filter f = {.limit = 50};
	uint64_t v;
	int r = query_uint(req->query, "limit", 1000, &v);
	if (r < 0 || (r > 0 && v == 0)) {
		http_respond_error(conn, 400, "bad_request", "limit must be 1..1000");
		return;
	}
	if (r > 0)
		f.limit = (int)v;
	r = query_uint(req->query, "before", INT64_MAX, &v);
	if (r < 0) {
		http_respond_error(conn, 400, "bad_request", "before must be a run id");
		return;
	}
	if (r > 0)
		f.before = (int64_t)v;
	char *state = http_query_get(req->query, "state");
	char *image = http_query_get(req->query, "image");
	char *label = http_query_get(req->query, "label");
	if (state && *state) {
		int ok = 0;
		for (int i = 0; i < 8; i++)
			ok |= strcmp(state, run_state_names[i]) == 0;
		if (!ok) {
			http_respond_error(conn, 400, "bad_request", "unknown state '%s'", state);
			goto cleanup;
		}
		f.state = state;
	}
	if (image && *image)
		f.image = image;
	if (label && *label) {
		char *eq = strchr(label, '=');
		if (eq) {
			*eq = '\0';
			f.label_value = eq + 1;
		}
		f.label_key = label;
	}
	json_t *runs = store_run_list(api->db, &f), *rec;
	size_t i;
	json_array_foreach(runs, i, rec)
		add_waiting(api, rec);
	http_respond_json(conn, 200, json_pack("{s:o}", "runs", runs));
cleanup:
	free(state);
	free(image);
	free(label);
}

/* ---- console followers: a chunked response as the console's sink ---- */

static void sink_write(void *ctx, const char *buf, size_t len)
{
	http_chunked_write(ctx, buf, len);
}

static size_t sink_queued(void *ctx)
{
	return http_conn_write_queue(ctx);
}

static void sink_end(void *ctx)
{
	struct http_conn *conn = ctx;
	http_conn_attach(conn, NULL, NULL);
	http_conn_on_drain(conn, NULL, NULL);
	http_chunked_end(conn);
}

static const struct console_sink http_sink = { sink_write, sink_queued, sink_end };

static void follower_release(void *obj)
{
	console_follower_free(obj);
}

static void follower_drained(struct http_conn *conn, void *arg)
{
	(void)conn;
	console_follower_resume(arg);
}

int api_console_follow(struct console *live, const char *path, struct http_conn *conn, uint64_t offset)
{
	struct follower *f;
	int r = console_follow(live, path, offset, &http_sink, conn, &f);
	if (r < 0)
		return r;
	http_conn_attach(conn, f, follower_release);
	http_conn_on_drain(conn, follower_drained, f);
	http_chunked_begin(conn, 200, "application/octet-stream");
	console_follower_resume(f);
	return 0;
}

static void run_console_get(struct api *api, struct http_conn *conn, struct http_request *req,
                            int64_t id)
{
	uint64_t offset = 0, follow = 0;
	char *sname = http_query_get(req->query, "stream");
	enum drv_stream stream = DRV_STREAM_CONSOLE;
	int bad = sname && strcmp(sname, "stdout") && strcmp(sname, "stderr") && strcmp(sname, "both");
	if (sname && !bad && strcmp(sname, "both"))
		stream = strcmp(sname, "stderr") == 0 ? DRV_STREAM_STDERR : DRV_STREAM_STDOUT;
	free(sname);
	if (bad || query_uint(req->query, "offset", UINT64_MAX / 2, &offset) < 0 ||
	    query_uint(req->query, "follow", 1, &follow) < 0) {
		http_respond_error(conn, 400, "bad_request",
		                   "offset is a byte count, follow is 0 or 1, stream is stdout, stderr or both");
		return;
	}
	char *path = stream == DRV_STREAM_CONSOLE ? run_console_path(api->runs, id)
	                                          : run_stream_path(api->runs, id, stream);
	if (path && stream != DRV_STREAM_CONSOLE && access(path, F_OK) < 0) {
		/* One console only (qemu, a Unikraft image): it is the run's stdout, and the
		 * run has no stderr of its own. */
		free(path);
		if (stream == DRV_STREAM_STDERR) {
			http_respond(conn, 200, "application/octet-stream", "", 0);
			return;
		}
		stream = DRV_STREAM_CONSOLE;
		path = run_console_path(api->runs, id);
	}
	struct console *live = !follow ? NULL
	                       : stream == DRV_STREAM_CONSOLE ? run_console(api->runs, id)
	                                                      : run_stream_console(api->runs, id, stream);
	int r = path ? api_console_follow(live, path, conn, offset) : -ENOMEM;
	free(path);
	if (r < 0)
		respond_errno(conn, r, r == -ENOENT ? "console_not_found" : NULL,
		              r == -ENOENT ? "the run has no console log (it never started or its data was removed)" : NULL);
}

/* {id} names a stored run, or 404. */
static json_t *run_arg(struct api *api, struct http_conn *conn, const struct route_args *a)
{
	json_t *rec = store_run_get(api->db, a->id);
	if (!rec)
		http_respond_error(conn, 404, "run_not_found", "run %lld does not exist", (long long)a->id);
	return rec;
}

static void run_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	json_t *rec = run_arg(api, conn, a);
	if (rec) {
		add_waiting(api, rec);
		http_respond_json(conn, 200, rec);
	}
}

static void run_console_route(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	json_t *rec = run_arg(api, conn, a);
	if (!rec)
		return;
	json_decref(rec);
	run_console_get(api, conn, req, a->id);
}

/* POST /v1/runs/{id}/stdin: the body goes to the program's stdin, in the order of the
 * requests; ?eof=1 closes it after the body. 204 once taken; 503 stdin_not_ready: not
 * started yet or too much still unread, nothing taken (send it again). */
static void run_stdin_post(struct api *api, struct http_conn *conn, struct http_request *req,
                           const struct route_args *a)
{
	uint64_t eof = 0;
	if (query_uint(req->query, "eof", 1, &eof) < 0) {
		http_respond_error(conn, 400, "bad_request", "eof is 0 or 1");
		return;
	}
	json_t *rec = run_arg(api, conn, a);
	if (!rec)
		return;
	json_decref(rec);
	int r = req->body_len ? run_input(api->runs, a->id, req->body, req->body_len) : 0;
	if (r == 0 && eof)
		r = run_input(api->runs, a->id, NULL, 0);
	if (r == 0)
		http_respond(conn, 204, "application/json", "", 0);
	else if (r == -EAGAIN)
		respond_errno(conn, r, "stdin_not_ready", "the program cannot take more input yet: send it again");
	else if (r == -ENOTSUP)
		http_respond_error(conn, 409, "no_stdin", "run %lld takes no stdin", (long long)a->id);
	else if (r == -ENOENT || r == -EPIPE)
		respond_errno(conn, -EPIPE, NULL, "the program's stdin is closed (it ended or closed it)");
	else
		respond_errno(conn, r, NULL, NULL);
}

static void run_tests(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	json_t *rec = run_arg(api, conn, a);
	if (!rec)
		return;
	json_decref(rec);
	json_t *t = store_run_tests(api->db, a->id);
	http_respond_json(conn, t ? 200 : 404, t ? t : json_pack("{s:{s:s,s:s}}", "error", "code",
	                                                       "run_not_found", "message", "no such run"));
}

static void run_cancel_post(struct api *api, struct http_conn *conn, struct http_request *req,
                            const struct route_args *a)
{
	(void)req;
	json_t *rec = run_arg(api, conn, a);
	if (!rec)
		return;
	json_decref(rec);
	int r = run_cancel(api->runs, a->id);
	if (r == -ENOENT)
		respond_errno(conn, -EALREADY, NULL, "the run has already ended");
	else if (r < 0)
		respond_errno(conn, r, NULL, NULL);
	else
		http_respond_json(conn, 200, store_run_get(api->db, a->id));
}

/* ---- dispatch ---- */

/* "Authorization: Bearer TOKEN": the scheme is case-insensitive (RFC 7235) and followed
 * by one or more spaces; the token must match exactly (constant time), so an over-long
 * one is refused, not cut to size. */
static int authorized(struct api *api, struct http_conn *conn, struct http_request *req)
{
	if (!http_conn_is_tcp(conn))
		return 1; /* the Unix socket's file mode is the access control */
	const char *a = req->authorization;
	if (!api->token || !a || strncasecmp(a, "Bearer", 6) != 0 || a[6] != ' ')
		return 0;
	const char *given = a + 6;
	while (*given == ' ')
		given++;
	size_t len = strlen(given);
	while (len && (given[len - 1] == ' ' || given[len - 1] == '\t'))
		len--; /* trailing whitespace is not part of the header's value */
	size_t n = strlen(api->token);
	return len == n && n <= API_TOKEN_MAX && CRYPTO_memcmp(given, api->token, n) == 0;
}

static void on_headers(void *ctx, struct http_conn *conn, struct http_request *req)
{
	struct api *api = ctx;
	api->last_request_ms = uv_now(api->loop);
	if (!authorized(api, conn, req)) {
		http_respond_error(conn, 401, "unauthorized", "a valid bearer token is required");
		return;
	}
	if (req->method == HTTP_PUT && strncmp(req->path, "/v1/images/", 11) == 0) {
		const char *sha = req->path + 11;
		if (!image_sha256_valid(sha)) {
			http_respond_error(conn, 400, "bad_request",
			                   "image ids are sha256 digests (64 lowercase hex digits)");
			return;
		}
		image_put_headers(api, conn, req, sha);
	}
}

static void healthz(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	(void)a;
	http_respond_json(conn, 200, json_pack("{s:s,s:s,s:i,s:i}", "status", "ok", "version", UKRUN_VERSION, "pid",
	                                       (int)getpid(), "active", (int)run_manager_active(api->runs)));
}

static void version_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	(void)a;
	version_info(api, conn);
}

static void metrics_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	(void)a;
	metrics(api, conn);
}

static void hosts_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	(void)a;
	http_respond_json(conn, 200, json_pack("{s:o}", "hosts", run_manager_hosts(api->runs)));
}

/* POST /v1/hosts {"name", "uri", "capacity", "memory_mb", "labels", "image_quota_mb"}. */
static int host_spec(json_t *root, struct run_host_config *hc, char **labels, size_t max_labels, char **ret_err)
{
	static const char *const known[] = {"name", "uri", "capacity", "memory_mb", "labels", "image_quota_mb", NULL};
	const char *key;
	json_t *v;
	if (!json_is_object(root))
		return errmsg_fail(ret_err, -EINVAL, "a host must be a JSON object {\"name\", \"uri\", ...}");
	json_object_foreach(root, key, v) {
		int ok = 0;
		for (size_t i = 0; known[i]; i++)
			ok |= strcmp(key, known[i]) == 0;
		if (!ok)
			return errmsg_fail(ret_err, -EINVAL, "unknown field '%s'", key);
	}
	hc->name = json_string_value(json_object_get(root, "name"));
	if (!hc->name || !config_label_ok(hc->name) || strcmp(hc->name, "local") == 0)
		return errmsg_fail(ret_err, -EINVAL, "'name' must be a host name: a-z, 0-9, '.', '_', '-', 1..63 bytes, "
		                   "not 'local'");
	hc->uri = json_string_value(json_object_get(root, "uri"));
	int uri_ok = hc->uri && strlen(hc->uri) <= 1024 && strstr(hc->uri, "://");
	for (const char *c = hc->uri; uri_ok && *c; c++)
		uri_ok = (unsigned char)*c > 0x20 && *c != 0x7f;
	if (!uri_ok)
		return errmsg_fail(ret_err, -EINVAL, "'uri' must be a libvirt URI such as qemu+tls://host/system");
	struct {
		const char *name;
		json_int_t lo, hi, def;
		unsigned *out;
	} nums[] = {
		{"capacity", 1, 1024, 4, &hc->capacity},
		{"memory_mb", 0, 64 << 20, 0, &hc->memory_mb},
		{"image_quota_mb", 0, 64 << 20, 0, &hc->image_quota_mb},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		json_t *n = json_object_get(root, nums[i].name);
		if (n && (!json_is_integer(n) || json_integer_value(n) < nums[i].lo || json_integer_value(n) > nums[i].hi))
			return errmsg_fail(ret_err, -EINVAL, "'%s' must be an integer from %lld to %lld", nums[i].name,
			                   (long long)nums[i].lo, (long long)nums[i].hi);
		*nums[i].out = (unsigned)(n ? json_integer_value(n) : nums[i].def);
	}
	json_t *lv = json_object_get(root, "labels");
	size_t i, n = 0;
	if (lv && (!json_is_array(lv) || json_array_size(lv) > max_labels))
		return errmsg_fail(ret_err, -EINVAL, "'labels' must be an array of at most %zu labels", max_labels);
	json_array_foreach(lv, i, v) {
		if (!json_is_string(v) || !config_label_ok(json_string_value(v)))
			return errmsg_fail(ret_err, -EINVAL, "label %zu must be a-z, 0-9, '.', '_', '-', 1..63 bytes", i);
		labels[n++] = (char *)json_string_value(v);
	}
	labels[n] = NULL;
	hc->labels = labels;
	return 0;
}

static void hosts_post(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)a;
	json_error_t jerr;
	json_t *root = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		http_respond_error(conn, 400, "bad_request", "malformed JSON: %s (line %d)", jerr.text, jerr.line);
		return;
	}
	struct run_host_config hc = {0};
	char *labels[CONFIG_MAX_LABELS + 1];
	char *err = NULL;
	int r = host_spec(root, &hc, labels, CONFIG_MAX_LABELS, &err);
	if (r == 0)
		r = run_host_add(api->runs, &hc, &err);
	if (r < 0)
		respond_errno(conn, r, r == -ENOSPC ? "too_many_hosts" : NULL, err);
	else
		http_respond_json(conn, 201, run_manager_host(api->runs, hc.name));
	free(err);
	json_decref(root);
}

static void host_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	json_t *h = run_manager_host(api->runs, a->sha);
	if (h)
		http_respond_json(conn, 200, h);
	else
		http_respond_error(conn, 404, "host_not_found", "no host %s (GET /v1/hosts lists them)", a->sha);
}

static void host_delete(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	uint64_t drain = 0;
	if (query_uint(req->query, "drain", 1, &drain) < 0) {
		http_respond_error(conn, 400, "bad_request", "drain is 0 or 1");
		return;
	}
	char *err = NULL;
	int r = run_host_remove(api->runs, a->sha, (int)drain, &err);
	if (r < 0)
		respond_errno(conn, r, r == -ENOENT ? "host_not_found" : NULL, err);
	else
		http_respond_json(conn, r ? 202 : 200, json_pack("{s:s,s:b,s:b}", "name", a->sha, "removed", !r,
		                                                  "draining", r > 0));
	free(err);
}

static void images_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)req;
	(void)a;
	images_list(api, conn);
}

static void runs_get(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)a;
	runs_list(api, conn, req);
}

static void runs_create(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a)
{
	(void)a;
	runs_post(api, conn, req);
}

/* Every route of the API, in one table (docs/api.md lists the same). A pattern's {id}
 * matches a run id, {sha} any one segment (its handler checks it is a digest). GET routes
 * also answer HEAD. A path that matches a pattern with another method gets 405. */
typedef void route_fn(struct api *api, struct http_conn *conn, struct http_request *req, const struct route_args *a);
static const struct route {
	enum http_method method;
	const char *pattern;
	route_fn *fn;
} routes[] = {
	{HTTP_GET, "/healthz", healthz},
	{HTTP_GET, "/metrics", metrics_get},
	{HTTP_GET, "/v1/version", version_get},
	{HTTP_GET, "/v1/hosts", hosts_get},
	{HTTP_POST, "/v1/hosts", hosts_post},
	{HTTP_GET, "/v1/hosts/{name}", host_get},
	{HTTP_DELETE, "/v1/hosts/{name}", host_delete},
	{HTTP_GET, "/v1/images", images_get},
	{HTTP_GET, "/v1/images/{sha}", image_get},
	{HTTP_PUT, "/v1/images/{sha}", image_put},
	{HTTP_DELETE, "/v1/images/{sha}", image_del},
	{HTTP_GET, "/v1/runs", runs_get},
	{HTTP_POST, "/v1/runs", runs_create},
	{HTTP_GET, "/v1/runs/{id}", run_get},
	{HTTP_GET, "/v1/runs/{id}/console", run_console_route},
	{HTTP_GET, "/v1/runs/{id}/tests", run_tests},
	{HTTP_POST, "/v1/runs/{id}/cancel", run_cancel_post},
	{HTTP_POST, "/v1/runs/{id}/stdin", run_stdin_post},
};

/* 1 when `path` matches `pattern`, filling *a with what it captured. */
static int route_match(const char *pattern, const char *path, struct route_args *a)
{
	while (*pattern && *path) {
		if (*pattern == '{') {
			const char *pend = strchr(pattern, '}');
			size_t seg = strcspn(path, "/");
			if (!pend)
				return 0;
			if (strncmp(pattern, "{id}", 4) == 0) {
				if (parse_id(path, seg, &a->id) < 0)
					return 0;
			} else {
				if (seg >= sizeof(a->sha))
					seg = sizeof(a->sha) - 1; /* too long for a digest: its handler says 400 */
				memcpy(a->sha, path, seg);
				a->sha[seg] = '\0';
				seg = strcspn(path, "/");
			}
			pattern = pend + 1;
			path += seg;
			continue;
		}
		if (*pattern++ != *path++)
			return 0;
	}
	return *pattern == '\0' && *path == '\0';
}

static const char *method_name(enum http_method m)
{
	return http_method_str(m);
}

static void on_message(void *ctx, struct http_conn *conn, struct http_request *req)
{
	struct api *api = ctx;
	api->requests++;
	api->last_request_ms = uv_now(api->loop);
	log_debug("%s %s", http_method_str(req->method), req->url);
	char allowed[64] = "";
	const char *matched = NULL;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		struct route_args a = {0};
		const struct route *rt = &routes[i];
		if (!route_match(rt->pattern, req->path, &a))
			continue;
		if (rt->method == req->method || (rt->method == HTTP_GET && req->method == HTTP_HEAD)) {
			rt->fn(api, conn, req, &a);
			return;
		}
		matched = rt->pattern;
		size_t n = strlen(allowed);
		snprintf(allowed + n, sizeof(allowed) - n, "%s%s", n ? ", " : "", method_name(rt->method));
	}
	if (matched)
		http_respond_error(conn, 405, "method_not_allowed", "use %s on %s", allowed, matched);
	else
		http_respond_error(conn, 404, "not_found", "no such resource: %s", req->path);
}

void api_handler(struct api *api, struct http_handler *ret)
{
	ret->headers = on_headers;
	ret->message = on_message;
	ret->ctx = api;
}
