/*
 * NAME
 *	dcm_image.h - open a DICOM image file and decode its frames to 8 bits
 *
 * SYNOPSIS
 *	#include "usv/dcm_image.h"
 *
 * DESCRIPTION
 *	usv_dcm_open() reads the meta header and the data set up to the pixel
 *	data (pixel values stay on disk) and fills an usv_dcm_info.
 *	usv_dcm_decode_frame() decodes one frame at a time (partial access:
 *	memory stays around one frame even for large multi-frame objects).
 *
 *	Supported: native (implicit/explicit little endian, explicit big
 *	endian, deflated), RLE, JPEG baseline/extended/lossless, JPEG-LS
 *	(through DCMTK) and JPEG 2000 (through OpenJPEG); photometric
 *	MONOCHROME1/2, RGB (planar 0 and 1), YBR_FULL, YBR_FULL_422,
 *	YBR_RCT/YBR_ICT (J2K), PALETTE COLOR (8 and 16 bit LUTs).
 *	Anything else (e.g. JPEG XL, MPEG, HEVC) fails with
 *	-USV_ERR_UNSUPPORTED and names the transfer syntax.
 *
 *	Output: grey frames (MONOCHROME*) give c = 1, all others c = 3 RGB.
 *	MONOCHROME1 is inverted exactly (255 - v). Value mapping to 8 bits
 *	("windowing"): none beyond the stored range. For 8-bit data the stored
 *	values are the output (identity, as pydicom's pixel_array); for more
 *	bits the stored range is scaled, floor(v * 256 / 2^BitsStored), e.g.
 *	v >> 4 for 12 bits. A VOI window in the file is NOT applied:
 *	ultrasound is 8-bit in practice, and a training set decoded with
 *	pydicom does not apply it either; a per-image min-max stretch would
 *	change the pixels the network was trained on. Palette colour uses the
 *	LUT (segmented LUTs included); 16-bit LUT entries are scaled to 8 bits
 *	(value >> 8, as pydicom's apply_color_lut >> 8). YBR_FULL and
 *	YBR_FULL_422 (native, RLE, JPEG-LS) are converted to RGB with the
 *	PS3.3 C.7.6.3.1.2 equations computed as pydicom 2.3 does (float32,
 *	round half up, clip), so lossless data decode to the same bytes; JPEG
 *	baseline/extended data are converted by the JPEG decoder (IJG), which
 *	agrees with pydicom within 1. JPEG 2000 YBR_RCT/YBR_ICT: the
 *	codestream's inverse transform (OpenJPEG) gives RGB.
 *	Multi-fragment frames without a basic offset table (some JPEG
 *	multi-frame files) fall back to decompressing the whole pixel data
 *	once, if it is at most 512 MB, else -USV_ERR_LIMIT.
 *
 * LABEL TEXT
 *	usv_dcm_info also carries the free-text attributes that may name the
 *	view: view_code_meaning (Code Meaning of the first item of View Code
 *	Sequence), image_comments, protocol_name, series_description,
 *	acquisition_protocol_description, study_description and
 *	requested_procedure_description. Each is "" when absent or empty;
 *	multiple values stay '\\'-joined as stored. Bytes are kept as stored
 *	(no character set conversion: charset says how to read them), except
 *	that control characters (0x00..0x1F, 0x7F; also CR, LF, TAB and the
 *	ESC of ISO 2022 code extensions) become spaces; leading and
 *	trailing spaces are dropped. Values longer than their field are cut
 *	at the field's size - 1 bytes (caps, NUL included: 257 for the LO
 *	attributes and the Code Meaning, 1024 for Image Comments, 256 for
 *	Acquisition Protocol Description); with charset ISO_IR 192 (UTF-8)
 *	the cut never splits a character. Only the bytes that fit are read
 *	from a long value, so an oversized text does not cost memory, and
 *	usv_dcm_open still stops short of the pixel data.
 *
 * CONTRACTS
 *	usv_dcm_open(path, &h, errbuf, errlen)
 *		Opens path. 0 and *h (caller frees with usv_dcm_free), or
 *		-ENOENT/-EIO, -USV_ERR_FORMAT (not DICOM, truncated, missing
 *		Rows/Columns/...), -USV_ERR_LIMIT (rows or cols above
 *		USV_DCM_MAX_DIM, frames above USV_DCM_MAX_FRAMES, samples not
 *		1 or 3, bits allocated not 8 or 16). The file must not be moved
 *		or deleted while the handle lives (DCMTK re-opens it by name).
 *	usv_dcm_get_info(h)
 *		Borrowed pointer, valid until usv_dcm_free(h).
 *	usv_dcm_decode_frame(h, frame, &img, errbuf, errlen)
 *		frame is 0-based, < info->frames. On success *img is a new
 *		image (caller frees with usv_image_free) of info->cols x
 *		info->rows, c = 1 or 3. -USV_ERR_UNSUPPORTED for syntaxes and
 *		photometric interpretations we cannot decode, -USV_ERR_FORMAT
 *		for corrupt pixel data, -EINVAL for a bad frame number.
 *		Not thread-safe per handle; distinct handles may be used from
 *		distinct threads.
 *	usv_dcm_can_decode(h, why, whylen)
 *		1 when the transfer syntax / photometric look decodable, else 0
 *		with a reason text (used for early exclusion).
 *	usv_dcm_free(h)
 *		NULL-safe.
 */
