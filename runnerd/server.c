/* server.c — Unix and TCP listeners with their own accept loops (see server.h). */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* Accepts per wake-up of one listener before the loop serves everything else. */
#define ACCEPT_BATCH 32
/* Out of descriptors and no spare left: stop accepting this long. */
#define ACCEPT_PAUSE_MS 100
/* At most one overload warning per listener this often. */
#define WARN_INTERVAL_MS 5000

static int fail(char **ret_err, int r, const char *what, const char *arg)
{
	if (ret_err && asprintf(ret_err, "%s '%s': %s", what, arg, uv_strerror(r)) < 0)
		*ret_err = NULL;
	return r;
}

static void spare_open(struct server *srv)
{
	if (srv->spare_fd < 0)
		srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static const char *listener_name(const struct listener *l)
{
	return l->conns.tls ? "TLS" : l->is_tcp ? "TCP" : "Unix";
}

/* Rate-limited: a flood must not flood the log as well. */
static void overload_warn(struct listener *l, const char *what)
{
	uint64_t now = uv_now(l->srv->loop);
	if (l->last_warn_ms && now - l->last_warn_ms < WARN_INTERVAL_MS)
		return;
	l->last_warn_ms = now;
	log_warn("%s listener: %s (%llu refused over the cap of %u, %llu closed for want of file "
	         "descriptors so far)",
	         listener_name(l), what, (unsigned long long)l->refused, l->srv->limits.max_conns,
	         (unsigned long long)l->shed);
}

/* Over the cap: a short answer that fits any socket buffer, then close. */
static void refuse(struct listener *l, int fd)
{
#define BUSY_BODY "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections\"}}\n"
	static const char busy[] =
	    "HTTP/1.1 503 Service Unavailable\r\nServer: runnerd/" UKRUN_VERSION "\r\n"
	    "Content-Type: application/json\r\nContent-Length: 80\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" BUSY_BODY;
	_Static_assert(sizeof(BUSY_BODY) - 1 == 80, "Content-Length of the 503 body");
#undef BUSY_BODY
	l->refused++;
	/* A TLS peer could not read a plain answer before a handshake: it just sees the close. */
	if (!l->conns.tls)
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
	overload_warn(l, "too many connections");
}

static void on_acceptable(uv_poll_t *p, int status, int events);

static void on_resume(uv_timer_t *t)
{
	struct listener *l = t->data;
	spare_open(l->srv);
	if (l->fd >= 0)
		uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
}

static void pause_accepting(struct listener *l)
{
	uv_poll_stop(&l->poll);
	uv_timer_start(&l->pause, on_resume, ACCEPT_PAUSE_MS, 0);
}

/* Out of file descriptors: give up the spare to accept and close every waiting peer (it
 * sees the connection end at once instead of hanging in the backlog), then take the
 * spare back. With no spare (another thread took the descriptor), pause instead of
 * spinning on a listener that stays readable. */
static void shed(struct listener *l)
{
	struct server *srv = l->srv;
	overload_warn(l, "out of file descriptors: closing new connections at once");
	if (srv->spare_fd < 0) {
		pause_accepting(l);
		return;
	}
	close(srv->spare_fd);
	srv->spare_fd = -1;
	for (int i = 0; i < 4 * ACCEPT_BATCH; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			close(fd);
			l->shed++;
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		break;
	}
	spare_open(srv);
	if (srv->spare_fd < 0)
		pause_accepting(l);
}

static void on_acceptable(uv_poll_t *p, int status, int events)
{
	struct listener *l = p->data;
	struct server *srv = l->srv;
	(void)events;
	if (status < 0) {
		log_warn("%s listener: %s", listener_name(l), uv_strerror(status));
		pause_accepting(l);
		return;
	}
	for (int i = 0; i < ACCEPT_BATCH && l->fd >= 0; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				shed(l);
				return;
			}
			/* ENOBUFS, ENOMEM, ...: try again a little later. */
			log_warn("%s listener: accept failed: %s", listener_name(l), strerror(errno));
			pause_accepting(l);
			return;
		}
		if (srv->limits.max_conns && l->conns.count >= srv->limits.max_conns) {
			refuse(l, fd);
			continue;
		}
		int r = http_conn_open(srv->loop, fd, l->is_tcp, &srv->handler, &l->conns);
		if (r < 0)
			log_warn("%s listener: cannot serve a connection: %s", listener_name(l), uv_strerror(r));
	}
}

