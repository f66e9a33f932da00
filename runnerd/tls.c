/* tls.c — OpenSSL over memory BIOs for runnerd's TLS listener (see tls.h). */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first byte of every TLS connection: a handshake record (RFC 8446 §5.1). */
#define TLS_RECORD_HANDSHAKE 0x16

struct tls_ctx {
	SSL_CTX *ssl;
};

struct tls_session {
	SSL *ssl;
	BIO *rbio;   /* socket → OpenSSL */
	BIO *wbio;   /* OpenSSL → socket */
	int checked; /* the first byte was looked at */
	int failed;
	char err[256];
};

/* OpenSSL's first queued error, or `fallback`, as text. */
static const char *ssl_reason(char *buf, size_t len, const char *fallback)
{
	unsigned long e = ERR_peek_last_error();
	if (!e) {
		snprintf(buf, len, "%s", fallback);
		return buf;
	}
	const char *r = ERR_reason_error_string(e);
	snprintf(buf, len, "%s", r ? r : fallback);
	ERR_clear_error();
	return buf;
}

static void *errf(char **ret_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *errf(char **ret_err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (ret_err && vasprintf(ret_err, fmt, ap) < 0)
		*ret_err = NULL;
	va_end(ap);
	return NULL;
}

/* Can `path` be opened for reading? Names the reason OpenSSL's messages leave out. */
static int readable(const char *path, char **ret_err, const char *what)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		errf(ret_err, "Cannot read TLS %s '%s': %s", what, path, strerror(errno));
		return 0;
	}
	fclose(f);
	return 1;
}

struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, char **ret_err)
{
	char why[256];
	if (!cert_file || !*cert_file)
		return errf(ret_err, "a TLS listener needs --tls-cert FILE");
	if (!key_file || !*key_file)
		return errf(ret_err, "a TLS listener needs --tls-key FILE");
	if (!readable(cert_file, ret_err, "certificate") || !readable(key_file, ret_err, "key"))
		return NULL;
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return errf(ret_err, "out of memory");
	ERR_clear_error();
	ctx->ssl = SSL_CTX_new(TLS_server_method());
	if (!ctx->ssl) {
		errf(ret_err, "Cannot set up TLS: %s", ssl_reason(why, sizeof(why), "SSL_CTX_new failed"));
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_2_VERSION);
	/* Records may leave in pieces and buffers move (each write copies into the BIO). */
	SSL_CTX_set_mode(ctx->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert_file) != 1) {
		errf(ret_err, "Cannot load TLS certificate '%s': %s", cert_file,
		     ssl_reason(why, sizeof(why), "not a PEM certificate"));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key_file, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL checks the pair as it loads the key. */
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			errf(ret_err, "TLS key '%s' does not match the certificate '%s'", key_file, cert_file);
			ERR_clear_error();
			goto fail;
		}
		errf(ret_err, "Cannot load TLS key '%s': %s", key_file,
		     ssl_reason(why, sizeof(why), "not a PEM private key"));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
		errf(ret_err, "TLS key '%s' does not match the certificate '%s'", key_file, cert_file);
		ERR_clear_error();
		goto fail;
	}
	return ctx;
fail:
	tls_ctx_free(ctx);
	return NULL;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

struct tls_session *tls_session_new(struct tls_ctx *ctx)
{
	struct tls_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ssl = SSL_new(ctx->ssl);
	s->rbio = BIO_new(BIO_s_mem());
	s->wbio = BIO_new(BIO_s_mem());
	if (!s->ssl || !s->rbio || !s->wbio) {
		BIO_free(s->rbio);
		BIO_free(s->wbio);
		SSL_free(s->ssl);
		free(s);
		return NULL;
	}
	/* An empty read BIO means "want more", not EOF. */
	BIO_set_mem_eof_return(s->rbio, -1);
	SSL_set_bio(s->ssl, s->rbio, s->wbio); /* the SSL owns both now */
	SSL_set_accept_state(s->ssl);
	return s;
}

void tls_session_free(struct tls_session *s)
{
	if (!s)
		return;
	SSL_free(s->ssl);
	free(s);
}

int tls_session_feed(struct tls_session *s, const char *buf, size_t len)
{
	if (!s->checked && len) {
		s->checked = 1;
		if ((unsigned char)buf[0] != TLS_RECORD_HANDSHAKE) {
			s->failed = TLS_PLAINTEXT;
			snprintf(s->err, sizeof(s->err), "not a TLS handshake (plain HTTP?)");
		}
	}
	if (s->failed)
		return 0; /* dropped: the connection is going away */
	while (len) {
		int n = BIO_write(s->rbio, buf, len > INT_MAX ? INT_MAX : (int)len);
		if (n <= 0)
			return -ENOMEM;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The outcome of an SSL call that returned `r`. */
static int session_error(struct tls_session *s, int r)
{
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		return TLS_EOF;
	s->failed = TLS_FAILED;
	ssl_reason(s->err, sizeof(s->err), e == SSL_ERROR_SYSCALL ? "unexpected end of the stream" : "TLS error");
	return TLS_FAILED;
}

ssize_t tls_session_read(struct tls_session *s, char *buf, size_t cap)
{
	if (s->failed)
		return s->failed;
	if (!cap)
		return 0;
	ERR_clear_error();
	int n = SSL_read(s->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
	if (n > 0)
		return n;
	return session_error(s, n);
}

int tls_session_write(struct tls_session *s, const char *buf, size_t len)
{
	if (s->failed || !SSL_is_init_finished(s->ssl))
		return TLS_FAILED;
	ERR_clear_error();
	while (len) {
		/* A memory BIO always takes everything, so this never wants to wait. */
		int n = SSL_write(s->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
		if (n <= 0) {
			(void)session_error(s, n);
			return TLS_FAILED;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

void tls_session_shutdown(struct tls_session *s)
{
	if (s->failed || !SSL_is_init_finished(s->ssl))
		return;
	ERR_clear_error();
	(void)SSL_shutdown(s->ssl);
	ERR_clear_error();
}

size_t tls_session_pending(const struct tls_session *s)
{
	return BIO_ctrl_pending(SSL_get_wbio(s->ssl));
}

size_t tls_session_take(struct tls_session *s, char *buf, size_t cap)
{
	int n = BIO_read(SSL_get_wbio(s->ssl), buf, cap > INT_MAX ? INT_MAX : (int)cap);
	return n > 0 ? (size_t)n : 0;
}

int tls_session_established(const struct tls_session *s)
{
	return SSL_is_init_finished(s->ssl);
}

const char *tls_session_error(const struct tls_session *s)
{
	return s->err;
}
