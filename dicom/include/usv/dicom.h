/*
 * NAME
 *	dicom.h - process-wide set-up of the DICOM adapter
 *
 * DESCRIPTION
 *	dicom/ is the only C++ in usview. Every header under usv/dcm_*.h is an
 *	extern "C" API of opaque handles; no C++ exception crosses it (each
 *	entry point catches and maps to a negative code with a message).
 *
 *	usv_dcm_global_init() must run in main() before any thread exists and
 *	before any other dicom/ function is used (reading, decoding, the SCP,
 *	the result writers): it checks that the DICOM data dictionary is
 *	loaded, registers the RLE, JPEG and JPEG-LS decoders, routes DCMTK's
 *	own logging away from stdout and makes DCMTK's parser lenient
 *	(dcmIgnoreParsingErrors: real-world files carry small encoding
 *	errors; the decoder and the SCP's checks rely on it). These are
 *	process-wide DCMTK settings; nothing else in dicom/ changes them.
 *	A second call does nothing. usv_dcm_global_cleanup() runs after all
 *	threads are joined.
 */
#ifndef USV_DICOM_H
#define USV_DICOM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

int usv_dcm_global_init(char *errbuf, size_t errlen);
void usv_dcm_global_cleanup(void);

#ifdef __cplusplus
}
#endif
#endif
