/*
 * NAME
 *	opt.c - option values and option errors of the usview commands
 *	(see opt.h)
 */
#include "opt.h"

#include "usv/parse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int usv_opt_long(const char *cmd, const char *opt, const char *arg, long lo, long hi, long *out)
{
	if (!usv_parse_int(arg, lo, hi, out))
		return 0;
	fprintf(stderr, "usview %s: %s: '%s' is not an integer in [%ld, %ld]\n", cmd, opt,
	        arg ? arg : "", lo, hi);
	return -EINVAL;
}

int usv_opt_int(const char *cmd, const char *opt, const char *arg, int lo, int hi, int *out)
{
	long v;
	int rc = usv_opt_long(cmd, opt, arg, lo, hi, &v);
	if (!rc)
		*out = (int)v;
	return rc;
}

int usv_opt_u64(const char *cmd, const char *opt, const char *arg, uint64_t lo, uint64_t hi,
                uint64_t *out)
{
	if (!usv_parse_u64(arg, lo, hi, out))
		return 0;
	fprintf(stderr, "usview %s: %s: '%s' is not an integer in [%" PRIu64 ", %" PRIu64 "]\n",
	        cmd, opt, arg ? arg : "", lo, hi);
	return -EINVAL;
}

int usv_opt_double(const char *cmd, const char *opt, const char *arg, double lo, double hi,
                   double *out)
{
	if (!usv_parse_float(arg, lo, hi, out))
		return 0;
	fprintf(stderr, "usview %s: %s: '%s' is not a number in [%g, %g]\n", cmd, opt,
	        arg ? arg : "", lo, hi);
	return -EINVAL;
}

int usv_opt_float(const char *cmd, const char *opt, const char *arg, double lo, double hi,
                  float *out)
{
	double v;
	int rc = usv_opt_double(cmd, opt, arg, lo, hi, &v);
	if (!rc)
		*out = (float)v;
	return rc;
}

/*
 * After getopt_long() refused an element, optind is past it, except for
 * an unknown short option inside a cluster ("-xj"), where optopt names
 * it. A long option ("--name" or "--name=value") is reported by name.
 */
int usv_opt_fail(const char *cmd, int c, char **argv)
{
	const char *el = optind > 0 ? argv[optind - 1] : NULL;
	int is_long = el && !strncmp(el, "--", 2) && (optopt == 0 || strchr(el, '=') || c == ':');
	if (is_long) {
		size_t n = strcspn(el, "=");
		const char *why = c == ':'          ? "needs a value"
		                  : optopt && el[n] ? "takes no value"
		                                    : "unknown option";
		fprintf(stderr, "usview %s: %.*s: %s\n", cmd, (int)n, el, why);
	} else if (optopt > 0 && optopt < 256) {
		fprintf(stderr, "usview %s: -%c: %s\n", cmd, optopt,
		        c == ':' ? "needs a value" : "unknown option");
	} else {
		fprintf(stderr, "usview %s: %s: unknown option\n", cmd, el ? el : "?");
	}
	fprintf(stderr, "try 'usview %s --help'\n", cmd);
	return 2;
}
