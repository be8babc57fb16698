/*
 * NAME
 *	dcm_meta.h - the SOP UIDs of a Part-10 file from its meta header alone
 *
 * SYNOPSIS
 *	#include "usv/dcm_meta.h"
 *
 *	char cls[65], inst[65];
 *	if (usv_dcm_read_meta_uids(path, cls, sizeof cls, inst, sizeof inst,
 *	                           err, sizeof err) == 0)
 *		... index the file under inst ...
 *
 * DESCRIPTION
 *	For files the full reader refuses (truncated, undecodable, corrupt
 *	data set) the daemon still wants to name the instance in its results
 *	index. This reads only the file meta information (group 0002 after
 *	the 128-byte preamble and "DICM") with DCMTK's DcmMetaInfo from at
 *	most the first USV_DCM_META_MAX bytes of the file; the data set is
 *	never parsed.
 *
 * CONTRACTS
 *	usv_dcm_read_meta_uids(path, sop_class, class_len, sop_instance,
 *	                       inst_len, errbuf, errlen)
 *		Reads (0002,0002) Media Storage SOP Class UID into sop_class
 *		(may be "" when absent) and (0002,0003) Media Storage SOP
 *		Instance UID into sop_instance, each trimmed of padding; a
 *		value longer than 64 characters, or than the buffer, counts as
 *		absent. Both buffers must hold at least 1 byte. 0 when the
 *		instance UID was found; -USV_ERR_FORMAT (no preamble, no meta
 *		header, no instance UID), -errno (open/read), -ENOMEM, -EINVAL
 *		(arguments); errbuf (may be NULL) names the file. The output
 *		buffers are written only on success. Thread-safe.
 */
#ifndef USV_DCM_META_H
#define USV_DCM_META_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_DCM_META_MAX 65536 /* bytes of the file looked at, preamble included */

int usv_dcm_read_meta_uids(const char *path, char *sop_class, size_t class_len, char *sop_instance,
                           size_t inst_len, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
