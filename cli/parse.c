/*
 * NAME
 *	parse.c - strict number parsing for usview command-line options
 */
#include "parse.h"

#include "usv/nn.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int usv_parse_int(const char *s, long lo, long hi, long *out)
{
	char *e;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

int usv_parse_float(const char *s, double lo, double hi, double *out)
{
	char *e;
	errno = 0;
	double v = strtod(s, &e);
	if (errno || e == s || *e || !isfinite(v) || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

int usv_parse_kernels(const char *s, int *winograd, int *bf16)
{
	if (!strcmp(s, "default")) {
		*winograd = 1;
		*bf16 = 0;
	} else if (!strcmp(s, "portable")) {
		*winograd = 0;
		*bf16 = 0;
	} else if (!strcmp(s, "bf16")) {
		*winograd = 1;
		*bf16 = USV_BF16_FC;
	} else if (!strcmp(s, "bf16-all")) {
		*winograd = 1;
		*bf16 = USV_BF16_ALL;
	} else {
		return -EINVAL;
	}
	return 0;
}