#ifndef USV_DCM_IMAGE_H
#define USV_DCM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "usv/crop.h"
#include "usv/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define USV_DCM_MAX_DIM 8192      /* cap on rows and on columns */
#define USV_DCM_MAX_FRAMES 4096   /* cap on NumberOfFrames */
#define USV_DCM_MAX_REGIONS 16    /* regions beyond this are ignored */
#define USV_DCM_UID_LEN 65        /* 64 + NUL */
#define USV_DCM_STR_LEN 129       /* LO/CS values, truncated to 128 */
#define USV_DCM_DESC_LEN 257      /* LO free text: 64 characters of up to 4 bytes + NUL */
#define USV_DCM_COMMENTS_LEN 1024 /* Image Comments, bytes incl. NUL */
#define USV_DCM_ACQ_DESC_LEN 256  /* Acquisition Protocol Description, bytes incl. NUL */

typedef struct usv_dcm_info {
	char sop_class_uid[USV_DCM_UID_LEN];
	char sop_instance_uid[USV_DCM_UID_LEN];
	char study_uid[USV_DCM_UID_LEN];
	char series_uid[USV_DCM_UID_LEN];
	char transfer_syntax[USV_DCM_UID_LEN];
	char modality[USV_DCM_STR_LEN];
	char manufacturer[USV_DCM_STR_LEN];
	char model[USV_DCM_STR_LEN];
	char photometric[USV_DCM_STR_LEN];
	char charset[USV_DCM_STR_LEN]; /* SpecificCharacterSet, all values, '\\'-joined */
	int rows, cols;
	int frames; /* 1 when NumberOfFrames is absent */
	int samples_per_pixel;
	int bits_allocated, bits_stored;
	int planar_configuration;
	int pixel_representation;
	int has_pixel_data;
	size_t nregions;
	usv_us_region regions[USV_DCM_MAX_REGIONS];
	/* Free text the label reader uses (see LABEL TEXT above) */
	char view_code_meaning[USV_DCM_DESC_LEN];  /* (0054,0220)[0] (0008,0104) */
	char image_comments[USV_DCM_COMMENTS_LEN]; /* (0020,4000) LT */
	char protocol_name[USV_DCM_DESC_LEN];      /* (0018,1030) LO */
	char series_description[USV_DCM_DESC_LEN]; /* (0008,103E) LO */
	char acquisition_protocol_description[USV_DCM_ACQ_DESC_LEN]; /* (0018,9424) LT */
	char study_description[USV_DCM_DESC_LEN];                    /* (0008,1030) LO */
	char requested_procedure_description[USV_DCM_DESC_LEN];      /* (0032,1060) LO */
	/* QA grouping (never shown raw: the accession number is hashed) */
	char station_name[USV_DCM_DESC_LEN]; /* (0008,1010) SH */
	char study_date[USV_DCM_STR_LEN];    /* (0008,0020) DA, "YYYYMMDD" or "" */
	char accession_number[USV_DCM_STR_LEN]; /* (0008,0050) SH */
} usv_dcm_info;

typedef struct usv_dcm usv_dcm;

int usv_dcm_open(const char *path, usv_dcm **out, char *errbuf, size_t errlen);
const usv_dcm_info *usv_dcm_get_info(const usv_dcm *h);
int usv_dcm_can_decode(const usv_dcm *h, char *why, size_t whylen);
int usv_dcm_decode_frame(usv_dcm *h, int frame, usv_image **out, char *errbuf, size_t errlen);
void usv_dcm_free(usv_dcm *h);

#ifdef __cplusplus
}
#endif
#endif