/* Start accepting on the listening socket `fd` (the listener takes it). */
static int listener_start(struct server *srv, struct listener *l, int fd, int is_tcp)
{
	l->srv = srv;
	l->is_tcp = is_tcp;
	l->conns.limits = srv->limits.http; /* (conns.tls is the caller's) */
	int r = uv_poll_init(srv->loop, &l->poll, fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	uv_timer_init(srv->loop, &l->pause);
	l->poll.data = l->pause.data = l;
	l->fd = fd;
	return uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
}

static void listener_stop(struct listener *l)
{
	if (l->fd < 0)
		return;
	uv_close((uv_handle_t *)&l->poll, NULL); /* stops polling now: the fd can go */
	uv_close((uv_handle_t *)&l->pause, NULL);
	close(l->fd);
	l->fd = -1;
}

int server_init(struct server *srv, uv_loop_t *loop, const struct http_handler *handler,
                const struct server_limits *limits)
{
	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->handler = *handler;
	srv->limits = *limits;
	srv->unix_l.fd = srv->tcp_l.fd = -1;
	srv->spare_fd = -1;
	spare_open(srv);
	return srv->spare_fd < 0 ? -errno : 0;
}

/* Is a daemon answering on `path`? */
static int socket_alive(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	int alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

/* A listening, non-blocking socket bound to `sa`, or a negative errno. */
static int listen_socket(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (sa->sa_family != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, sa, len) < 0)
		goto fail;
	return fd;
fail:;
	int r = -errno;
	close(fd);
	return r;
}

int server_listen_unix(struct server *srv, const char *path, int mode, char **ret_err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return fail(ret_err, UV_ENAMETOOLONG, "Socket path too long", path);
	strcpy(sa.sun_path, path);
	if (socket_alive(path))
		return fail(ret_err, UV_EADDRINUSE, "Another runnerd is serving", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return fail(ret_err, -errno, "Cannot remove stale socket", path);
	/* Created with a restrictive umask so the socket is never briefly world-accessible. */
	mode_t old = umask(0177);
	int fd = listen_socket((struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (fd < 0)
		return fail(ret_err, fd, "Cannot listen on", path);
	int r = 0;
	if (chmod(path, (mode_t)mode) < 0 || listen(fd, SOMAXCONN) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		unlink(path);
		return fail(ret_err, r, "Cannot listen on", path);
	}
	srv->socket_path = strdup(path);
	r = listener_start(srv, &srv->unix_l, fd, 0);
	if (r < 0)
		return fail(ret_err, r, "Cannot listen on", path);
	log_info("listening on unix:%s", path);
	return 0;
}

int server_listen_unix_fd(struct server *srv, int fd, char **ret_err)
{
	int accepting = 0;
	socklen_t len = sizeof(accepting);
	struct sockaddr_un sa = {0};
	socklen_t salen = sizeof(sa);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting ||
	    getsockname(fd, (struct sockaddr *)&sa, &salen) < 0 || sa.sun_family != AF_UNIX)
		return fail(ret_err, UV_EINVAL, "Socket activation: the passed descriptor is not a listening Unix socket",
		            "3");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return fail(ret_err, -errno, "Socket activation: cannot set up descriptor", "3");
	srv->socket_path = NULL; /* the socket file is systemd's: never unlinked here */
	int r = listener_start(srv, &srv->unix_l, fd, 0);
	if (r < 0)
		return fail(ret_err, r, "Cannot listen on the activated socket", sa.sun_path);
	log_info("listening on unix:%s (socket activation)", sa.sun_path);
	return 0;
}

int server_listen_tcp(struct server *srv, const char *url, struct tls_ctx *tls, char **ret_err)
{
	if (strncmp(url, tls ? "tls://" : "tcp://", 6) != 0)
		return fail(ret_err, UV_EINVAL,
		            tls ? "Listen address must look like tls://127.0.0.1:7878, not"
		                : "Listen address must look like tcp://127.0.0.1:7878, not",
		            url);
	const char *hp = url + 6;
	char host[256];
	const char *colon;
	if (*hp == '[') {
		const char *end = strchr(hp, ']');
		if (!end || end[1] != ':' || (size_t)(end - hp - 1) >= sizeof(host))
			return fail(ret_err, UV_EINVAL, "Malformed listen address", url);
		memcpy(host, hp + 1, (size_t)(end - hp - 1));
		host[end - hp - 1] = '\0';
		colon = end + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || (size_t)(colon - hp) >= sizeof(host))
			return fail(ret_err, UV_EINVAL, "Malformed listen address", url);
		memcpy(host, hp, (size_t)(colon - hp));
		host[colon - hp] = '\0';
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return fail(ret_err, UV_EINVAL, "Bad port in listen address", url);
	struct sockaddr_storage ss;
	int v6 = strchr(host, ':') != NULL;
	int r = v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss)
	           : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss);
	if (r < 0)
		return fail(ret_err, r, "Bad host in listen address", url);
	int fd = listen_socket((struct sockaddr *)&ss,
	                       v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	if (fd >= 0 && listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		close(fd);
		fd = r;
	}
	if (fd < 0)
		return fail(ret_err, fd, "Cannot listen on", url);
	srv->tcp_l.conns.tls = tls;
	r = listener_start(srv, &srv->tcp_l, fd, 1);
	if (r < 0)
		return fail(ret_err, r, "Cannot listen on", url);
	log_info("listening on %s", url);
	return 0;
}

unsigned server_busy(const struct server *srv)
{
	return srv->unix_l.conns.busy + srv->tcp_l.conns.busy;
}

unsigned server_conn_count(const struct server *srv)
{
	return srv->unix_l.conns.count + srv->tcp_l.conns.count;
}

void server_close(struct server *srv)
{
	if (srv->unix_l.fd >= 0) {
		listener_stop(&srv->unix_l);
		if (srv->socket_path)
			unlink(srv->socket_path);
	}
	listener_stop(&srv->tcp_l);
	if (srv->spare_fd >= 0) {
		close(srv->spare_fd);
		srv->spare_fd = -1;
	}
	free(srv->socket_path);
	srv->socket_path = NULL;
}

void server_close_connections(struct server *srv)
{
	http_conn_close_all(&srv->unix_l.conns);
	http_conn_close_all(&srv->tcp_l.conns);
}
