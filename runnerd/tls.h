/*
 * tls.h — runnerd's TLS transport: OpenSSL driven through memory BIOs, so the
 * libuv loop keeps owning the socket. A connection's session takes the bytes
 * read from the socket (tls_session_feed), hands back plaintext
 * (tls_session_read), turns plaintext into records (tls_session_write) and
 * leaves whatever must go to the peer (handshake flights, records, alerts) to
 * be drained with tls_session_take. Nothing here touches a descriptor; the
 * HTTP connection (http.c) moves the bytes, so its timeouts, caps and
 * half-close handling apply to TLS unchanged.
 *
 * Server side only, TLS 1.2 and newer.
 */
#ifndef RUNNERD_TLS_H
#define RUNNERD_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct tls_ctx;
struct tls_session;

/* tls_session_read: the peer sent close_notify (its end of the stream). */
#define TLS_EOF (-1)
/* tls_session_read: the handshake or a record failed; tls_session_error() says why.
 * Any alert for the peer is waiting in tls_session_take(). */
#define TLS_FAILED (-2)
/* tls_session_read: the first bytes are not a TLS handshake (plain HTTP, most
 * likely); nothing was answered. */
#define TLS_PLAINTEXT (-3)

/* A server context for the PEM certificate chain `cert_file` and private key
 * `key_file`; NULL with *ret_err naming the file and the reason when either is
 * missing, unreadable or malformed, or when the key does not match the certificate. */
struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, char **ret_err);
void tls_ctx_free(struct tls_ctx *ctx);

/* A session for one accepted connection, or NULL (out of memory). */
struct tls_session *tls_session_new(struct tls_ctx *ctx);
void tls_session_free(struct tls_session *s);

/* Take `len` bytes read from the socket. 0 or -ENOMEM. */
int tls_session_feed(struct tls_session *s, const char *buf, size_t len);
/* Plaintext into `buf` (up to `cap` bytes): > 0 bytes, 0 when more input is needed
 * (the handshake may have progressed: drain tls_session_take), or TLS_EOF,
 * TLS_FAILED, TLS_PLAINTEXT. */
ssize_t tls_session_read(struct tls_session *s, char *buf, size_t cap);
/* Encrypt `len` bytes of plaintext (the handshake must be complete). 0 or TLS_FAILED. */
int tls_session_write(struct tls_session *s, const char *buf, size_t len);
/* Queue close_notify (best effort; nothing when the handshake is not complete). */
void tls_session_shutdown(struct tls_session *s);
/* Bytes waiting to go to the peer. */
size_t tls_session_pending(const struct tls_session *s);
/* Move up to `cap` waiting bytes into `buf`; returns how many. */
size_t tls_session_take(struct tls_session *s, char *buf, size_t cap);
/* Has the handshake completed? */
int tls_session_established(const struct tls_session *s);
/* Why the session failed ("" when it has not). */
const char *tls_session_error(const struct tls_session *s);

#endif
