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
 *	field, i.e. Rayleigh-distributed), depth attenuation, and burned-in
 *	annotations (vendor, "SYNTHETIC", the technologist's view label)
 *	outside the crop box only. Layout, size, rotation and gain vary with
 *	the seed. Deterministic for a given (vendor, view, seed).
 *
 * OWNERSHIP
 *	*px (cols * rows bytes) belongs to the caller (free()).
 */
#ifndef USV_CLI_PHANTOM_H
#define USV_CLI_PHANTOM_H

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

int usv_phantom_render(const usv_phantom_vendor *v, int view, uint64_t seed, uint8_t **px);

/* Draws text with the 5x7 font, scale x scale pixels per dot. */
void usv_phantom_text(uint8_t *px, int w, int h, int x, int y, int scale, uint8_t value,
                      const char *s);

#endif
