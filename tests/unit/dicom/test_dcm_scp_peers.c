/*
 * NAME
 *	test_dcm_scp_peers.c - the storage SCP against hostile and slow peers
 *
 * DESCRIPTION
 *	Starts usv_scp on a loopback port and talks to it over raw sockets.
 *	Checked (dcm_scp.cpp, DESIGN):
 *	- the new limits: defaults (32 half-open per address, no per-address
 *	  association cap) and their ranges;
 *	- a first byte other than 0x01 (HTTP) and an A-ASSOCIATE-RQ
 *	  announcing more than the cap are closed at once and counted as
 *	  not DICOM;
 *	- over max_pending_per_address the oldest half-open connection of
 *	  that address is closed (counted as evicted), the newest kept;
 *	- half-open connections are closed after the ACSE timeout (counted),
 *	  not before;
 *	- an RQ sent byte by byte is still negotiated;
 *	- max_assoc_per_address: a second association from the same address
 *	  is rejected transient while the first is open, counted apart from
 *	  "all workers busy", and reported through on_assoc; accepted again
 *	  once the first has ended.
 *	- PROXY protocol v2 from a proxy_from address: the carried address is
 *	  the one reported, checked against allowed_peers hosts and counted
 *	  by max_assoc_per_address; a header arriving in parts does not hold
 *	  the accept thread (another connection is served meanwhile); LOCAL
 *	  keeps the socket's address; no header, a bad or oversized one, or a
 *	  header from an unlisted address is refused and counted; a stalled
 *	  header times out like a half-open connection;
 *	- draining: new connections are refused at once, the association in
 *	  progress goes on and is counted, usv_scp_abort ends it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "usv/dcm_scp.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- a sink that stores nothing (no C-STORE is sent here) ---- */

static int no_tmp(void *ctx, char *path, size_t len)
{
	(void)ctx, (void)path, (void)len;
	return -ENOSPC;
}
static int no_commit(void *ctx, const char *tmp, char *id, size_t len)
{
	(void)ctx, (void)tmp, (void)id, (void)len;
	return -EIO;
}
static void no_discard(void *ctx, const char *tmp)
{
	(void)ctx, (void)tmp;
}
static int no_low(void *ctx, uint64_t w)
{
	(void)ctx, (void)w;
	return 0;
}
static const usv_scp_sink sink = {NULL, no_tmp, no_commit, no_discard, no_low};

/* ---- association records ---- */

static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_outcome[256], last_peer[64], last_calling[17];
static int n_assoc;

static void on_assoc(void *ctx, const usv_scp_assoc_record *r)
{
	(void)ctx;
	pthread_mutex_lock(&rec_mu);
	snprintf(last_outcome, sizeof last_outcome, "%s", r->outcome);
	snprintf(last_peer, sizeof last_peer, "%s", r->peer_addr);
	snprintf(last_calling, sizeof last_calling, "%s", r->calling_aet);
	n_assoc++;
	pthread_mutex_unlock(&rec_mu);
}
static const usv_scp_callbacks cbs = {NULL, NULL, on_assoc, NULL};

/* ---- helpers ---- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static usv_scp *start(usv_scp_config *cfg)
{
	char err[USV_ERRBUF] = "";
	usv_scp *scp = NULL;
	int rc = -EADDRINUSE;

	for (int i = 0; i < 20 && rc == -EADDRINUSE; i++) {
		cfg->port = free_port();
		rc = usv_scp_start(cfg, &cbs, &sink, &scp, err, sizeof err);
	}
	if (rc)
		fail_msg("usv_scp_start: %s (%s)", err, usv_strerror(rc));
	return scp;
}

/* A connection to the SCP that has sent len bytes of data. */
static int dial(int port, const void *data, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	if (len)
		assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
	return fd;
}

/* 1 when the server has closed fd within timeout seconds (data it sent
 * first, such as an A-ABORT, is skipped), 0 when still open. */
static int closed_within(int fd, double timeout)
{
	double end = now() + timeout;
	char buf[256];

	for (;;) {
		int ms = (int)((end - now()) * 1000);
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (ms <= 0 || poll(&pf, 1, ms) != 1)
			return 0;
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return 1;
	}
}

static void put16(unsigned char *b, size_t v)
{
	b[0] = (unsigned char)(v >> 8);
	b[1] = (unsigned char)v;
}

