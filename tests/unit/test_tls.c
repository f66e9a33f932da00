/*
 * test_tls.c — runnerd/tls.c: the server context's start-up checks and a session
 * driven byte for byte against a real OpenSSL client over memory BIOs (no socket:
 * the module never touches one). Keys and certificates are made here with OpenSSL.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"

static char dir[] = "/tmp/ukrun-test-tls.XXXXXX";
static char cert_path[128], key_path[128], other_key_path[128], junk_path[128];

static void write_key(EVP_PKEY *k, const char *path)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

/* A self-signed certificate for 127.0.0.1 with its key, another key, a junk file. */
static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	snprintf(other_key_path, sizeof(other_key_path), "%s/other.pem", dir);
	snprintf(junk_path, sizeof(junk_path), "%s/junk.pem", dir);
	EVP_PKEY *k = EVP_RSA_gen(2048), *other = EVP_RSA_gen(2048);
	X509 *x = X509_new();
	if (!k || !other || !x)
		return -1;
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1, 0);
	X509_set_issuer_name(x, n);
	if (!X509_sign(x, k, EVP_sha256()))
		return -1;
	FILE *f = fopen(cert_path, "w");
	if (!f || PEM_write_X509(f, x) != 1)
		return -1;
	fclose(f);
	write_key(k, key_path);
	write_key(other, other_key_path);
	f = fopen(junk_path, "w");
	fputs("not PEM at all\n", f);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(cert_path);
	unlink(key_path);
	unlink(other_key_path);
	unlink(junk_path);
	rmdir(dir);
	return 0;
}

/* tls_ctx_new fails and its message contains `want`. */
static void expect_ctx_fails(const char *cert, const char *key, const char *want)
{
	char *err = NULL;
	struct tls_ctx *ctx = tls_ctx_new(cert, key, &err);
	assert_null(ctx);
	assert_non_null(err);
	if (!strstr(err, want))
		fail_msg("error '%s' does not contain '%s'", err, want);
	free(err);
}

static void test_ctx_checks(void **state)
{
	(void)state;
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
	expect_ctx_fails(NULL, key_path, "--tls-cert");
	expect_ctx_fails(cert_path, NULL, "--tls-key");
	expect_ctx_fails(missing, key_path, "Cannot read TLS certificate");
	expect_ctx_fails(cert_path, missing, "No such file or directory");
	expect_ctx_fails(junk_path, key_path, "Cannot load TLS certificate");
	expect_ctx_fails(cert_path, junk_path, "Cannot load TLS key");
	expect_ctx_fails(cert_path, other_key_path, "does not match the certificate");
	char *err = NULL;
	struct tls_ctx *ctx = tls_ctx_new(cert_path, key_path, &err);
	assert_non_null(ctx);
	assert_null(err);
	tls_ctx_free(ctx);
	tls_ctx_free(NULL);
	tls_session_free(NULL);
}

/* A client SSL on memory BIOs, talking to one server session. */
struct pair {
	struct tls_ctx *ctx;
	struct tls_session *srv;
	SSL_CTX *cctx;
	SSL *cli;
	BIO *cin, *cout; /* client's read and write BIOs */
	char plain[65536]; /* what the server session decrypted */
	size_t plain_len;
	ssize_t last; /* the server's last tls_session_read answer when <= 0 */
};

static void pair_open(struct pair *p, int max_version)
{
	memset(p, 0, sizeof(*p));
	char *err = NULL;
	p->ctx = tls_ctx_new(cert_path, key_path, &err);
	assert_non_null(p->ctx);
	p->srv = tls_session_new(p->ctx);
	assert_non_null(p->srv);
	p->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->cctx);
	if (max_version) {
		SSL_CTX_set_min_proto_version(p->cctx, TLS1_VERSION);
		SSL_CTX_set_max_proto_version(p->cctx, max_version);
		SSL_CTX_set_security_level(p->cctx, 0);
	}
	p->cli = SSL_new(p->cctx);
	p->cin = BIO_new(BIO_s_mem());
	p->cout = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(p->cin, -1);
	SSL_set_bio(p->cli, p->cin, p->cout);
	SSL_set_connect_state(p->cli);
}

static void pair_close(struct pair *p)
{
	SSL_free(p->cli);
	SSL_CTX_free(p->cctx);
	tls_session_free(p->srv);
	tls_ctx_free(p->ctx);
}

/* Move bytes both ways (`chunk` bytes at a time to the server) until neither side has
 * anything to say; the server's plaintext collects in p->plain. */
