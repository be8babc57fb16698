/*
 * NAME
 *	dcm_ae.h - the one check of a DICOM Application Entity title
 *
 * SYNOPSIS
 *	#include "usv/dcm_ae.h"
 *
 *	if (usv_dcm_ae_check(title, why, sizeof why) < 0)
 *		... why says what is wrong ...
 *
 * DESCRIPTION
 *	The AE value representation (DICOM PS3.5, 6.2): at most 16 characters
 *	of the default character repertoire (G0 of ISO-IR 6: 0x20..0x7E) with
 *	neither backslash (the value separator) nor control characters, and
 *	not only spaces. Leading and trailing spaces are padding, not part
 *	of the title: callers that compare titles compare them trimmed. The
 *	configuration, the destinations, the command line and the storage SCP
 *	all use this one rule.
 *
 * CONTRACTS
 *	usv_dcm_ae_check(ae, why, whylen)
 *		0 when ae is a valid AE title (1..16 characters counted with
 *		their padding, allowed characters, not blank); else -EINVAL
 *		and a one-line reason in why (may be NULL). ae NULL is
 *		-EINVAL. Pure: no DCMTK state, any thread.
 */
#ifndef USV_DCM_AE_H
#define USV_DCM_AE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_DCM_AE_MAX 16 /* characters, without the NUL */

int usv_dcm_ae_check(const char *ae, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif
#endif