static size_t put_item(unsigned char *b, unsigned type, const void *body, size_t n)
{
	b[0] = (unsigned char)type;
	b[1] = 0;
	put16(b + 2, n);
	memcpy(b + 4, body, n);
	return 4 + n;
}

/* A Verification A-ASSOCIATE-RQ (implicit VR little endian); its length. */
static size_t build_rq(unsigned char *pdu, const char *calling)
{
	unsigned char *b = pdu + 6, ctx[128], ui[64];
	size_t n = 0, cn = 0, un = 0;
	const char *as = "1.2.840.10008.1.1", *ts = "1.2.840.10008.1.2";
	const char *app = "1.2.840.10008.3.1.1.1", *impl = "1.2.826.0.1.3680043.9.7433.2";
	const unsigned char maxlen[4] = {0, 0, 0x40, 0};

	put16(b, 1);
	put16(b + 2, 0);
	memset(b + 4, ' ', 32);
	memcpy(b + 4, "USVIEW", 6);
	memcpy(b + 20, calling, strlen(calling));
	memset(b + 36, 0, 32);
	n = 68;
	n += put_item(b + n, 0x10, app, strlen(app));
	ctx[cn++] = 1; /* context id, 3 reserved bytes */
	ctx[cn++] = 0;
	ctx[cn++] = 0;
	ctx[cn++] = 0;
	cn += put_item(ctx + cn, 0x30, as, strlen(as));
	cn += put_item(ctx + cn, 0x40, ts, strlen(ts));
	n += put_item(b + n, 0x20, ctx, cn);
	un += put_item(ui + un, 0x51, maxlen, 4);
	un += put_item(ui + un, 0x52, impl, strlen(impl));
	n += put_item(b + n, 0x50, ui, un);
	pdu[0] = 0x01;
	pdu[1] = 0;
	pdu[2] = (unsigned char)(n >> 24);
	pdu[3] = (unsigned char)(n >> 16);
	pdu[4] = (unsigned char)(n >> 8);
	pdu[5] = (unsigned char)n;
	return n + 6;
}

/* The first byte of the SCP's answer: 0x02 A-ASSOCIATE-AC, 0x03 -RJ. */
static int answer(int fd)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	unsigned char t = 0;

	if (poll(&pf, 1, 10000) != 1 || recv(fd, &t, 1, 0) != 1)
		return -1;
	return t;
}

/* Waits until st.<field> reaches want (the accept thread works apart). */
#define WAIT_STAT(scp, field, want)                                                                \
	({                                                                                         \
		usv_scp_stats st_;                                                                 \
		double end_ = now() + 10;                                                          \
		do {                                                                               \
			usv_scp_get_stats(scp, &st_);                                              \
			if (st_.field == (want))                                                   \
				break;                                                             \
			usleep(20000);                                                             \
		} while (now() < end_);                                                            \
		st_;                                                                               \
	})

/* ---- tests ---- */

static void test_limits(void **state)
{
	usv_scp_config cfg;
	usv_scp *scp = NULL;
	char err[USV_ERRBUF];
	const struct {
		int pend, assoc;
	} bad[] = {{0, 0}, {1025, 0}, {32, -1}, {32, 65}};

	(void)state;
	usv_scp_config_init(&cfg);
	assert_int_equal(cfg.max_pending_per_address, 32);
	assert_int_equal(cfg.max_assoc_per_address, 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		usv_scp_config_init(&cfg);
		cfg.bind_addr = "127.0.0.1";
		cfg.port = free_port();
		cfg.max_assoc = 4;
		cfg.max_pending_per_address = bad[i].pend;
		cfg.max_assoc_per_address = bad[i].assoc;
		err[0] = 0;
		assert_int_equal(usv_scp_start(&cfg, &cbs, &sink, &scp, err, sizeof err), -EINVAL);
		assert_null(scp);
		assert_non_null(strstr(err, "per address"));
	}
}

