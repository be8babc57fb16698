/*
 * NAME
 *	parse.c - strict number parsing (see usv/parse.h)
 */
#include "usv/parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* strtol and friends skip leading white space; we do not. */
static int starts_ok(const char *s)
{
	return s && *s && !isspace((unsigned char)*s);
}

int usv_parse_int(const char *s, long lo, long hi, long *out)
{
	char *e;
	long v;

	if (!starts_ok(s) || !out)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

int usv_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *e;
	unsigned long long v;

	if (!starts_ok(s) || *s == '-' || *s == '+' || !out)
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno || e == s || *e || v < lo || v > hi)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

int usv_parse_float(const char *s, double lo, double hi, double *out)
{
	char *e;
	double v;

	if (!starts_ok(s) || !out)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &e);
	if (errno || e == s || *e || !isfinite(v) || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}
