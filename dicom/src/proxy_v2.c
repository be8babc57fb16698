/*
 * NAME
 *	proxy_v2.c - PROXY protocol v2 header parser and IPv4 CIDR lists
 *
 * DESCRIPTION
 *	See proxy_v2.h. The header layout (HAProxy's proxy-protocol.txt,
 *	section 2.2):
 *
 *	  0..11   signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
 *	  12      version (high nibble, 2) and command (low: 0 LOCAL, 1 PROXY)
 *	  13      family (high: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) and
 *	          protocol (low: 0 UNSPEC, 1 STREAM, 2 DGRAM)
 *	  14..15  length of what follows, big-endian
 *	  16..    INET:  src addr 4, dst addr 4, src port 2, dst port 2 (12)
 *	          INET6: src addr 16, dst addr 16, src port 2, dst port 2 (36)
 *	          then TLVs: type 1, length 2 (big-endian), value
 *
 *	Only what a TCP listener can meet is accepted: LOCAL with any
 *	family (its addresses are ignored), PROXY over TCP/IPv4 or TCP/IPv6,
 *	and PROXY with UNSPEC (the spec says to treat it like LOCAL). UDP and
 *	UNIX sockets are refused. Every check runs on the bytes present
 *	only, so a partial header is judged as early as it can be.
 */
#include "usv/proxy_v2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char SIG[USV_PROXY_V2_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int bad(char *why, size_t whylen, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

int usv_proxy_v2_signature_prefix(const unsigned char *buf, size_t len)
{
	size_t n = len < USV_PROXY_V2_SIG_LEN ? len : USV_PROXY_V2_SIG_LEN;
	return buf && n > 0 && memcmp(buf, SIG, n) == 0;
}

/* Walks the TLVs in p[0..n-1]: each must fit. */
static int check_tlvs(const unsigned char *p, size_t n, char *why, size_t whylen)
{
	size_t off = 0;
	while (off < n) {
		if (n - off < 3)
			return bad(why, whylen, "PROXY v2: truncated TLV at offset %zu",
			           USV_PROXY_V2_HDR_LEN + off);
		size_t l = (size_t)p[off + 1] << 8 | p[off + 2];
		if (l > n - off - 3)
			return bad(why, whylen,
			           "PROXY v2: TLV type 0x%02X at offset %zu claims %zu bytes, "
			           "%zu left",
			           p[off], USV_PROXY_V2_HDR_LEN + off, l, n - off - 3);
		off += 3 + l;
	}
	return 0;
}

