/*
 * NAME
 *	annot.h - where a frame's burned-in annotations are, and caliper marks
 *
 * SYNOPSIS
 *	#include "usv/annot.h"
 *
 * DESCRIPTION
 *	Scanners burn the technologist's typed view ("LT KIDNEY LONG"),
 *	settings and measurements into the pixels, outside the ultrasound
 *	image; the patient's name and ID sit in a banner along the top.
 *	The annotation areas are the only parts of a frame that OCR reads:
 *
 *	1. the explicit boxes of the first rule that matches the frame
 *	   (manufacturer and model: case-insensitive substrings, NULL or ""
 *	   = any; rows/cols 0 = any), clipped to the frame and to the part
 *	   below the rule's banner;
 *	2. else the frame minus the ultrasound box (the crop that decode
 *	   chose: rule, Sequence of Ultrasound Regions or centred square)
 *	   minus the top banner: up to three strips, left and right of the
 *	   box and below it, each from the banner's lower edge down.
 *	   The default banner is max(USV_ANNOT_BANNER_MIN_PX, 12 % of rows)
 *	   rows, never less than the rule's banner_px when one matched
 *	   without boxes. Strips narrower or lower than USV_ANNOT_MIN_SIDE
 *	   pixels are dropped.
 *
 *	usv_annot_find_calipers() looks inside the ultrasound box for the
 *	marks that measurements leave: small '+' and 'x' crosses and dotted
 *	lines of isolated bright dots.
 *
 *	Default rules: Philips EPIQ 1024 x 768 and Toshiba/Canon 716 x 537
 *	(Aplio XG): the strips under the default banner. Philips iU22
 *	1024 x 768 (no ultrasound regions, so the crop is the centred square):
 *	the EPIQ strips as boxes (x 0..211, x 812..1023, and x 212..811 below
 *	row 684) under the default banner. G.E. LOGIQ 700 640 x 480: banner
 *	106 rows (institution, IDs, clock), the title line box (rows
 *	338..399, the typed label such as "LYMPH NODE"), the line below it
 *	(rows 400..479) and the two narrow side strips of rows 106..337.
 *
 *	Marks are found on v = max(R, G, B). A mark pixel has v >= 180. A
 *	cross: four arms from a centre (solid: every arm starts next to it;
 *	or hollow: a dark centre, no arm starts next to it and each starts
 *	at most 5 px away) along the axes ('+') or the diagonals ('x'), each a
 *	run of 3..10 bright pixels of one colour (within 40 of its first),
 *	at most 3 wide with flanks darker by >= 50 and below 180 on all its
 *	length but one pixel (speckle touching a side or the tip); opposite
 *	arms alike; the inner 3 pixels of every arm, and a solid centre,
 *	within 40 of each other (speckle that lines up is uneven); dark
 *	between the arms but for one pixel; crosses closer than 8 px count
 *	once. A dot: a bright set of at most 4 x 4 px, brightest >= 230, its
 *	one-pixel ring darker by >= 80. A dotted line: dots each within 1 px
 *	of the place the mean step predicts, step 4..16 px, >= 5 dots, or
 *	>= 4 when the run ends within 1.5 steps (plus half an arm) of a
 *	cross; step 17..30 px only when it ends at a cross (depth ticks
 *	along a sector edge are also evenly spaced dots). Its dots are
 *	drawn: brightest >= 240 and within 16 of each other, every gap
 *	within 1 px of the mean step, every dot within 1 px of the line
 *	through the ends, dark half way between neighbours but for one gap;
 *	and at most a quarter as many other dots lie in the corridor one
 *	step wide around it (bright speckle is full of dots).
 *
 * CONTRACTS
 *	usv_annot_areas(rules, nrules, attrs, us, areas, max, &n)
 *		rules may be NULL when nrules is 0. attrs->rows/cols 1..
 *		USV_CROP_MAX_DIM; us inside the frame. Writes up to max boxes,
 *		each inside the frame and entirely below the banner; *n gets
 *		the count (0 is possible). 0 or -EINVAL.
 *	usv_annot_default_rules(&n)
 *		Static table, never freed.
 *	usv_annot_find_calipers(img, us, &report)
 *		img c = 1 or 3 (any channel layout of usv_image); us inside
 *		img. 0 or -EINVAL. No allocation beyond O(us area) scratch,
 *		freed before return (-ENOMEM possible).
 */
#ifndef USV_ANNOT_H
#define USV_ANNOT_H

#include <stddef.h>

#include "usv/crop.h"
#include "usv/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define USV_ANNOT_MAX_BOXES 8
#define USV_ANNOT_MAX_AREAS 8
#define USV_ANNOT_BANNER_MIN_PX 48
#define USV_ANNOT_MIN_SIDE 8

typedef struct usv_annot_rule {
	const char *manufacturer; /* substring, case-insensitive; NULL/"" = any */
	const char *model;        /* substring, case-insensitive; NULL/"" = any */
	int rows, cols;           /* 0 = any */
	int banner_px;            /* rows at the top that are never read; < 0: the default */
	size_t nboxes;            /* 0: the strips around the ultrasound box */
	usv_box boxes[USV_ANNOT_MAX_BOXES];
} usv_annot_rule;

typedef struct usv_caliper_report {
	int crosses;      /* '+' and 'x' marks found */
	int dotted_lines; /* runs of >= 4 evenly spaced isolated dots */
} usv_caliper_report;

int usv_annot_areas(const usv_annot_rule *rules, size_t nrules, const usv_crop_attrs *attrs,
                    const usv_box *us, usv_box *areas, size_t max, size_t *n);
const usv_annot_rule *usv_annot_default_rules(size_t *n);
int usv_annot_find_calipers(const usv_image *img, const usv_box *us, usv_caliper_report *r);

#ifdef __cplusplus
}
#endif
#endif
