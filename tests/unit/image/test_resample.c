/*
 * Area resampling, crop and grey conversion against direct computations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <errno.h>
#include <cmocka.h>

#include "usv/image.h"

static usv_image *random_image(int w, int h, int c, unsigned seed)
{
	usv_image *img;
	assert_int_equal(usv_image_new(w, h, c, &img), 0);
	srand(seed);
	for (size_t i = 0; i < (size_t)w * h * c; i++)
		img->px[i] = (uint8_t)(rand() & 255);
	return img;
}

/* An integer factor reduces each block to its rounded mean. */
static void test_integer_factor_is_block_mean(void **state)
{
	usv_image *src = random_image(60, 45, 3, 1), *dst;
	assert_int_equal(usv_image_resize_area(src, 20, 15, &dst), 0);
	for (int y = 0; y < 15; y++)
		for (int x = 0; x < 20; x++)
			for (int k = 0; k < 3; k++) {
				int sum = 0;
				for (int j = 0; j < 3; j++)
					for (int i = 0; i < 3; i++)
						sum +=
						    src->px[((y * 3 + j) * 60 + x * 3 + i) * 3 + k];
				int want = (int)floor(sum / 9.0 + 0.5);
				int got = dst->px[(y * 20 + x) * 3 + k];
				assert_true(abs(got - want) <= 1);
			}
	usv_image_free(src);
	usv_image_free(dst);
}

/* Same size is the identity. */
static void test_identity(void **state)
{
	usv_image *src = random_image(37, 23, 1, 2), *dst;
	assert_int_equal(usv_image_resize_area(src, 37, 23, &dst), 0);
	for (size_t i = 0; i < 37 * 23; i++)
		assert_int_equal(dst->px[i], src->px[i]);
	usv_image_free(src);
	usv_image_free(dst);
}

/* Non-integer factors: a constant image stays constant and the mean is kept
 * (area resampling preserves the integral up to rounding). */
static void test_fractional_keeps_mean(void **state)
{
	usv_image *src = random_image(716, 537, 1, 3), *dst;
	assert_int_equal(usv_image_resize_area(src, 256, 256, &dst), 0);
	double ms = 0, md = 0;
	for (size_t i = 0; i < 716 * 537; i++)
		ms += src->px[i];
	for (size_t i = 0; i < 256 * 256; i++)
		md += dst->px[i];
	ms /= 716 * 537, md /= 256 * 256;
	assert_true(fabs(ms - md) < 0.6);
	usv_image_free(dst);
	for (size_t i = 0; i < 716 * 537; i++)
		src->px[i] = 77;
	assert_int_equal(usv_image_resize_area(src, 256, 100, &dst), 0);
	for (size_t i = 0; i < 256 * 100; i++)
		assert_int_equal(dst->px[i], 77);
	usv_image_free(src);
	usv_image_free(dst);
}

/* Overlap of the source cell [s, s + 1) with [a, b). */
static double overlap(int s, double a, double b)
{
	double lo = s > a ? s : a, hi = s + 1 < b ? s + 1 : b;
	return hi > lo ? hi - lo : 0;
}

/* Non-integer factors down and up, 3 and 1 channels: each output is the
 * area-weighted mean of the source cells under it, computed directly in
 * double precision (within +-1 for float sums and rounding). */
static void test_fractional_is_area_mean(void **state)
{
	static const int cases[][5] = {
	    {1024, 768, 224, 224, 3}, {97, 61, 40, 23, 1}, {30, 20, 71, 45, 3}, {50, 9, 7, 13, 1}};
	for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
		const int sw = cases[t][0], sh = cases[t][1], dw = cases[t][2], dh = cases[t][3];
		const int c = cases[t][4];
		usv_image *src = random_image(sw, sh, c, 10 + (unsigned)t), *dst;
		assert_int_equal(usv_image_resize_area(src, dw, dh, &dst), 0);
		assert_int_equal(dst->w, dw);
		assert_int_equal(dst->h, dh);
		for (int y = 0; y < dh; y++)
			for (int x = 0; x < dw; x++)
				for (int k = 0; k < c; k++) {
					double ay = (double)y * sh / dh,
					       by = (double)(y + 1) * sh / dh;
					double ax = (double)x * sw / dw,
					       bx = (double)(x + 1) * sw / dw;
					double sum = 0, wsum = 0;
					for (int j = (int)floor(ay); j < sh && j < by; j++)
						for (int i = (int)floor(ax); i < sw && i < bx;
						     i++) {
							double w =
							    overlap(j, ay, by) * overlap(i, ax, bx);
							sum +=
							    w *
							    src->px[((size_t)j * sw + i) * c + k];
							wsum += w;
						}
					int want = (int)floor(sum / wsum + 0.5);
					int got = dst->px[((size_t)y * dw + x) * c + k];
					assert_true(abs(got - want) <= 1);
				}
		usv_image_free(src);
		usv_image_free(dst);
	}
}

static void test_crop_and_grey(void **state)
{
	usv_image *src = random_image(10, 8, 3, 4), *c, *g;
	assert_int_equal(usv_image_crop(src, 2, 3, 5, 4, &c), 0);
	assert_int_equal(c->px[0], src->px[(3 * 10 + 2) * 3]);
	assert_int_equal(c->px[(3 * 5 + 4) * 3 + 2], src->px[(6 * 10 + 6) * 3 + 2]);
	assert_int_equal(usv_image_crop(src, 6, 0, 5, 4, &g), -EINVAL);
	assert_null(g);
	assert_int_equal(usv_image_to_grey(src, 3, &g), 0);
	for (int i = 0; i < 80; i++) {
		const uint8_t *p = src->px + 3 * i;
		double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
		assert_true(fabs(g->px[3 * i] - y) <= 0.51);
		assert_int_equal(g->px[3 * i], g->px[3 * i + 2]);
	}
	usv_image_free(src);
	usv_image_free(c);
	usv_image_free(g);
	usv_image_free(NULL);
}

static void test_caps(void **state)
{
	usv_image *img = (usv_image *)1;
	assert_int_equal(usv_image_new(0, 5, 1, &img), -EINVAL);
	assert_null(img);
	assert_int_equal(usv_image_new(USV_IMAGE_MAX_DIM + 1, 5, 1, &img), -EINVAL);
	assert_int_equal(usv_image_new(5, 5, 2, &img), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_integer_factor_is_block_mean),
	    cmocka_unit_test(test_identity),
	    cmocka_unit_test(test_fractional_keeps_mean),
	    cmocka_unit_test(test_fractional_is_area_mean),
	    cmocka_unit_test(test_crop_and_grey),
	    cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