static void test_halfopen(void **state)
{
	usv_scp_config cfg;
	usv_scp_stats st;
	unsigned char big[6] = {0x01, 0, 0x01, 0, 0, 0}; /* announces 16 MiB */
	unsigned char pdu[512];
	int fd[3];

	(void)state;
	usv_scp_config_init(&cfg);
	cfg.bind_addr = "127.0.0.1";
	cfg.acse_timeout_s = 2;
	cfg.max_pending_per_address = 2;
	usv_scp *scp = start(&cfg);

	int http = dial(cfg.port, "GET / HTTP/1.0\r\n\r\n", 18);
	assert_true(closed_within(http, 1.0));
	close(http);
	int huge = dial(cfg.port, big, sizeof big);
	assert_true(closed_within(huge, 1.0));
	close(huge);
	st = WAIT_STAT(scp, not_dicom, 2);
	assert_int_equal(st.not_dicom, 2);

	/* three stalled connections, cap 2: the oldest goes */
	for (int i = 0; i < 3; i++) {
		fd[i] = dial(cfg.port, "\x01", 1);
		usleep(50000);
	}
	st = WAIT_STAT(scp, halfopen_evicted, 1);
	assert_int_equal(st.halfopen_evicted, 1);
	st = WAIT_STAT(scp, halfopen_active, 2);
	assert_int_equal(st.halfopen_active, 2);
	assert_true(closed_within(fd[0], 1.0));
	assert_false(closed_within(fd[2], 0.3));

	/* an RQ trickled byte by byte within the ACSE timeout still works; at
	 * the cap, it takes the place of the oldest (fd[1]) */
	size_t n = build_rq(pdu, "TRICKLE");
	int slow = dial(cfg.port, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(send(slow, pdu + i, 1, MSG_NOSIGNAL), 1);
		if (i % 16 == 0)
			usleep(10000);
	}
	assert_int_equal(answer(slow), 0x02);
	close(slow);
	assert_true(closed_within(fd[1], 1.0));
	usv_scp_get_stats(scp, &st);
	assert_int_equal(st.halfopen_evicted, 2);

	/* the ACSE timeout (2 s) closes the last one */
	assert_true(closed_within(fd[2], 4.0));
	st = WAIT_STAT(scp, halfopen_timeout, 1);
	assert_int_equal(st.halfopen_timeout, 1);
	st = WAIT_STAT(scp, halfopen_active, 0); /* updated after each round */
	assert_int_equal(st.halfopen_active, 0);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	usv_scp_stop(scp);
}

static void test_assoc_per_address(void **state)
{
	usv_scp_config cfg;
	usv_scp_stats st;
	unsigned char pdu[512];

	(void)state;
	usv_scp_config_init(&cfg);
	cfg.bind_addr = "127.0.0.1";
	cfg.acse_timeout_s = 5;
	cfg.max_assoc = 2;
	cfg.max_assoc_per_address = 1;
	usv_scp *scp = start(&cfg);
	size_t n = build_rq(pdu, "FIRST");

	int a = dial(cfg.port, pdu, n);
	assert_int_equal(answer(a), 0x02);
	int b = dial(cfg.port, pdu, n);
	assert_int_equal(answer(b), 0x03); /* A-ASSOCIATE-RJ */
	close(b);
	st = WAIT_STAT(scp, assoc_rejected_addr, 1);
	assert_int_equal(st.assoc_rejected_addr, 1);
	assert_int_equal(st.assoc_busy, 0);
	pthread_mutex_lock(&rec_mu);
	assert_non_null(strstr(last_outcome, "too many associations from this address"));
	pthread_mutex_unlock(&rec_mu);

	close(a); /* the worker sees the peer gone and ends the association */
	st = WAIT_STAT(scp, assoc_active, 0);
	assert_int_equal(st.assoc_active, 0);
	int c = dial(cfg.port, pdu, n);
	assert_int_equal(answer(c), 0x02);
	close(c);
	usv_scp_stop(scp);
}

/* A PROXY v2 header, PROXY TCP4 from src (LOCAL when src is NULL). */
static size_t build_proxy(unsigned char *b, const char *src)
{
	static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
	                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
	memcpy(b, sig, 12);
	if (!src) {
		b[12] = 0x20, b[13] = 0x00, b[14] = 0, b[15] = 0;
		return 16;
	}
	b[12] = 0x21, b[13] = 0x11, b[14] = 0, b[15] = 12;
	assert_int_equal(inet_pton(AF_INET, src, b + 16), 1);
	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", b + 20), 1);
	b[24] = 0x9C, b[25] = 0x40, b[26] = 0x2B, b[27] = 0x67;
	return 28;
}

