/*
 * NAME
 *	parse.h - strict number parsing for usview command-line options
 *
 * DESCRIPTION
 *	The whole string must be a number within [lo, hi]; 0 or -EINVAL.
 *	usv_parse_kernels(): the --kernels name of bench, classify and
 *	forward into the arguments of usv_nn_set_kernels(): "default"
 *	(Winograd, FP32 inner products), "portable" (im2col/GEMM only, the
 *	FP32 reference), "bf16" (USV_BF16_FC: inner products, what the
 *	daemon's model.precision bf16 selects) or "bf16-all" (USV_BF16_ALL:
 *	convolutions too); 0 or -EINVAL.
 */
#ifndef USV_CLI_PARSE_H
#define USV_CLI_PARSE_H

int usv_parse_int(const char *s, long lo, long hi, long *out);
int usv_parse_float(const char *s, double lo, double hi, double *out);
int usv_parse_kernels(const char *s, int *winograd, int *bf16);

#endif
