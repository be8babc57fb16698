/*
 * NAME
 *	parse.h - strict number parsing for usview command-line options
 *
 * DESCRIPTION
 *	The whole string must be a number within [lo, hi]; 0 or -EINVAL.
 */
#ifndef USV_CLI_PARSE_H
#define USV_CLI_PARSE_H

int usv_parse_int(const char *s, long lo, long hi, long *out);
int usv_parse_float(const char *s, double lo, double hi, double *out);

#endif
