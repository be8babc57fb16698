/*
 * NAME
 *	parse.c - the --kernels option of bench, classify and forward
 */
#include "parse.h"

#include "usv/nn.h"

#include <errno.h>
#include <string.h>

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