/* header from src + RQ of calling, in one send */
static int dial_proxied(int port, const char *src, const char *calling)
{
	unsigned char buf[600];
	size_t h = build_proxy(buf, src);
	size_t n = build_rq(buf + h, calling);
	return dial(port, buf, h + n);
}

static void expect_record(const char *peer, const char *outcome_part)
{
	double end = now() + 5;
	for (;;) {
		pthread_mutex_lock(&rec_mu);
		int ok = !strcmp(last_peer, peer) && strstr(last_outcome, outcome_part);
		char p[64], o[256];
		snprintf(p, sizeof p, "%s", last_peer);
		snprintf(o, sizeof o, "%s", last_outcome);
		pthread_mutex_unlock(&rec_mu);
		if (ok)
			return;
		if (now() > end)
			fail_msg("last record %s '%s', want %s '%s'", p, o, peer, outcome_part);
		usleep(20000);
	}
}

static void test_proxy(void **state)
{
	usv_scp_config cfg;
	usv_scp_stats st;
	unsigned char buf[600];
	const char *const from[] = {"127.0.0.1"};
	const char *const bad_from[] = {"127.0.0.1/8"};
	usv_scp_peer peers[2] = {{"RELAYED", "10.1.2.3"}, {"ANY", ""}};
	char err[USV_ERRBUF];
	usv_scp *scp = NULL;

	(void)state;
	usv_scp_config_init(&cfg);
	cfg.bind_addr = "127.0.0.1";
	cfg.port = free_port();
	cfg.proxy_from = bad_from;
	cfg.nproxy_from = 1;
	assert_int_equal(usv_scp_start(&cfg, &cbs, &sink, &scp, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "host bits"));

	usv_scp_config_init(&cfg);
	cfg.bind_addr = "127.0.0.1";
	cfg.acse_timeout_s = 2;
	cfg.max_assoc = 4;
	cfg.max_assoc_per_address = 1;
	cfg.proxy_from = from;
	cfg.nproxy_from = 1;
	cfg.peers = peers;
	cfg.npeers = 2;
	scp = start(&cfg);

	/* a header in two parts, 300 ms apart; meanwhile another balancer
	 * connection is served */
	size_t h = build_proxy(buf, "10.1.2.3");
	size_t n = build_rq(buf + h, "RELAYED");
	int split = dial(cfg.port, buf, 10);
	int other = dial_proxied(cfg.port, "10.9.9.9", "ANY");
	assert_int_equal(answer(other), 0x02);
	close(other); /* its record comes when it ends */
	expect_record("10.9.9.9", "");
	usleep(300000);
	assert_int_equal(send(split, buf + 10, h + n - 10, MSG_NOSIGNAL), (ssize_t)(h + n - 10));
	assert_int_equal(answer(split), 0x02); /* allowed: host 10.1.2.3 carried */

	/* max_assoc_per_address counts the carried address */
	int second = dial_proxied(cfg.port, "10.1.2.3", "RELAYED");
	assert_int_equal(answer(second), 0x03);
	close(second);
	expect_record("10.1.2.3", "too many associations from this address");
	close(split);
	st = WAIT_STAT(scp, assoc_active, 0);

	/* allowed_peers: RELAYED only from 10.1.2.3 */
	int wrong = dial_proxied(cfg.port, "10.1.2.4", "RELAYED");
	assert_int_equal(answer(wrong), 0x03);
	close(wrong);
	expect_record("10.1.2.4", "calling AE title not accepted: RELAYED from 10.1.2.4");

	/* LOCAL: the socket's address */
	int local = dial_proxied(cfg.port, NULL, "ANY");
	assert_int_equal(answer(local), 0x02);
	close(local);
	expect_record("127.0.0.1", "");

	/* no header from a listed address; an oversized header; a v1 line */
	n = build_rq(buf, "ANY");
	int plain = dial(cfg.port, buf, n);
	assert_true(closed_within(plain, 1.0));
	close(plain);
	expect_record("127.0.0.1", "no valid PROXY protocol v2 header");
	h = build_proxy(buf, "10.1.2.3");
	buf[14] = 0xFF;
	int huge = dial(cfg.port, buf, h);
	assert_true(closed_within(huge, 1.0));
	close(huge);
	expect_record("127.0.0.1", "over the limit");
	int v1 = dial(cfg.port, "PROXY TCP4 10.1.2.3 127.0.0.1 1 2\r\n", 34);
	assert_true(closed_within(v1, 1.0));
	close(v1);
	st = WAIT_STAT(scp, proxy_refused, 3);
	assert_int_equal(st.proxy_refused, 3);
	assert_int_equal(st.not_dicom, 0);

	/* a stalled header: closed at the ACSE timeout (2 s), not before */
	int stalled = dial(cfg.port, buf, 14);
	assert_false(closed_within(stalled, 1.0));
	assert_true(closed_within(stalled, 3.0));
	close(stalled);
	st = WAIT_STAT(scp, halfopen_timeout, 1);
	assert_int_equal(st.halfopen_timeout, 1);
	usv_scp_stop(scp);

	/* max_pending_per_address (2): the balancer's own address is not
	 * capped while headers are awaited; the carried address is */
	cfg.max_pending_per_address = 2;
	scp = start(&cfg);
	int w[3], c[3];
	for (int i = 0; i < 3; i++)
		w[i] = dial(cfg.port, buf, 5); /* part of a signature */
	st = WAIT_STAT(scp, halfopen_active, 3);
	assert_int_equal(st.halfopen_active, 3);
	assert_int_equal(st.halfopen_evicted, 0);
	for (int i = 0; i < 3; i++) {
		h = build_proxy(buf, "10.5.5.5");
		buf[h] = 0x01; /* and the first byte of an RQ */
		c[i] = dial(cfg.port, buf, h + 1);
		usleep(50000);
	}
	st = WAIT_STAT(scp, halfopen_evicted, 1);
	assert_int_equal(st.halfopen_evicted, 1);
	assert_true(closed_within(c[0], 1.0));
	assert_false(closed_within(c[2], 0.2));
	assert_false(closed_within(w[0], 0.1));
	for (int i = 0; i < 3; i++)
		close(w[i]), close(c[i]);
	usv_scp_stop(scp);

	/* a header from an address not listed */
	cfg.max_pending_per_address = 32;
	cfg.proxy_from = NULL;
	cfg.nproxy_from = 0;
	scp = start(&cfg);
	int unlisted = dial_proxied(cfg.port, "10.1.2.3", "ANY");
	assert_true(closed_within(unlisted, 1.0));
	close(unlisted);
	expect_record("127.0.0.1", "not in listen.proxy_protocol_from");
	st = WAIT_STAT(scp, proxy_refused, 1);
	assert_int_equal(st.proxy_refused, 1);
	usv_scp_stop(scp);
}

