/*
 * Image buffers, crop, grey conversion and area resampling.
 */
#include "usv/image.h"
#include "usv/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int usv_image_new(int w, int h, int c, usv_image **out)
{
	*out = NULL;
	if (w <= 0 || h <= 0 || w > USV_IMAGE_MAX_DIM || h > USV_IMAGE_MAX_DIM ||
	    (c != 1 && c != 3))
		return -EINVAL;
	usv_image *img = calloc(1, sizeof *img);
	if (!img)
		return -ENOMEM;
	img->px = calloc((size_t)w * h * c, 1);
	if (!img->px) {
		free(img);
		return -ENOMEM;
	}
	img->w = w, img->h = h, img->c = c;
	*out = img;
	return 0;
}

void usv_image_free(usv_image *img)
{
	if (!img)
		return;
	free(img->px);
	free(img);
}

int usv_image_crop(const usv_image *src, int x, int y, int w, int h, usv_image **out)
{
	*out = NULL;
	if (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > src->w || y + h > src->h)
		return -EINVAL;
	usv_image *d;
	int rc = usv_image_new(w, h, src->c, &d);
	if (rc)
		return rc;
	for (int r = 0; r < h; r++)
		memcpy(d->px + (size_t)r * w * src->c,
		       src->px + ((size_t)(y + r) * src->w + x) * src->c, (size_t)w * src->c);
	*out = d;
	return 0;
}

int usv_image_to_grey(const usv_image *src, int channels, usv_image **out)
{
	*out = NULL;
	usv_image *d;
	int rc = usv_image_new(src->w, src->h, channels == 1 ? 1 : 3, &d);
	if (rc)
		return rc;
	size_t n = (size_t)src->w * src->h;
	for (size_t i = 0; i < n; i++) {
		uint8_t g;
		if (src->c == 1) {
			g = src->px[i];
		} else {
			const uint8_t *p = src->px + 3 * i;
			/* BT.601: 0.299 R + 0.587 G + 0.114 B, fixed point 1/1000 */
			g = (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
		}
		if (d->c == 1) {
			d->px[i] = g;
		} else {
			d->px[3 * i] = d->px[3 * i + 1] = d->px[3 * i + 2] = g;
		}
	}
	*out = d;
	return 0;
}

/* Weights of the source cells [s0, s1) covered by destination cell i of n
 * over a source extent of len: the destination cell spans
 * [i*len/n, (i+1)*len/n) in source coordinates. */
typedef struct span {
	int s0, s1;
	float w[2]; /* weight of first and last source cell (inner cells weigh 1) */
} span;

static void spans(int len, int n, span *sp)
{
	double scale = (double)len / n;
	for (int i = 0; i < n; i++) {
		double a = i * scale, b = (i + 1) * scale;
		int s0 = (int)floor(a), s1 = (int)ceil(b) - 1;
		if (s1 >= len)
			s1 = len - 1;
		if (s1 < s0)
			s1 = s0;
		sp[i].s0 = s0;
		sp[i].s1 = s1;
		if (s0 == s1) {
			sp[i].w[0] = sp[i].w[1] = (float)(b - a);
		} else {
			sp[i].w[0] = (float)(s0 + 1 - a);
			sp[i].w[1] = (float)(b - s1);
		}
	}
}

static float span_weight(const span *sp, int s)
{
	if (s == sp->s0)
		return sp->w[0];
	if (s == sp->s1)
		return sp->w[1];
	return 1.0f;
}

int usv_image_resize_area(const usv_image *src, int dw, int dh, usv_image **out)
{
	*out = NULL;
	if (dw <= 0 || dh <= 0 || dw > USV_IMAGE_MAX_DIM || dh > USV_IMAGE_MAX_DIM)
		return -EINVAL;
	usv_image *d;
	int rc = usv_image_new(dw, dh, src->c, &d);
	if (rc)
		return rc;
	span *sx = malloc(sizeof(span) * dw), *sy = malloc(sizeof(span) * dh);
	float *row = malloc(sizeof(float) * (size_t)dw * src->c);
	if (!sx || !sy || !row) {
		free(sx), free(sy), free(row);
		usv_image_free(d);
		return -ENOMEM;
	}
	spans(src->w, dw, sx);
	spans(src->h, dh, sy);
	const int c = src->c;
	for (int y = 0; y < dh; y++) {
		memset(row, 0, sizeof(float) * (size_t)dw * c);
		float wsum_y = 0;
		for (int sy_i = sy[y].s0; sy_i <= sy[y].s1; sy_i++) {
			float wy = span_weight(&sy[y], sy_i);
			wsum_y += wy;
			const uint8_t *sr = src->px + (size_t)sy_i * src->w * c;
			for (int x = 0; x < dw; x++) {
				for (int sx_i = sx[x].s0; sx_i <= sx[x].s1; sx_i++) {
					float w = wy * span_weight(&sx[x], sx_i);
					for (int k = 0; k < c; k++)
						row[x * c + k] += w * sr[sx_i * c + k];
				}
			}
		}
		for (int x = 0; x < dw; x++) {
			float wsum_x = 0;
			for (int sx_i = sx[x].s0; sx_i <= sx[x].s1; sx_i++)
				wsum_x += span_weight(&sx[x], sx_i);
			float norm = 1.0f / (wsum_x * wsum_y);
			for (int k = 0; k < c; k++) {
				float v = row[x * c + k] * norm + 0.5f;
				d->px[((size_t)y * dw + x) * c + k] = (uint8_t)(v < 0     ? 0
				                                                : v > 255 ? 255
				                                                          : v);
			}
		}
	}
	free(sx), free(sy), free(row);
	*out = d;
	return 0;
}
