/*
 * NAME
 *	dcm_save.h - write a DICOM file with every error checked (internal)
 *
 * SYNOPSIS
 *	#include "dcm_save.h"
 *
 * DESCRIPTION
 *	usv::save_file() writes ff to path as DcmFileFormat::saveFile() does
 *	(same transfer syntax, encoding, group length and meta header modes),
 *	but also checks what saveFile() leaves unchecked: the flush of the
 *	stdio buffer and close(2). The file is created, or truncated and
 *	rewritten in place (an existing file keeps its mode; a new one gets
 *	0666 & ~umask). There is no temporary name, no fsync, no rename: the
 *	writers of dicom/ write; whoever needs the file durable or atomically
 *	visible gives them a private path and commits the file afterwards
 *	(usviewd: a file in the spool's tmp/, then usv_spool_outbox_add(),
 *	which fsyncs, renames and fsyncs the directory). A file written
 *	without error is complete once save_file() returns.
 *
 * DIAGNOSTICS
 *	0, or a negative errno from open/write/flush/close, or -EIO when DCMTK
 *	could not encode or write the data set; *why gets one line of text.
 *	On failure the partial file is unlinked (if it is a regular file).
 */
#ifndef USV_DCM_SAVE_H
#define USV_DCM_SAVE_H

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <string>

namespace usv
{

int save_file(DcmFileFormat &ff, const char *path, E_TransferSyntax xfer, E_EncodingType enc,
              E_GrpLenEncoding glen, E_FileWriteMode mode, std::string &why);

} // namespace usv

#endif