static void test_drain(void **state)
{
	usv_scp_config cfg;
	usv_scp_stats st;
	unsigned char pdu[512];

	(void)state;
	usv_scp_config_init(&cfg);
	cfg.bind_addr = "127.0.0.1";
	cfg.dimse_timeout_s = 60;
	usv_scp *scp = start(&cfg);
	size_t n = build_rq(pdu, "DRAIN");

	int a = dial(cfg.port, pdu, n);
	assert_int_equal(answer(a), 0x02);
	int half = dial(cfg.port, pdu, 3);
	st = WAIT_STAT(scp, halfopen_active, 1);
	assert_int_equal(usv_scp_in_progress(scp), 1);
	assert_int_equal(usv_scp_drain(scp), 0);
	assert_int_equal(usv_scp_drain(scp), 0);
	usv_scp_get_stats(scp, &st);
	assert_int_equal(st.draining, 1);
	/* refused by the kernel at once; the half-open one is closed */
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(fd);
	assert_true(closed_within(half, 2.0));
	close(half);
	/* the association goes on until aborted */
	assert_false(closed_within(a, 0.5));
	assert_int_equal(usv_scp_in_progress(scp), 1);
	assert_int_equal(usv_scp_abort(scp), 1);
	assert_true(closed_within(a, 2.0));
	close(a);
	double end = now() + 5;
	while (usv_scp_in_progress(scp) > 0 && now() < end)
		usleep(20000);
	assert_int_equal(usv_scp_in_progress(scp), 0);
	usv_scp_stop(scp);
}

int main(void)
{
	char err[USV_ERRBUF];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_halfopen),
	    cmocka_unit_test(test_assoc_per_address),
	    cmocka_unit_test(test_proxy),
	    cmocka_unit_test(test_drain),
	};

	signal(SIGPIPE, SIG_IGN);
	if (usv_dcm_global_init(err, sizeof err) < 0) {
		fprintf(stderr, "DICOM init: %s\n", err);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
