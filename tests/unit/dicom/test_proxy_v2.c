/*
 * NAME
 *	test_proxy_v2.c - unit tests of the PROXY protocol v2 parser and the
 *	IPv4 CIDR lists (dicom/src/proxy_v2.c)
 *
 * DESCRIPTION
 *	Headers are assembled byte by byte from the layout in HAProxy's
 *	proxy-protocol.txt (2.2): PROXY over TCP/IPv4 and TCP/IPv6, LOCAL,
 *	UNSPEC, with and without TLVs; every strict prefix of a valid header
 *	must ask for more bytes (and say how many once the length is known);
 *	bad signature, version, command, family, oversized and undersized
 *	lengths and malformed TLVs are refused with a reason; the v1 text
 *	form and a DICOM A-ASSOCIATE-RQ are refused at their first byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "usv/proxy_v2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* signature, ver/cmd, fam, length, then body; returns the total size */
static size_t make(unsigned char *out, unsigned char vc, unsigned char fam,
                   const unsigned char *body, size_t blen)
{
	memcpy(out, SIG, 12);
	out[12] = vc;
	out[13] = fam;
	out[14] = (unsigned char)(blen >> 8);
	out[15] = (unsigned char)blen;
	if (blen)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

static const unsigned char V4_BODY[12] = {10, 1, 2, 3, 192, 168, 7, 9, 0xC3, 0x50, 0x2B, 0x68};

static void test_tcp4(void **state)
{
	(void)state;
	unsigned char b[64];
	size_t n = make(b, 0x21, 0x11, V4_BODY, sizeof V4_BODY), need = 0;
	usv_proxy_v2 h;
	char why[160] = "";
	assert_int_equal(n, 28);
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, why, sizeof why), 0);
	assert_int_equal(need, 28);
	assert_int_equal(h.local, 0);
	assert_int_equal(h.family, AF_INET);
	assert_string_equal(h.src, "10.1.2.3");
	assert_string_equal(h.dst, "192.168.7.9");
	assert_int_equal(h.src_port, 50000);
	assert_int_equal(h.dst_port, 11112);
	assert_int_equal(h.tlv_len, 0);
	/* bytes after the header (the client's first PDU) are not looked at */
	unsigned char more[80];
	memcpy(more, b, n);
	memset(more + n, 0x01, sizeof more - n);
	assert_int_equal(usv_proxy_v2_parse(more, sizeof more, &h, &need, why, sizeof why), 0);
	assert_int_equal(need, 28);
}

static void test_tcp6(void **state)
{
	(void)state;
	unsigned char body[36] = {0}, b[64];
	struct in6_addr s, d;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::42", &s), 1);
	assert_int_equal(inet_pton(AF_INET6, "fd00::1:2", &d), 1);
	memcpy(body, &s, 16);
	memcpy(body + 16, &d, 16);
	body[32] = 0x04, body[33] = 0x00; /* 1024 */
	body[34] = 0x00, body[35] = 0x68; /* 104 */
	size_t n = make(b, 0x21, 0x21, body, sizeof body), need = 0;
	usv_proxy_v2 h;
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, NULL, 0), 0);
	assert_int_equal(need, 52);
	assert_int_equal(h.family, AF_INET6);
	assert_string_equal(h.src, "2001:db8::42");
	assert_string_equal(h.dst, "fd00::1:2");
	assert_int_equal(h.src_port, 1024);
	assert_int_equal(h.dst_port, 104);
}

static void test_local_and_unspec(void **state)
{
	(void)state;
	unsigned char b[64];
	usv_proxy_v2 h;
	size_t need;
	/* HAProxy's health check: LOCAL, UNSPEC, no body */
	size_t n = make(b, 0x20, 0x00, NULL, 0);
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, NULL, 0), 0);
	assert_int_equal(need, 16);
	assert_int_equal(h.local, 1);
	assert_string_equal(h.src, "");
	/* LOCAL with addresses: they are skipped, not used */
	n = make(b, 0x20, 0x11, V4_BODY, sizeof V4_BODY);
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, NULL, 0), 0);
	assert_int_equal(need, 28);
	assert_int_equal(h.local, 1);
	/* PROXY with UNSPEC: treated like LOCAL */
	n = make(b, 0x21, 0x00, NULL, 0);
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, NULL, 0), 0);
	assert_int_equal(h.local, 1);
}

