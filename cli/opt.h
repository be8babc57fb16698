/*
 * NAME
 *	opt.h - the one option style of the usview commands
 *
 * SYNOPSIS
 *	#include "opt.h"
 *
 *	optind = 1;
 *	while ((c = getopt_long(argc, argv, ":m:t:h", opts, NULL)) != -1)
 *		switch (c) {
 *		case 't':
 *			if (usv_opt_int("cmd", "--threads", optarg, 1, 256, &t))
 *				return 2;
 *			break;
 *		...
 *		default:
 *			return usv_opt_fail("cmd", c, argv);
 *		}
 *
 * DESCRIPTION
 *	Every command parses its options with getopt_long(); the short
 *	option string starts with ':' so that getopt prints nothing and a
 *	missing value comes back as ':'. -h / --help prints the usage on
 *	stdout and exits 0. A usage error is one line on stderr,
 *	"usview CMD: --OPT: reason", and exit status 2.
 *
 *	usv_opt_int(), usv_opt_long(), usv_opt_u64(), usv_opt_double() and
 *	usv_opt_float() parse an option's value with the strict parsers of
 *	usv/parse.h (whole string, no white space, within [lo, hi]). On
 *	success they store the value and return 0; otherwise *out is left
 *	as it was, the line "usview CMD: --OPT: 'ARG' is not an integer
 *	(a number) in [LO, HI]" goes to stderr and they return -EINVAL.
 *
 *	usv_opt_fail() reports what getopt_long() refused ('?' for an
 *	unknown option or a value given to an option that takes none, ':'
 *	for a missing value) as "usview CMD: --OPT: reason" plus a pointer
 *	to --help, and returns 2, the exit status of a usage error.
 */
#ifndef USV_CLI_OPT_H
#define USV_CLI_OPT_H

#include <stdint.h>

int usv_opt_int(const char *cmd, const char *opt, const char *arg, int lo, int hi, int *out);
int usv_opt_long(const char *cmd, const char *opt, const char *arg, long lo, long hi, long *out);
int usv_opt_u64(const char *cmd, const char *opt, const char *arg, uint64_t lo, uint64_t hi,
                uint64_t *out);
int usv_opt_double(const char *cmd, const char *opt, const char *arg, double lo, double hi,
                   double *out);
int usv_opt_float(const char *cmd, const char *opt, const char *arg, double lo, double hi,
                  float *out);
int usv_opt_fail(const char *cmd, int c, char **argv);

#endif