int usv_proxy_v2_parse(const unsigned char *buf, size_t len, usv_proxy_v2 *hdr, size_t *need,
                       char *why, size_t whylen)
{
	usv_proxy_v2 h;
	size_t dummy;

	if (!need)
		need = &dummy;
	*need = USV_PROXY_V2_HDR_LEN;
	if (len > 0 && !buf)
		return bad(why, whylen, "PROXY v2: no buffer");
	if (len > 0 && !usv_proxy_v2_signature_prefix(buf, len))
		return bad(why, whylen, "PROXY v2: bad signature");
	if (len > 12 && (buf[12] >> 4) != 2)
		return bad(why, whylen, "PROXY v2: version %d, expected 2", buf[12] >> 4);
	if (len > 12 && (buf[12] & 0x0F) > 1)
		return bad(why, whylen, "PROXY v2: unknown command 0x%X", buf[12] & 0x0F);
	int local = len > 12 && (buf[12] & 0x0F) == 0;
	unsigned fam = 0, proto = 0;
	if (len > 13) {
		fam = buf[13] >> 4;
		proto = buf[13] & 0x0F;
		if (fam > 3 || proto > 2)
			return bad(why, whylen, "PROXY v2: unknown family/protocol 0x%02X",
			           buf[13]);
		if (!local && fam != 0 && (proto != 1 || fam == 3))
			return bad(why, whylen,
			           "PROXY v2: family/protocol 0x%02X is not TCP over IPv4 or "
			           "IPv6",
			           buf[13]);
	}
	if (len < USV_PROXY_V2_HDR_LEN)
		return -EAGAIN;
	size_t body = (size_t)buf[14] << 8 | buf[15];
	if (body > USV_PROXY_V2_MAX - USV_PROXY_V2_HDR_LEN)
		return bad(why, whylen, "PROXY v2: length %zu over the limit of %d", body,
		           USV_PROXY_V2_MAX - USV_PROXY_V2_HDR_LEN);
	size_t alen = 0;
	if (!local && fam == 1)
		alen = 12;
	else if (!local && fam == 2)
		alen = 36;
	if (body < alen)
		return bad(why, whylen, "PROXY v2: length %zu too short for the addresses (%zu)",
		           body, alen);
	*need = USV_PROXY_V2_HDR_LEN + body;
	if (len < *need)
		return -EAGAIN;

	memset(&h, 0, sizeof h);
	const unsigned char *a = buf + USV_PROXY_V2_HDR_LEN;
	if (alen == 0) {
		h.local = 1;
	} else if (fam == 1) {
		h.family = AF_INET;
		inet_ntop(AF_INET, a, h.src, sizeof h.src);
		inet_ntop(AF_INET, a + 4, h.dst, sizeof h.dst);
		h.src_port = (uint16_t)(a[8] << 8 | a[9]);
		h.dst_port = (uint16_t)(a[10] << 8 | a[11]);
	} else {
		h.family = AF_INET6;
		inet_ntop(AF_INET6, a, h.src, sizeof h.src);
		inet_ntop(AF_INET6, a + 16, h.dst, sizeof h.dst);
		h.src_port = (uint16_t)(a[32] << 8 | a[33]);
		h.dst_port = (uint16_t)(a[34] << 8 | a[35]);
	}
	/* LOCAL and UNSPEC carry no addresses we use: the rest may be
	 * anything (HAProxy pads), so only TLVs after known addresses are
	 * walked */
	if (alen) {
		int r = check_tlvs(a + alen, body - alen, why, whylen);
		if (r < 0)
			return r;
		h.tlv_len = body - alen;
	}
	if (hdr)
		*hdr = h;
	return 0;
}

int usv_cidr4_parse(const char *text, usv_cidr4 *c, char *why, size_t whylen)
{
	char ip[INET_ADDRSTRLEN];
	struct in_addr ia;
	long bits = 32;

	if (!text || !c)
		return -EINVAL;
	const char *slash = strchr(text, '/');
	size_t n = slash ? (size_t)(slash - text) : strlen(text);
	if (n == 0 || n >= sizeof ip) {
		if (why && whylen)
			snprintf(why, whylen, "'%s' is not an IPv4 address or a.b.c.d/n block",
			         text);
		return -EINVAL;
	}
	memcpy(ip, text, n);
	ip[n] = 0;
	if (inet_pton(AF_INET, ip, &ia) != 1) {
		if (why && whylen)
			snprintf(why, whylen, "'%s' is not an IPv4 address or a.b.c.d/n block",
			         text);
		return -EINVAL;
	}
	if (slash) {
		char *end;
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || errno || bits < 0 || bits > 32 || slash[1] == '-' ||
		    slash[1] == '+') {
			if (why && whylen)
				snprintf(why, whylen, "'%s': prefix length must be 0..32", text);
			return -EINVAL;
		}
	}
	uint32_t mask = bits == 0 ? 0 : htonl(0xFFFFFFFFu << (32 - bits));
	if (ia.s_addr & ~mask) {
		if (why && whylen)
			snprintf(why, whylen,
			         "'%s': host bits set (the block starts at a lower "
			         "address)",
			         text);
		return -EINVAL;
	}
	c->net = ia.s_addr;
	c->mask = mask;
	return 0;
}

int usv_cidr4_match(const usv_cidr4 *c, size_t n, uint32_t addr)
{
	for (size_t i = 0; c && i < n; i++)
		if ((addr & c[i].mask) == c[i].net)
			return 1;
	return 0;
}
