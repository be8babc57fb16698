/*
 * NAME
 *	dcm_dicomdir.h - list the instance files a DICOMDIR references
 *
 * SYNOPSIS
 *	#include "usv/dcm_dicomdir.h"
 *
 *	char **files = NULL;
 *	size_t n = 0;
 *	if (usv_dcm_dicomdir_list("/media/cd/DICOMDIR", &files, &n, err, sizeof err) == 0) {
 *		... files[0..n-1] ...
 *		usv_dcm_strv_free(files, n);
 *	}
 *
 * DESCRIPTION
 *	A DICOMDIR (PS3.10 media directory, Media Storage SOP Class
 *	1.2.840.10008.1.3.10) holds one Directory Record Sequence (0004,1220)
 *	whose PATIENT, STUDY and SERIES records group the instance-level
 *	records (IMAGE, SR DOCUMENT, PRESENTATION, ...). Each instance-level
 *	record names its file in Referenced File ID (0004,1500): up to eight
 *	path components, one value each.
 *
 *	usv_dcm_dicomdir_list() returns the file of every instance-level
 *	record (any record that is not PATIENT, STUDY or SERIES and has a
 *	Referenced File ID), in the order of the records in the sequence
 *	(the order in which the DICOMDIR was written), as paths resolved
 *	relative to the DICOMDIR's folder: "<folder>/<c1>/<c2>/...", the
 *	components joined with '/' exactly as stored (no case folding, no
 *	check that the file exists). Records marked inactive (Record In-use
 *	Flag (0004,1410) = 0) are skipped.
 *
 *	Caps: at most USV_DICOMDIR_MAX_RECORDS records; a component of 1..64
 *	bytes, at most 16 components, a resolved path below PATH_MAX.
 *	A component that is "." or "..", or holds '/' or a control
 *	character, makes the DICOMDIR invalid: a file set never leaves its
 *	folder.
 *
 * CONTRACTS
 *	usv_dcm_dicomdir_list(path, &files, &n, err, errlen)
 *		0 with *files (an array of *n strings; caller frees with
 *		usv_dcm_strv_free(*files, *n)); *n may be 0 (a DICOMDIR
 *		without instance records; *files is then NULL).
 *		-ENOENT: path missing or unreadable; -USV_ERR_FORMAT: not
 *		a DICOMDIR (no meta header, another Media Storage SOP
 *		Class, no Directory Record Sequence) or an invalid record,
 *		with the reason; -USV_ERR_LIMIT beyond a cap; -ENOMEM;
 *		-EINVAL for NULL arguments. err names the file and the
 *		record (1-based) at fault. *files and *n are untouched on
 *		failure. Reentrant: no shared state (after
 *		usv_dcm_global_init).
 *	usv_dcm_is_dicomdir(path)
 *		1 when path is a DICOM file whose meta header names Media
 *		Storage SOP Class 1.2.840.10008.1.3.10, else 0 (also for
 *		unreadable files and NULL). Reads the meta header only.
 *	usv_dcm_strv_free(v, n)
 *		Frees v[0..n-1] and v. NULL-safe.
 */
#ifndef USV_DCM_DICOMDIR_H
#define USV_DCM_DICOMDIR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_DICOMDIR_MAX_RECORDS 10000000 /* directory records per DICOMDIR */
#define USV_DICOMDIR_SOP_CLASS "1.2.840.10008.1.3.10"

int usv_dcm_dicomdir_list(const char *path, char ***files, size_t *n, char *err, size_t errlen);
int usv_dcm_is_dicomdir(const char *path);
void usv_dcm_strv_free(char **v, size_t n);

#ifdef __cplusplus
}
#endif
#endif
