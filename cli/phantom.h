/*
 * NAME
 *	phantom.h - synthetic B-mode images of the paper's 11 abdominal views
 *
 * DESCRIPTION
 *	usv_phantom_render() draws one curved-array B-mode frame of a view
 *	into a vendor's matrix: black background, a sector (apex above the
 *	top edge, 52 degrees) inside the vendor's centre crop box, organs as
 *	ellipses, rings and tubes of different echogenicity (liver, spleen,
 *	pancreas, kidney cortex / sinus / capsule / pyramids, anechoic
 *	gallbladder with posterior enhancement, vessels, diaphragm, spine),
 *	fully developed speckle (the magnitude of a smoothed complex Gaussian
 *	field, i.e. Rayleigh-distributed), depth attenuation, and the screen
 *	around it as scanners burn it in: a top banner (vendor, "SYNTHETIC
 *	PHANTOM", the caller's patient line) in the top max(48, 12 %) rows,
 *	settings on the right ("C5-1", "28Hz", "16cm"), a depth scale, and,
 *	as the caller asks, the technologist's typed view text at the lower
 *	left beside or below the image, and measurements: 1-3 caliper marks
 *	('+' or 'x', 1-pixel arms of 3-4 pixels, value 255) inside the
 *	sector, sometimes a dotted line (2 x 2 dots every 6-8 pixels) between
 *	two of them, and a result line ("Dist 1.43 cm") outside the crop box.
 *	All text is outside the crop box and grey 200-255, in one of three
 *	styles: the 5 x 7 font at scale 2 or 3, the 7 x 9 font at scale 2.
 *	Layout, size, rotation, gain, text position and style vary with the
 *	seed. Deterministic for a given (vendor, view, seed, overlay); the
 *	crop box depends on (vendor, view, seed, overlay->measure) only.
 *
 *	usv_phantom_view_text() writes the text a technologist types for a
 *	view ("LT KIDNEY LONG", "Kidney Lt Sag", "L KIDNEY TRV", "GB"): a
 *	seeded choice among the synonyms LT/LEFT/L, RT/RIGHT/R, LONG/
 *	LONGITUDINAL/SAG/SAGITTAL, TRANS/TRANSVERSE/TRV/TRX/AX/AXIAL, LIVER/
 *	LIV, KIDNEY/KID/RENAL, SPLEEN/SPL, PANCREAS/PANC, GALLBLADDER/GALL
 *	BLADDER/GB, of the word order (single-letter sides only before the
 *	organ) and of the case (upper, sometimes title case).
 *	usv_phantom_unmappable_text() writes a text that names no view of the
 *	table ("RUQ", "AORTA", "LYMPH NODE", "IVC", "BLADDER", "LT UPPER
 *	QUAD").

 * OWNERSHIP
 *	*px (cols * rows bytes) belongs to the caller (free()).
 */
#ifndef USV_CLI_PHANTOM_H
#define USV_CLI_PHANTOM_H

#include <stddef.h>
#include <stdint.h>

/* Scenes drawn: view v (0..10) is entry v of dicom's view table
 * (usv_view_at(), usv/dcm_result.h), in its order. */
#define USV_PHANTOM_N_VIEWS 11

/* The label of view v (its table key, e.g. "liver_left_long"); NULL
 * outside 0..USV_PHANTOM_N_VIEWS - 1. */
const char *usv_phantom_view_label(int view);

typedef struct usv_phantom_vendor {
	const char *key;          /* "philips", "toshiba" */
	const char *manufacturer; /* DICOM Manufacturer */
	const char *model;        /* Manufacturer's Model Name */
	int cols, rows;
	int crop_x, crop_y, crop_side; /* the paper's centre crop */
	double cm_per_px;
} usv_phantom_vendor;

const usv_phantom_vendor *usv_phantom_vendor_find(const char *key);

/* What is burned in besides the scene and the vendor's chrome. */
typedef struct usv_phantom_overlay {
	const char *banner;     /* in: patient line(s), '\n' apart, in the banner; NULL: none */
	const char *annotation; /* in: the typed view text; NULL or "": none */
	int measure;            /* in: 1 = calipers in the sector and a result line */
	char measurement[48];   /* out: the result line drawn; "" when measure is 0 */
	int ncalipers;          /* out: caliper marks drawn (0 when measure is 0) */
	int text_x0, text_y0, text_x1, text_y1; /* out: inclusive box of the annotation's
	                                         * dots; all -1 when none was drawn */
} usv_phantom_overlay;

/* ov may be NULL (no banner line, annotation or measurement). The
 * result line's length is the distance of the first two calipers in cm
 * (cm_per_px). *px: a new image (caller frees). 0, -EINVAL or -ENOMEM. */
int usv_phantom_render(const usv_phantom_vendor *v, int view, uint64_t seed,
                       usv_phantom_overlay *ov, uint8_t **px);

#define USV_PHANTOM_TEXT_MAX 64

/* buf of len >= USV_PHANTOM_TEXT_MAX bytes. long_form = 1: whole words in
 * title case ("Left Kidney Longitudinal"), as in a coded view's meaning.
 * 0 or -EINVAL (bad view, buf or len). */
int usv_phantom_view_text(int view, uint64_t seed, int long_form, char *buf, size_t len);
int usv_phantom_unmappable_text(uint64_t seed, char *buf, size_t len);

/* Bitmap text, scale x scale pixels per dot, clipped to the w x h image;
 * lower case is drawn with the upper-case shapes. Advance per
 * character: USV_PHANTOM_ADV5X7 or USV_PHANTOM_ADV7X9 dots times scale;
 * glyph heights 7 and 9 dots. */
#define USV_PHANTOM_ADV5X7 6
#define USV_PHANTOM_ADV7X9 9
void usv_phantom_text(uint8_t *px, int w, int h, int x, int y, int scale, uint8_t value,
                      const char *s);
/* One glyph of nrows rows of ncols dots (bit ncols - 1 = leftmost),
 * dots joined along diagonals so that slanted strokes stay strokes. */
void usv_phantom_glyph(uint8_t *px, int w, int h, int x, int y, int scale, uint8_t value,
                       const uint8_t *rows, int ncols, int nrows);
void usv_phantom_text7x9(uint8_t *px, int w, int h, int x, int y, int scale, uint8_t value,
                         const char *s);

#endif
