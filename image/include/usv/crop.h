/*
 * NAME
 *	crop.h - choice of the crop box that the network sees
 *
 * SYNOPSIS
 *	#include "usv/crop.h"
 *
 * DESCRIPTION
 *	An ultrasound frame carries the sector image plus annotations, scales,
 *	ECG traces and vendor chrome. The classifier sees one square (or
 *	rectangular) box of the frame, resized to 256 x 256. usv_crop_choose()
 *	picks that box in this order:
 *
 *	1. the first matching rule of the table (manufacturer and model are
 *	   case-insensitive substrings, NULL or "" = any; rows/cols 0 = any);
 *	   a rule whose box does not fit inside the frame is skipped;
 *	2. the largest 2-D region (RegionSpatialFormat 1) of the Sequence of
 *	   Ultrasound Regions, clamped to the frame;
 *	3. the largest square centred in the frame (side min(rows, cols)).
 *
 *	The shipped rule table (usv_crop_default_rules) reproduces the paper:
 *	Philips EPIQ 1024 x 768 (cols x rows) -> central 600 x 600, i.e.
 *	x 212, y 84; Toshiba Aplio XG 716 x 537 -> central 372 x 372, i.e.
 *	x 172, y 82. Centred boxes use x = (cols - w) / 2, y = (rows - h) / 2
 *	(integer division).
 *
 * CONTRACTS
 *	usv_crop_choose(rules, nrules, attrs, box, source, rule_index)
 *		rules may be NULL when nrules is 0. attrs->rows and attrs->cols
 *		must be 1..USV_CROP_MAX_DIM. On success *box lies inside the
 *		frame with w, h >= 1; *source says which step chose it;
 *		*rule_index (may be NULL) gets the rule's index or -1.
 *		Returns 0, or -EINVAL for bad arguments.
 *	usv_crop_default_rules(n)
 *		Static table, never freed; *n gets its length.
 *	usv_crop_device_matches(manufacturer, model, rows, cols, attrs)
 *		1 when a rule's device fields match the frame: manufacturer
 *		and model case-insensitive substrings (NULL or "" = any),
 *		rows/cols 0 = any; else 0. The one matching rule of the crop
 *		table and of the annotation areas (usv/annot.h).
 *	usv_crop_source_name(src)
 *		"rule", "region" or "centre"; never NULL.
 */
#ifndef USV_CROP_H
#define USV_CROP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_CROP_MAX_DIM 16384

typedef struct usv_box {
	int x, y, w, h;
} usv_box;

/* One crop rule. centred != 0: the box is box.w x box.h centred in the
 * frame (box.x, box.y ignored); otherwise box is absolute. */
typedef struct usv_crop_rule {
	const char *manufacturer; /* substring, case-insensitive; NULL/"" = any */
	const char *model;        /* substring, case-insensitive; NULL/"" = any */
	int rows, cols;           /* 0 = any */
	int centred;
	usv_box box;
} usv_crop_rule;

/* RegionSpatialFormat values (PS3.3 C.8.5.5.1.1) */
enum {
	USV_REGION_NONE = 0,
	USV_REGION_2D = 1,
	USV_REGION_MMODE = 2,
	USV_REGION_SPECTRAL = 3,
	USV_REGION_WAVEFORM = 4,
	USV_REGION_GRAPHICS = 5,
};

/* One item of the Sequence of Ultrasound Regions (0018,6011). Corners are
 * inclusive pixel coordinates as stored (0018,6018..601E). */
typedef struct usv_us_region {
	int x0, y0, x1, y1;
	int spatial_format; /* (0018,6012) */
	int data_type;      /* (0018,6014) */
	unsigned flags;     /* (0018,6016) Region Flags */
} usv_us_region;

typedef struct usv_crop_attrs {
	const char *manufacturer; /* may be NULL */
	const char *model;        /* may be NULL */
	int rows, cols;
	const usv_us_region *regions;
	size_t nregions;
} usv_crop_attrs;

enum usv_crop_source {
	USV_CROP_RULE = 1,
	USV_CROP_REGION = 2,
	USV_CROP_CENTRE = 3,
};

int usv_crop_choose(const usv_crop_rule *rules, size_t nrules, const usv_crop_attrs *attrs,
                    usv_box *box, enum usv_crop_source *source, int *rule_index);
const usv_crop_rule *usv_crop_default_rules(size_t *n);
int usv_crop_device_matches(const char *manufacturer, const char *model, int rows, int cols,
                            const usv_crop_attrs *attrs);
const char *usv_crop_source_name(enum usv_crop_source src);

#ifdef __cplusplus
}
#endif
#endif
