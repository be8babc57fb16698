/*
 * NAME
 *	parse.h - strict number parsing for command-line options and text
 *
 * DESCRIPTION
 *	The one set of number parsers of usview and usviewd. The whole string
 *	must be a number (no leading white space, no trailing characters) that
 *	lies within [lo, hi]; anything else is -EINVAL and *out is left as it
 *	was. Decimal only for the integer parsers; usv_parse_u64 refuses a
 *	leading '-' (strtoull would wrap it around).
 *
 * CONTRACTS
 *	usv_parse_int(s, lo, hi, &out)     long in [lo, hi]
 *	usv_parse_u64(s, lo, hi, &out)     unsigned 64-bit in [lo, hi]
 *	usv_parse_float(s, lo, hi, &out)   finite double in [lo, hi]
 *	All return 0 or -EINVAL; s may be NULL (-EINVAL).
 */
#ifndef USV_PARSE_H
#define USV_PARSE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int usv_parse_int(const char *s, long lo, long hi, long *out);
int usv_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
int usv_parse_float(const char *s, double lo, double hi, double *out);

#ifdef __cplusplus
}
#endif
#endif
