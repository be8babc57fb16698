/*
 * NAME
 *	proxy_v2.h - PROXY protocol version 2 header parser (HAProxy
 *	"send-proxy-v2") and IPv4 CIDR lists
 *
 * SYNOPSIS
 *	#include "usv/proxy_v2.h"
 *
 * DESCRIPTION
 *	A load balancer in TCP mode that speaks the PROXY protocol v2 sends,
 *	before any byte of the client, one binary header: the 12-byte
 *	signature \r\n\r\n\0\r\nQUIT\n, a version/command byte (0x21 PROXY:
 *	the connection is relayed for the client whose address follows;
 *	0x20 LOCAL: the balancer's own connection, a health check), a
 *	family/protocol byte (0x11 TCP over IPv4, 0x21 TCP over IPv6, 0x00
 *	unspecified), a 2-byte big-endian length of the rest, then source
 *	and destination addresses and ports (network order), then TLVs
 *	(type byte, 2-byte big-endian length, value) that are skipped.
 *
 *	The parser is plain C over a byte buffer: no sockets, no allocation,
 *	no global state, so it can be fed from a peek of a socket (what has
 *	arrived so far) or from a fuzzer.
 *
 * CONTRACTS
 *	usv_proxy_v2_parse(buf, len, &hdr, &need, why, whylen)
 *		Looks at the first len bytes of a connection.
 *		0: a complete, valid header; *need is its size in bytes (to be
 *		consumed), hdr is filled: local 1 for LOCAL or for an
 *		unspecified family (the real socket address applies), else
 *		family AF_INET / AF_INET6 with src/dst as numeric text and
 *		ports in host order.
 *		-EAGAIN: valid so far but incomplete; *need is the number of
 *		bytes to wait for (16 until the length is known, then the
 *		whole header).
 *		-EBADMSG: not a valid v2 header (signature, version, command,
 *		family/protocol, length over USV_PROXY_V2_MAX or too short for
 *		its addresses, malformed TLV); why says which. Never reads
 *		beyond buf[len - 1]. buf may be NULL when len is 0.
 *	usv_proxy_v2_signature_prefix(buf, len)
 *		1 when the len bytes are a prefix of (or start with) the
 *		12-byte signature, else 0.
 *	usv_cidr4_parse(text, &c, why, whylen)
 *		"a.b.c.d" (a /32) or "a.b.c.d/n" with n 0..32; host bits
 *		must be zero. 0 or -EINVAL.
 *	usv_cidr4_match(c, n, addr)
 *		1 when the IPv4 address addr (network order) lies in one of
 *		the n blocks, else 0.
 */
#ifndef USV_PROXY_V2_H
#define USV_PROXY_V2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_PROXY_V2_SIG_LEN 12
#define USV_PROXY_V2_HDR_LEN 16
/* the largest header accepted, fixed part included: addresses plus room
 * for the TLVs HAProxy adds (ALPN, authority, unique id, SSL, netns) */
#define USV_PROXY_V2_MAX 4096

typedef struct usv_proxy_v2 {
	int local;    /* 1: use the socket's own addresses */
	int family;   /* AF_INET, AF_INET6; 0 when local */
	char src[46]; /* client address, numeric (INET6_ADDRSTRLEN) */
	char dst[46]; /* address the client connected to */
	uint16_t src_port, dst_port;
	size_t tlv_len; /* bytes of TLVs skipped */
} usv_proxy_v2;

typedef struct usv_cidr4 {
	uint32_t net;  /* network order */
	uint32_t mask; /* network order */
} usv_cidr4;

int usv_proxy_v2_parse(const unsigned char *buf, size_t len, usv_proxy_v2 *hdr, size_t *need,
                       char *why, size_t whylen);
int usv_proxy_v2_signature_prefix(const unsigned char *buf, size_t len);
int usv_cidr4_parse(const char *text, usv_cidr4 *c, char *why, size_t whylen);
int usv_cidr4_match(const usv_cidr4 *c, size_t n, uint32_t addr);

#ifdef __cplusplus
}
#endif
#endif