static void test_truncated(void **state)
{
	(void)state;
	unsigned char body[12 + 7], b[64];
	memcpy(body, V4_BODY, 12);
	/* one TLV: PP2_TYPE_AUTHORITY (0x02), 4 bytes "node" */
	body[12] = 0x02, body[13] = 0, body[14] = 4;
	memcpy(body + 15, "node", 4);
	size_t n = make(b, 0x21, 0x11, body, sizeof body);
	for (size_t k = 0; k < n; k++) {
		size_t need = 0;
		usv_proxy_v2 h;
		assert_int_equal(usv_proxy_v2_parse(b, k, &h, &need, NULL, 0), -EAGAIN);
		assert_int_equal(need, k < 16 ? 16 : n);
	}
	assert_int_equal(usv_proxy_v2_parse(NULL, 0, NULL, NULL, NULL, 0), -EAGAIN);
}

static void test_bad_signature(void **state)
{
	(void)state;
	unsigned char b[64];
	char why[160] = "";
	size_t n = make(b, 0x21, 0x11, V4_BODY, sizeof V4_BODY);
	for (size_t i = 0; i < 12; i++) {
		unsigned char c[64];
		memcpy(c, b, n);
		c[i] ^= 0x20;
		assert_int_equal(usv_proxy_v2_parse(c, n, NULL, NULL, why, sizeof why), -EBADMSG);
		assert_non_null(strstr(why, "signature"));
		/* refused as soon as the bad byte is there */
		assert_int_equal(usv_proxy_v2_parse(c, i + 1, NULL, NULL, NULL, 0), -EBADMSG);
	}
	/* the v1 text form and a DICOM A-ASSOCIATE-RQ are not v2 headers */
	const unsigned char v1[] = "PROXY TCP4 10.1.2.3 10.0.0.1 5000 104\r\n";
	assert_int_equal(usv_proxy_v2_parse(v1, sizeof v1 - 1, NULL, NULL, NULL, 0), -EBADMSG);
	const unsigned char rq[6] = {0x01, 0x00, 0x00, 0x00, 0x00, 0xCD};
	assert_int_equal(usv_proxy_v2_parse(rq, 1, NULL, NULL, NULL, 0), -EBADMSG);
	assert_int_equal(usv_proxy_v2_signature_prefix(rq, 6), 0);
	assert_int_equal(usv_proxy_v2_signature_prefix(b, 5), 1);
	assert_int_equal(usv_proxy_v2_signature_prefix(b, n), 1);
}

static void test_bad_version_command_family(void **state)
{
	(void)state;
	unsigned char b[64];
	char why[160] = "";
	static const unsigned char vcs[] = {0x11, 0x31, 0x01, 0x22, 0x2F};
	for (size_t i = 0; i < sizeof vcs; i++) {
		size_t n = make(b, vcs[i], 0x11, V4_BODY, sizeof V4_BODY);
		assert_int_equal(usv_proxy_v2_parse(b, n, NULL, NULL, why, sizeof why), -EBADMSG);
		/* judged on the 13th byte already */
		assert_int_equal(usv_proxy_v2_parse(b, 13, NULL, NULL, NULL, 0), -EBADMSG);
	}
	size_t n = make(b, 0x11, 0x11, V4_BODY, sizeof V4_BODY);
	usv_proxy_v2_parse(b, n, NULL, NULL, why, sizeof why);
	assert_non_null(strstr(why, "version 1"));
	/* UDP over IPv4, UNIX stream, unknown family */
	static const unsigned char fams[] = {0x12, 0x22, 0x31, 0x41, 0x13};
	for (size_t i = 0; i < sizeof fams; i++) {
		n = make(b, 0x21, fams[i], V4_BODY, sizeof V4_BODY);
		assert_int_equal(usv_proxy_v2_parse(b, n, NULL, NULL, why, sizeof why), -EBADMSG);
	}
}

static void test_lengths(void **state)
{
	(void)state;
	unsigned char b[16];
	char why[160] = "";
	size_t need = 0;
	/* 0xFFFF: refused on the header alone, without waiting for 64 KiB */
	make(b, 0x21, 0x11, NULL, 0);
	b[14] = 0xFF, b[15] = 0xFF;
	assert_int_equal(usv_proxy_v2_parse(b, 16, NULL, &need, why, sizeof why), -EBADMSG);
	assert_non_null(strstr(why, "limit"));
	/* the largest accepted length asks for exactly that much */
	size_t max = USV_PROXY_V2_MAX - 16;
	b[14] = (unsigned char)(max >> 8), b[15] = (unsigned char)max;
	assert_int_equal(usv_proxy_v2_parse(b, 16, NULL, &need, NULL, 0), -EAGAIN);
	assert_int_equal(need, USV_PROXY_V2_MAX);
	b[15]++;
	assert_int_equal(usv_proxy_v2_parse(b, 16, NULL, &need, NULL, 0), -EBADMSG);
	/* shorter than the addresses of its family */
	unsigned char c[64];
	size_t n = make(c, 0x21, 0x11, V4_BODY, 11);
	assert_int_equal(usv_proxy_v2_parse(c, n, NULL, NULL, why, sizeof why), -EBADMSG);
	assert_non_null(strstr(why, "too short"));
	n = make(c, 0x21, 0x21, V4_BODY, 12);
	assert_int_equal(usv_proxy_v2_parse(c, n, NULL, NULL, NULL, 0), -EBADMSG);
}

