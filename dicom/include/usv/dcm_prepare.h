/*
 * NAME
 *	dcm_prepare.h - DICOM file to network input: decode, exclude, crop, resize
 *
 * SYNOPSIS
 *	#include "usv/dcm_prepare.h"
 *
 * DESCRIPTION
 *	The one pipeline used by the daemon's workers, `usview preview` and the
 *	training import, so that training and inference see identical pixels:
 *
 *	1. usv_dcm_open(); Modality must be US (or absent with an ultrasound
 *	   SOP class), else excluded "modality XX is not US".
 *	2. decodability check: else -USV_ERR_UNSUPPORTED with the syntax.
 *	3. frame selection (opts->frames): first, middle (frames / 2), every
 *	   Nth from 0, or all; at most opts->max_frames frames.
 *	4. crop box from usv_crop_choose() (opts->rules, or the shipped
 *	   defaults when opts->rules is NULL).
 *	5. per frame: decode, crop, colour check inside the crop (a pixel is
 *	   "saturated colour" when max(R,G,B) - min(R,G,B) >= opts->chroma_min;
 *	   if their share exceeds opts->colour_threshold, the instance is
 *	   excluded "colour overlay: N.N% saturated colour pixels in crop",
 *	   the usual sign of colour Doppler), area resize to out_size x
 *	   out_size, grey frames replicated to 3 channels (RGB8 always);
 *	   with opts->to_grey colour frames become BT.601 grey x 3.
 *
 * CONTRACTS
 *	usv_prepare_opts_init(o)
 *		Defaults: rules NULL (shipped), frames FIRST, every_n 1,
 *		max_frames 64, colour_threshold 0.02, chroma_min 60,
 *		out_size 256, to_grey 0, frame -1, keep_full 0.
 *	usv_dcm_prepare(path, opts, &out, reason, reasonlen)
 *		opts may be NULL (defaults). 0 and *out (caller frees with
 *		usv_prepared_free); -USV_ERR_EXCLUDED with a one-line reason
 *		(policy: not US, colour overlay, no pixel data);
 *		-USV_ERR_UNSUPPORTED (undecodable syntax or photometric);
 *		-USV_ERR_FORMAT / -USV_ERR_LIMIT / -errno as usv_dcm_open().
 *		The reason names the file.
 *		p->crop is the box that was cut out of every frame (source
 *		in crop_source, rule index in crop_rule). With
 *		opts->keep_full each frame also keeps its full decoded
 *		image in frames[k].full (memory: one full frame per
 *		selected frame; keep_full 2: the first selected frame
 *		only, the others' full stays NULL); an instance excluded
 *		for colour (reason
 *		"colour overlay: ...") returns no frames at all.
 *	usv_prepared_free(p)
 *		NULL-safe; frees every img and full.
 */
#ifndef USV_DCM_PREPARE_H
#define USV_DCM_PREPARE_H

#include <stddef.h>

#include "usv/crop.h"
#include "usv/dcm_image.h"
#include "usv/image.h"

#ifdef __cplusplus
extern "C" {
#endif

enum usv_frame_policy {
	USV_FRAMES_FIRST = 0,
	USV_FRAMES_MIDDLE = 1,
	USV_FRAMES_EVERY_NTH = 2,
	USV_FRAMES_ALL = 3,
};

typedef struct usv_prepare_opts {
	const usv_crop_rule *rules; /* NULL: usv_crop_default_rules() */
	size_t nrules;
	enum usv_frame_policy frames;
	int every_n;             /* for USV_FRAMES_EVERY_NTH, >= 1 */
	int max_frames;          /* cap on selected frames, >= 1 */
	double colour_threshold; /* share 0..1; < 0 disables the check */
	int chroma_min;          /* 1..255 */
	int out_size;            /* side of the output square, 16..1024 */
	int to_grey;             /* convert colour frames to grey x 3 */
	int frame;               /* >= 0: select exactly this frame (overrides frames) */
	int keep_full;           /* 1: keep each decoded frame before the crop; 2: the first */
} usv_prepare_opts;

typedef struct usv_prepared_frame {
	int index;           /* 0-based frame number in the file */
	usv_image *img;      /* out_size x out_size, c = 3; owned by the usv_prepared */
	double colour_share; /* share of saturated colour pixels in the crop */
	usv_image *full;     /* with opts->keep_full: the decoded frame before crop,
	                        info.cols x info.rows, c = 1 grey / 3 RGB, exactly
	                        as usv_dcm_decode_frame gave it; owned by the
	                        usv_prepared; NULL without keep_full */
} usv_prepared_frame;

typedef struct usv_prepared {
	usv_dcm_info info;
	usv_box crop;
	enum usv_crop_source crop_source;
	int crop_rule; /* index or -1 */
	size_t nframes;
	usv_prepared_frame *frames;
} usv_prepared;

void usv_prepare_opts_init(usv_prepare_opts *o);
int usv_dcm_prepare(const char *path, const usv_prepare_opts *opts, usv_prepared **out,
                    char *reason, size_t reasonlen);
void usv_prepared_free(usv_prepared *p);

#ifdef __cplusplus
}
#endif
#endif
