/*
 * NAME
 *	sha256.h - SHA-256 (FIPS 180-4)
 */
#ifndef USV_SHA256_H
#define USV_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct usv_sha256 {
	uint32_t h[8];
	uint64_t nbytes;
	uint8_t buf[64];
	size_t nbuf;
} usv_sha256;

void usv_sha256_init(usv_sha256 *c);
void usv_sha256_update(usv_sha256 *c, const void *data, size_t len);
void usv_sha256_final(usv_sha256 *c, uint8_t out[32]);
/* usv_sha256_hex - 64 lowercase hex digits and a NUL into out[65]. */
void usv_sha256_hex(const uint8_t digest[32], char out[65]);
/* usv_sha256_file - hash a whole file; 0 or -errno. */
int usv_sha256_file(const char *path, char out_hex[65]);

#ifdef __cplusplus
}
#endif
#endif