static void test_tlvs(void **state)
{
	(void)state;
	unsigned char body[128], b[160];
	usv_proxy_v2 h;
	size_t need, k = 12;
	memcpy(body, V4_BODY, 12);
	/* ALPN "dicom", NOOP of 0 bytes, UNIQUE_ID of 20 bytes, CRC32C */
	body[k++] = 0x01, body[k++] = 0, body[k++] = 5;
	memcpy(body + k, "dicom", 5), k += 5;
	body[k++] = 0x04, body[k++] = 0, body[k++] = 0;
	body[k++] = 0x05, body[k++] = 0, body[k++] = 20;
	memset(body + k, 'u', 20), k += 20;
	body[k++] = 0x03, body[k++] = 0, body[k++] = 4;
	memset(body + k, 0, 4), k += 4;
	size_t n = make(b, 0x21, 0x11, body, k);
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, NULL, 0), 0);
	assert_int_equal(need, n);
	assert_int_equal(h.tlv_len, k - 12);
	assert_string_equal(h.src, "10.1.2.3");
	/* the last TLV claims one byte more than is left */
	char why[160] = "";
	b[16 + k - 5] = 5;
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, why, sizeof why), -EBADMSG);
	assert_non_null(strstr(why, "TLV"));
	/* two stray bytes after the last TLV */
	body[k++] = 0x20, body[k++] = 0;
	n = make(b, 0x21, 0x11, body, k);
	assert_int_equal(usv_proxy_v2_parse(b, n, &h, &need, why, sizeof why), -EBADMSG);
	assert_non_null(strstr(why, "truncated TLV"));
}

static void test_cidr(void **state)
{
	(void)state;
	usv_cidr4 c[3];
	char why[160];
	struct in_addr a;
	assert_int_equal(usv_cidr4_parse("127.0.0.1", &c[0], why, sizeof why), 0);
	assert_int_equal(usv_cidr4_parse("10.0.0.0/8", &c[1], why, sizeof why), 0);
	assert_int_equal(usv_cidr4_parse("192.168.4.0/23", &c[2], why, sizeof why), 0);
	static const struct {
		const char *ip;
		int in;
	} cases[] = {{"127.0.0.1", 1},    {"127.0.0.2", 0},   {"10.255.1.2", 1},   {"11.0.0.0", 0},
	             {"192.168.5.77", 1}, {"192.168.6.1", 0}, {"192.168.3.255", 0}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		inet_pton(AF_INET, cases[i].ip, &a);
		assert_int_equal(usv_cidr4_match(c, 3, a.s_addr), cases[i].in);
	}
	assert_int_equal(usv_cidr4_match(c, 0, a.s_addr), 0);
	assert_int_equal(usv_cidr4_parse("0.0.0.0/0", &c[0], why, sizeof why), 0);
	inet_pton(AF_INET, "203.0.113.9", &a);
	assert_int_equal(usv_cidr4_match(c, 1, a.s_addr), 1);
	static const char *const badv[] = {"",          "10.0.0.0/33", "10.0.0.1/8",  "10.0.0/8",
	                                   "::1",       "10.0.0.0/",   "10.0.0.0/-1", "10.0.0.0/8x",
	                                   "localhost", "/8"};
	for (size_t i = 0; i < sizeof badv / sizeof badv[0]; i++) {
		why[0] = 0;
		assert_int_equal(usv_cidr4_parse(badv[i], &c[0], why, sizeof why), -EINVAL);
		assert_true(why[0] != 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tcp4),
	    cmocka_unit_test(test_tcp6),
	    cmocka_unit_test(test_local_and_unspec),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_bad_signature),
	    cmocka_unit_test(test_bad_version_command_family),
	    cmocka_unit_test(test_lengths),
	    cmocka_unit_test(test_tlvs),
	    cmocka_unit_test(test_cidr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
