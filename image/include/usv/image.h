/*
 * NAME
 *	image.h - 8-bit images: file I/O (PNG, JPEG, BMP), resampling, grey
 *
 * DESCRIPTION
 *	C11, no DICOM. An usv_image owns its pixel buffer: w*h*c bytes,
 *	interleaved, rows top down, c = 1 (grey) or 3 (RGB).
 *
 * OWNERSHIP
 *	usv_image_* functions that return an image through **out transfer it
 *	to the caller; release with usv_image_free() (NULL-safe).
 *
 * DIAGNOSTICS
 *	0 or a negative errno-style code; errbuf names the file and reason.
 *	Input dimensions are capped at USV_IMAGE_MAX_DIM per side.
 */
#ifndef USV_IMAGE_H
#define USV_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_IMAGE_MAX_DIM 16384

typedef struct usv_image {
	int w, h, c;
	uint8_t *px;
} usv_image;

int usv_image_new(int w, int h, int c, usv_image **out);
void usv_image_free(usv_image *img);

/* Reads PNG, JPEG (libjpeg-turbo) or BMP (by content, not extension) as
 * RGB (c = 3), converting grey and palette inputs. */
int usv_image_load(const char *path, usv_image **out, char *errbuf, size_t errlen);
/* Writes an 8-bit PNG (c = 1 or 3). */
int usv_image_write_png(const usv_image *img, const char *path, char *errbuf, size_t errlen);

/* Area (box-filter) resampling to dw x dh: each destination pixel is the
 * mean of the source area it covers, with fractional edge weights. Same c. */
int usv_image_resize_area(const usv_image *src, int dw, int dh, usv_image **out);
/* Crop the rectangle (x, y, w, h); it must lie inside the image. */
int usv_image_crop(const usv_image *src, int x, int y, int w, int h, usv_image **out);
/* Grey (ITU-R BT.601 luma, rounded) replicated to c = 3, or c = 1 if
 * channels == 1. */
int usv_image_to_grey(const usv_image *src, int channels, usv_image **out);

#ifdef __cplusplus
}
#endif
#endif
