/*
 * NAME
 *	dcm_j2k.h - JPEG 2000 frame decoding through OpenJPEG (private)
 *
 * DESCRIPTION
 *	usv_j2k_decode(buf, len, rows, cols, spp, &img, errbuf, errlen)
 *	decodes one JPEG 2000 codestream (or JP2 file) held in memory to an
 *	8-bit image of c = 1 (spp 1) or 3 (spp 3). The codestream's own
 *	multiple component transform (RCT/ICT) is undone by OpenJPEG, so
 *	YBR_RCT/YBR_ICT data come out as RGB. Samples of more than 8 bits are
 *	shifted right by prec - 8 (as DicomImage maps native data), fewer
 *	bits scaled to 0..255; signed samples are offset by 2^(prec-1) first. The decoded size must
 *equal rows x cols and every component must be full resolution, else -USV_ERR_FORMAT /
 *	-USV_ERR_UNSUPPORTED. Thread-safe (no shared state).
 */
#ifndef USV_DCM_J2K_H
#define USV_DCM_J2K_H

#include <stddef.h>
#include <stdint.h>

#include "usv/image.h"

#ifdef __cplusplus
extern "C" {
#endif

int usv_j2k_decode(const uint8_t *buf, size_t len, int rows, int cols, int spp, usv_image **out,
                   char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
