/*
 * NAME
 *	parse.h - option parsing shared by the usview commands
 *
 * DESCRIPTION
 *	Numbers: usv/parse.h (common/), the parsers usviewd uses too.
 *	usv_parse_kernels(): the --kernels name of bench, classify and
 *	forward into the fields of usv_model_opts (usv/nn.h; winograd, bf16),
 *	given to usv_model_load_ex(): "default"
 *	(Winograd, FP32 inner products), "portable" (im2col/GEMM only, the
 *	FP32 reference), "bf16" (USV_BF16_FC: inner products, what the
 *	daemon's model.precision bf16 selects) or "bf16-all" (USV_BF16_ALL:
 *	convolutions too); 0 or -EINVAL.
 */
#ifndef USV_CLI_PARSE_H
#define USV_CLI_PARSE_H

#include "usv/parse.h"

int usv_parse_kernels(const char *s, int *winograd, int *bf16);

#endif
