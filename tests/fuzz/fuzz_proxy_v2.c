/*
 * NAME
 *	fuzz_proxy_v2.c - libFuzzer harness: the PROXY protocol v2 header
 *
 * DESCRIPTION
 *	Each input is the first bytes of a connection from a balancer.
 *	usv_proxy_v2_parse() sees every prefix length the accept thread can
 *	see (it parses whatever has arrived), and on each prefix must either
 *	ask for more bytes than it has, refuse, or accept a header no longer
 *	than what it was given. The first line is also tried as an IPv4 CIDR
 *	block, as listen.proxy_protocol_from entries are.
 */
#include "usv/proxy_v2.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	for (size_t len = 0; len <= size; len++) {
		usv_proxy_v2 h;
		size_t need = 0;
		int rc = usv_proxy_v2_parse(data, len, &h, &need, why, sizeof why);
		if (rc == 0 && (need == 0 || need > len))
			abort(); /* a header longer than the bytes it came from */
		if (rc == -EAGAIN && need <= len)
			abort(); /* asks for what it already has: the accept thread would spin */
		if (rc != 0 && rc != -EAGAIN && rc != -EBADMSG)
			abort();
		if (rc == 0 && !h.local && strnlen(h.src, sizeof h.src) == sizeof h.src)
			abort(); /* address text not terminated */
		if (rc != -EAGAIN)
			break; /* a longer prefix gives the same verdict */
	}
	char text[64];
	size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
	memcpy(text, data, n);
	text[n] = 0;
	usv_cidr4 c;
	if (usv_cidr4_parse(text, &c, why, sizeof why) == 0)
		(void)usv_cidr4_match(&c, 1, 0x0100007fu);
	return 0;
}
