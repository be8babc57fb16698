/*
 * NAME
 *	err.h - usview error convention
 *
 * DESCRIPTION
 *	Every usview library function returns 0 on success or a negative
 *	errno-style code (-EINVAL, -ENOMEM, -EIO, ...) and hands results back
 *	through output parameters. The codes below extend errno for conditions
 *	errno has no name for. Library code never exits and never logs: where a
 *	caller needs more than the code, the function takes a char buffer
 *	(usv_errbuf) and writes one line naming the file and the reason.
 */
#ifndef USV_ERR_H
#define USV_ERR_H

#include <stddef.h>
#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
	USV_ERR_FORMAT = 10001,	   /* input is malformed (bad magic, truncated, inconsistent) */
	USV_ERR_UNSUPPORTED = 10002, /* well-formed but uses a feature we do not implement */
	USV_ERR_LIMIT = 10003,	   /* a size from the input exceeds a cap */
	USV_ERR_EXCLUDED = 10004,   /* input deliberately not processed (policy) */
	USV_ERR_DICOM = 10005,	   /* DICOM toolkit / network failure */
};

/* Size of the error buffers passed around by usview functions. */
#define USV_ERRBUF 512

/* usv_strerror - text for a (negative) usview or errno code; never NULL. */
const char *usv_strerror(int code);

/* usv_seterr - printf into errbuf (if errbuf != NULL), return code unchanged. */
int usv_seterr(char *errbuf, size_t len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
