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

/* cr[j] += w * sr[j]; in blocks of 16 so that -O2 vectorises it too. */
static void add_row(float *restrict cr, const uint8_t *restrict sr, float w, size_t n)
{
	size_t j = 0;
	for (; j + 16 <= n; j += 16)
		for (int t = 0; t < 16; t++)
			cr[j + t] += w * (float)sr[j + t];
	for (; j < n; j++)
		cr[j] += w * (float)sr[j];
}

/* Separable: for each destination row the source rows it covers are summed
 * with their vertical weights into one float row (a plain multiply-add over
 * whole rows, which the compiler vectorises), then each destination pixel
 * sums its source columns of that row with the horizontal weights. */
int usv_image_resize_area(const usv_image *src, int dw, int dh, usv_image **out)
{
	*out = NULL;
	if (dw <= 0 || dh <= 0 || dw > USV_IMAGE_MAX_DIM || dh > USV_IMAGE_MAX_DIM)
		return -EINVAL;
	usv_image *d;
	int rc = usv_image_new(dw, dh, src->c, &d);
	if (rc)
		return rc;
	const int c = src->c;
	const size_t rowlen = (size_t)src->w * c;
	span *sx = malloc(sizeof(span) * dw), *sy = malloc(sizeof(span) * dh);
	float *col = malloc(sizeof(float) * rowlen);
	float *wsum_x = malloc(sizeof(float) * dw);
	/* horizontal weights, flat: destination x uses wx[wo[x] .. wo[x + 1]) */
	float *wx = malloc(sizeof(float) * ((size_t)src->w + 2 * (size_t)dw));
	size_t *wo = malloc(sizeof(size_t) * ((size_t)dw + 1));
	if (!sx || !sy || !col || !wsum_x || !wx || !wo) {
		free(sx), free(sy), free(col), free(wsum_x), free(wx), free(wo);
		usv_image_free(d);
		return -ENOMEM;
	}
	spans(src->w, dw, sx);
	spans(src->h, dh, sy);
	wo[0] = 0;
	for (int x = 0; x < dw; x++) {
		size_t o = wo[x];
		wsum_x[x] = 0;
		for (int sx_i = sx[x].s0; sx_i <= sx[x].s1; sx_i++) {
			wx[o] = span_weight(&sx[x], sx_i);
			wsum_x[x] += wx[o++];
		}
		wo[x + 1] = o;
	}
	for (int y = 0; y < dh; y++) {
		float wsum_y = 0;
		memset(col, 0, sizeof(float) * rowlen);
		for (int sy_i = sy[y].s0; sy_i <= sy[y].s1; sy_i++) {
			const float wy = span_weight(&sy[y], sy_i);
			wsum_y += wy;
			add_row(col, src->px + (size_t)sy_i * rowlen, wy, rowlen);
		}
		uint8_t *dr = d->px + (size_t)y * dw * c;
		for (int x = 0; x < dw; x++) {
			float acc[3] = {0, 0, 0};
			const float *cp = col + (size_t)sx[x].s0 * c;
			for (size_t o = wo[x]; o < wo[x + 1]; o++, cp += c)
				for (int k = 0; k < c; k++)
					acc[k] += wx[o] * cp[k];
			const float norm = 1.0f / (wsum_x[x] * wsum_y);
			for (int k = 0; k < c; k++) {
				float v = acc[k] * norm + 0.5f;
				dr[x * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
		}
	}
	free(sx), free(sy), free(col), free(wsum_x), free(wx), free(wo);
	*out = d;
	return 0;
}