static void pump(struct pair *p, size_t chunk)
{
	for (int round = 0; round < 100; round++) {
		int moved = 0;
		(void)SSL_do_handshake(p->cli);
		char buf[4096];
		int n;
		while ((n = BIO_read(p->cout, buf, (int)(chunk < sizeof(buf) ? chunk : sizeof(buf)))) > 0) {
			moved = 1;
			assert_int_equal(tls_session_feed(p->srv, buf, (size_t)n), 0);
			ssize_t r;
			while ((r = tls_session_read(p->srv, p->plain + p->plain_len, sizeof(p->plain) - p->plain_len)) > 0)
				p->plain_len += (size_t)r;
			p->last = r;
		}
		size_t m;
		while ((m = tls_session_take(p->srv, buf, sizeof(buf))) > 0) {
			moved = 1;
			BIO_write(p->cin, buf, (int)m);
		}
		if (!moved)
			return;
	}
	fail_msg("the handshake never settled");
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	assert_false(tls_session_established(p.srv));
	assert_int_equal(tls_session_write(p.srv, "early", 5), TLS_FAILED); /* no handshake yet */
	pump(&p, 4096);
	assert_true(tls_session_established(p.srv));
	assert_true(SSL_is_init_finished(p.cli));
	assert_true(SSL_version(p.cli) >= TLS1_2_VERSION);

	/* Client → server, in a record split into 1-byte socket reads. */
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(SSL_write(p.cli, req, (int)strlen(req)), (int)strlen(req));
	pump(&p, 1);
	assert_int_equal(p.plain_len, strlen(req));
	assert_memory_equal(p.plain, req, strlen(req));
	assert_int_equal(p.last, 0); /* wants more, nothing failed */

	/* Server → client: more than one record (16 KiB each) arrives whole. */
	static char big[40000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	assert_int_equal(tls_session_write(p.srv, big, sizeof(big)), 0);
	assert_true(tls_session_pending(p.srv) > sizeof(big));
	pump(&p, 4096);
	static char got[sizeof(big)];
	size_t have = 0;
	int n;
	while (have < sizeof(got) && (n = SSL_read(p.cli, got + have, (int)(sizeof(got) - have))) > 0)
		have += (size_t)n;
	assert_int_equal(have, sizeof(big));
	assert_memory_equal(got, big, sizeof(big));

	/* close_notify from the client is the end of its stream. */
	(void)SSL_shutdown(p.cli);
	pump(&p, 4096);
	assert_int_equal(p.last, TLS_EOF);
	/* ... and the server's close_notify reaches the client. */
	tls_session_shutdown(p.srv);
	assert_true(tls_session_pending(p.srv) > 0);
	pair_close(&p);
}

static void test_plaintext(void **state)
{
	(void)state;
	char *err = NULL;
	struct tls_ctx *ctx = tls_ctx_new(cert_path, key_path, &err);
	assert_non_null(ctx);
	struct tls_session *s = tls_session_new(ctx);
	static const char req[] = "GET /healthz HTTP/1.1\r\n";
	assert_int_equal(tls_session_feed(s, req, strlen(req)), 0);
	char buf[64];
	assert_int_equal(tls_session_read(s, buf, sizeof(buf)), TLS_PLAINTEXT);
	assert_non_null(strstr(tls_session_error(s), "plain HTTP"));
	assert_int_equal(tls_session_pending(s), 0); /* nothing TLS to say to a plain peer */
	tls_session_free(s);
	tls_ctx_free(ctx);
}

static void test_old_protocol_refused(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, TLS1_1_VERSION);
	pump(&p, 4096);
	assert_false(tls_session_established(p.srv));
	assert_int_equal(p.last, TLS_FAILED);
	assert_true(strlen(tls_session_error(p.srv)) > 0);
	/* Once failed, always failed. */
	char buf[16];
	assert_int_equal(tls_session_read(p.srv, buf, sizeof(buf)), TLS_FAILED);
	assert_int_equal(tls_session_write(p.srv, "x", 1), TLS_FAILED);
	pair_close(&p);
}

static void test_garbage_handshake(void **state)
{
	(void)state;
	char *err = NULL;
	struct tls_ctx *ctx = tls_ctx_new(cert_path, key_path, &err);
	struct tls_session *s = tls_session_new(ctx);
	/* A handshake record header, then nonsense. */
	static const char junk[] = "\x16\x03\x01\x00\x10zzzzzzzzzzzzzzzz";
	assert_int_equal(tls_session_feed(s, junk, sizeof(junk) - 1), 0);
	char buf[64];
	assert_int_equal(tls_session_read(s, buf, sizeof(buf)), TLS_FAILED);
	assert_true(strlen(tls_session_error(s)) > 0);
	tls_session_free(s);
	tls_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_checks),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_plaintext),
		cmocka_unit_test(test_old_protocol_refused),
		cmocka_unit_test(test_garbage_handshake),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
