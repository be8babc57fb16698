/*
 * NAME
 *	dcm_ae.c - AE title validation (DICOM PS3.5 AE value representation)
 *
 * DESCRIPTION
 *	See dcm_ae.h. Plain C: the rule is a few lines of character checks and
 *	needs nothing of DCMTK, so config/ can use it without C++ state.
 */
#include "usv/dcm_ae.h"

#include "usv/err.h"

#include <errno.h>

int usv_dcm_ae_check(const char *ae, char *why, size_t whylen)
{
	size_t n, blanks = 0;

	if (!ae)
		return usv_seterr(why, whylen, -EINVAL, "AE title missing");
	for (n = 0; n <= USV_DCM_AE_MAX && ae[n]; n++)
		;
	if (n == 0 || n > USV_DCM_AE_MAX)
		return usv_seterr(why, whylen, -EINVAL, "AE title must have 1 to 16 characters");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)ae[i];
		if (ch < 0x20 || ch > 0x7e || ch == '\\')
			return usv_seterr(
			    why, whylen, -EINVAL,
			    "AE title may not contain backslash or control characters");
		blanks += ch == ' ';
	}
	if (blanks == n)
		return usv_seterr(why, whylen, -EINVAL, "AE title is blank");
	return 0;
}
