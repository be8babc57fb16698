/*
 * NAME
 *	preprocess.c - usv_preprocess(): crop, mirror, channel order, mean
 *	and scale, from an RGB8 image to the network input
 *
 * DESCRIPTION
 *	As Caffe's data transformer: the mean image (if any) is read at the
 *	source pixel of the crop window, also when mirroring. A one-channel
 *	network gets the average of R, G and B.
 */
#include "usv/nn.h"

#include <errno.h>

int usv_preprocess(const usv_model_meta *meta, const uint8_t *rgb, int off_x, int off_y, int flip,
                   float *dst)
{
	if (!meta || !rgb || !dst)
		return -EINVAL;
	const int C = meta->input_c, H = meta->input_h, W = meta->input_w;
	const int RH = meta->resize_h, RW = meta->resize_w;
	if ((C != 3 && C != 1) || H < 1 || W < 1 || RH < H || RW < W)
		return -EINVAL;
	if (off_x < 0)
		off_x = (RW - W) / 2;
	if (off_y < 0)
		off_y = (RH - H) / 2;
	if (off_x + W > RW || off_y + H > RH)
		return -EINVAL;
	const float scale = meta->scale;
	const size_t plane = (size_t)H * W, mplane = (size_t)RH * RW;
	for (int y = 0; y < H; y++) {
		int sy = off_y + y;
		for (int x = 0; x < W; x++) {
			int sx = off_x + (flip ? W - 1 - x : x);
			const uint8_t *px = rgb + ((size_t)sy * RW + sx) * 3;
			size_t di = (size_t)y * W + x, mi = (size_t)sy * RW + sx;
			if (C == 1) {
				float v = (px[0] + px[1] + px[2]) / 3.0f;
				float m =
				    meta->mean_image ? meta->mean_image[mi] : meta->mean_rgb[0];
				dst[di] = (v - m) * scale;
				continue;
			}
			for (int c = 0; c < 3; c++) {
				int sc = meta->channel_order == USV_BGR ? 2 - c : c;
				float m = meta->mean_image ? meta->mean_image[c * mplane + mi]
				                           : meta->mean_rgb[c];
				dst[c * plane + di] = ((float)px[sc] - m) * scale;
			}
		}
	}
	return 0;
}

void usv_preprocess_view(const usv_model_meta *m, int v, int *off_x, int *off_y, int *flip)
{
	int dx = m->resize_w - m->input_w, dy = m->resize_h - m->input_h;

	*flip = v & 1;
	switch (v / 2) {
	case 1:
		*off_x = 0, *off_y = 0;
		break;
	case 2:
		*off_x = dx, *off_y = 0;
		break;
	case 3:
		*off_x = 0, *off_y = dy;
		break;
	case 4:
		*off_x = dx, *off_y = dy;
		break;
	default:
		*off_x = -1, *off_y = -1;
	}
}

int usv_views_valid(int n)
{
	return n == 1 || n == 2 || n == 10;
}
