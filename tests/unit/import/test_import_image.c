/*
 * NAME
 *	test_import_image.c - PNG / JPEG / BMP file input and PNG output
 *
 * DESCRIPTION
 *	PNG: written by usv_image_write_png(), read back bit-exact. BMP:
 *	files built here byte by byte (24-bit bottom-up and top-down with row
 *	padding, 32-bit plain and with bit masks, 8-bit and 4-bit palettes),
 *	decoded pixels compared with the pixels put in. JPEG: encoded here with
 *	libjpeg at quality 95 from a smooth image; the decoded size must match
 *	and the pixels stay within a small mean error. Damaged and foreign
 *	files must give an error naming the file; so must a JPEG whose data
 *	ends before its image (libjpeg would fill the rest with grey).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jpeglib.h>

#include "usv/err.h"
#include "usv/image.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/usv-img-test-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void spit(const char *p, const void *b, size_t n)
{
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
}

static uint8_t pix(int x, int y, int c)
{
	return (uint8_t)(x * 7 + y * 13 + c * 91);
}

static void test_png_roundtrip(void **state)
{
	char p[128];
	snprintf(p, sizeof p, "%s/a.png", dir);
	usv_image *a, *b;
	char err[256];
	assert_int_equal(usv_image_new(37, 21, 3, &a), 0);
	for (int y = 0; y < 21; y++)
		for (int x = 0; x < 37; x++)
			for (int c = 0; c < 3; c++)
				a->px[(y * 37 + x) * 3 + c] = pix(x, y, c);
	assert_int_equal(usv_image_write_png(a, p, err, sizeof err), 0);
	assert_int_equal(usv_image_load(p, &b, err, sizeof err), 0);
	assert_int_equal(b->w, 37);
	assert_int_equal(b->h, 21);
	assert_int_equal(b->c, 3);
	assert_memory_equal(a->px, b->px, 37 * 21 * 3);
	usv_image_free(b);
	/* grey comes back replicated to RGB */
	usv_image *g;
	assert_int_equal(usv_image_new(5, 4, 1, &g), 0);
	for (int i = 0; i < 20; i++)
		g->px[i] = (uint8_t)(i * 12);
	assert_int_equal(usv_image_write_png(g, p, err, sizeof err), 0);
	assert_int_equal(usv_image_load(p, &b, err, sizeof err), 0);
	for (int i = 0; i < 20; i++)
		for (int c = 0; c < 3; c++)
			assert_int_equal(b->px[i * 3 + c], i * 12);
	usv_image_free(b);
	usv_image_free(g);
	/* truncated PNG */
	assert_int_equal(usv_image_write_png(a, p, err, sizeof err), 0);
	FILE *f = fopen(p, "rb");
	uint8_t buf[8192];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	spit(p, buf, n / 2);
	b = NULL;
	assert_true(usv_image_load(p, &b, err, sizeof err) < 0);
	assert_null(b);
	assert_non_null(strstr(err, "a.png"));
	usv_image_free(a);
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Builds a BMP of w x h from pix(); bpp 24/32/8/4; masks for 32-bit
 * BI_BITFIELDS when bitfields != 0. Palette images use index = (x + y) %
 * ncol with palette colour i = pix(i, 0, c). */
static size_t make_bmp(uint8_t *b, int w, int h, int bpp, int topdown, int bitfields)
{
	int ncol = bpp <= 8 ? 1 << bpp : 0;
	size_t stride = (size_t)((w * bpp + 31) / 32) * 4;
	size_t hdr = 14 + 40 + (bitfields ? 12 : 0) + (size_t)ncol * 4;
	size_t n = hdr + stride * (size_t)h;
	memset(b, 0, n);
	b[0] = 'B', b[1] = 'M';
	put32(b + 2, (uint32_t)n);
	put32(b + 10, (uint32_t)hdr);
	put32(b + 14, 40);
	put32(b + 18, (uint32_t)w);
	put32(b + 22, (uint32_t)(topdown ? -h : h));
	put16(b + 26, 1);
	put16(b + 28, (unsigned)bpp);
	put32(b + 30, bitfields ? 3 : 0);
	put32(b + 46, (uint32_t)ncol);
	if (bitfields) { /* R in the low byte, G next, B third */
		put32(b + 54, 0x000000ff);
		put32(b + 58, 0x0000ff00);
		put32(b + 62, 0x00ff0000);
	}
	for (int i = 0; i < ncol; i++) {
		uint8_t *e = b + 54 + i * 4;
		e[0] = pix(i, 0, 2), e[1] = pix(i, 0, 1), e[2] = pix(i, 0, 0);
	}
	for (int y = 0; y < h; y++) {
		uint8_t *row = b + hdr + stride * (size_t)(topdown ? y : h - 1 - y);
		for (int x = 0; x < w; x++) {
			if (bpp == 24) {
				row[3 * x] = pix(x, y, 2), row[3 * x + 1] = pix(x, y, 1),
				        row[3 * x + 2] = pix(x, y, 0);
			} else if (bpp == 32 && !bitfields) {
				row[4 * x] = pix(x, y, 2), row[4 * x + 1] = pix(x, y, 1),
				        row[4 * x + 2] = pix(x, y, 0), row[4 * x + 3] = 0xee;
			} else if (bpp == 32) {
				row[4 * x] = pix(x, y, 0), row[4 * x + 1] = pix(x, y, 1),
				        row[4 * x + 2] = pix(x, y, 2), row[4 * x + 3] = 0xee;
			} else {
				int idx = (x + y) % ncol;
				int ppb = 8 / bpp;
				row[x / ppb] |= (uint8_t)(idx << ((ppb - 1 - x % ppb) * bpp));
			}
		}
	}
	return n;
}

static void check_bmp(const char *p, int w, int h, int bpp)
{
	usv_image *img;
	char err[256];
	int rc = usv_image_load(p, &img, err, sizeof err);
	if (rc)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, 0);
	assert_int_equal(img->w, w);
	assert_int_equal(img->h, h);
	assert_int_equal(img->c, 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < 3; c++) {
				int want =
				    bpp <= 8 ? pix((x + y) % (1 << bpp), 0, c) : pix(x, y, c);
				assert_int_equal(img->px[((size_t)y * w + x) * 3 + c], want);
			}
	usv_image_free(img);
}

static void test_bmp(void **state)
{
	static uint8_t b[1 << 16];
	char p[128];
	snprintf(p, sizeof p, "%s/a.bmp", dir);
	static const struct {
		int w, h, bpp, td, bf;
	} cases[] = {{7, 5, 24, 0, 0}, {7, 5, 24, 1, 0}, {6, 3, 32, 0, 0}, {6, 3, 32, 1, 1},
	             {9, 4, 8, 0, 0},  {9, 4, 8, 1, 0},  {11, 3, 4, 0, 0}, {1, 1, 24, 0, 0}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n =
		    make_bmp(b, cases[i].w, cases[i].h, cases[i].bpp, cases[i].td, cases[i].bf);
		spit(p, b, n);
		check_bmp(p, cases[i].w, cases[i].h, cases[i].bpp);
		/* every truncation fails cleanly */
		for (size_t cut = 0; cut < n; cut++) {
			spit(p, b, cut);
			usv_image *img = NULL;
			char err[256];
			assert_true(usv_image_load(p, &img, err, sizeof err) < 0);
			assert_null(img);
			assert_non_null(strstr(err, "a.bmp"));
		}
	}
	/* huge dimensions, RLE compression, 16 bpp, bad palette index */
	size_t n = make_bmp(b, 7, 5, 24, 0, 0);
	put32(b + 18, 100000);
	spit(p, b, n);
	usv_image *img = NULL;
	char err[256];
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), -USV_ERR_LIMIT);
	n = make_bmp(b, 7, 5, 24, 0, 0);
	put32(b + 30, 1);
	spit(p, b, n);
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), -USV_ERR_UNSUPPORTED);
	n = make_bmp(b, 4, 4, 8, 0, 0);
	put32(b + 46, 2); /* only 2 colours, indices go up to 7 */
	spit(p, b, n);
	assert_true(usv_image_load(p, &img, err, sizeof err) < 0);
	assert_null(img);
	/* not an image at all */
	spit(p, "hello world", 11);
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), -USV_ERR_UNSUPPORTED);
	assert_non_null(strstr(err, "a.bmp"));
	assert_true(usv_image_load("/nonexistent.png", &img, err, sizeof err) < 0);
	assert_non_null(strstr(err, "/nonexistent.png"));
}

static void test_jpeg(void **state)
{
	const int w = 45, h = 31;
	uint8_t *src = malloc((size_t)w * h * 3);
	assert_non_null(src);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			src[(y * w + x) * 3 + 0] = (uint8_t)(x * 5);
			src[(y * w + x) * 3 + 1] = (uint8_t)(y * 7);
			src[(y * w + x) * 3 + 2] = (uint8_t)(128 + x - y);
		}
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr em;
	ci.err = jpeg_std_error(&em);
	jpeg_create_compress(&ci);
	unsigned char *mem = NULL;
	unsigned long mlen = 0;
	jpeg_mem_dest(&ci, &mem, &mlen);
	ci.image_width = w;
	ci.image_height = h;
	ci.input_components = 3;
	ci.in_color_space = JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 95, TRUE);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW row = src + (size_t)ci.next_scanline * w * 3;
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);

	char p[128], err[256];
	snprintf(p, sizeof p, "%s/a.jpg", dir);
	spit(p, mem, mlen);
	usv_image *img;
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), 0);
	assert_int_equal(img->w, w);
	assert_int_equal(img->h, h);
	double sum = 0;
	for (int i = 0; i < w * h * 3; i++)
		sum += abs((int)img->px[i] - (int)src[i]);
	assert_true(sum / (w * h * 3) < 3.0);
	usv_image_free(img);
	/* garbage after the SOI marker */
	uint8_t g[64] = {0xff, 0xd8, 0xff, 0x00};
	for (int i = 4; i < 64; i++)
		g[i] = (uint8_t)(i * 37);
	spit(p, g, sizeof g);
	img = NULL;
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), -USV_ERR_FORMAT);
	assert_null(img);
	assert_non_null(strstr(err, "a.jpg"));
	/* cut inside the header */
	spit(p, mem, 100);
	assert_true(usv_image_load(p, &img, err, sizeof err) < 0);
	/* cut inside the scan, with and without the EOI marker after it */
	spit(p, mem, mlen * 2 / 3);
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), -USV_ERR_FORMAT);
	assert_null(img);
	assert_non_null(strstr(err, "a.jpg"));
	assert_non_null(strstr(err, "Premature end"));
	memcpy(mem + mlen * 2 / 3, "\xff\xd9", 2);
	spit(p, mem, mlen * 2 / 3 + 2);
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), -USV_ERR_FORMAT);
	assert_non_null(strstr(err, "premature end of data segment"));
	/* found by fuzz_image: 140 bytes whose frame claims 10758x16128 and
	 * whose scan stops at once; libjpeg filled the rest (8 s, 1.1 GB) */
	static const uint8_t bomb[] = {
	    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x41, 0x01, 0x00,
	    0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x08, 0x06, 0x6c,
	    0x07, 0x06, 0x05, 0x08, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x20,
	    0x00, 0x00, 0xe4, 0x0b, 0x0c, 0x19, 0x12, 0x13, 0x0f, 0x14, 0x1d, 0x1a, 0x67, 0x1f,
	    0x1e, 0x7a, 0xd4, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1a, 0x1c, 0x00,
	    0x00, 0x00, 0x00, 0x27, 0x20, 0x01, 0x08, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00, 0x22,
	    0x01, 0x2b, 0x00, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x00, 0x00, 0x00,
	    0x00, 0x1f, 0x27, 0x39, 0x39, 0x38, 0x34, 0x32, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x3f,
	    0x00, 0x2a, 0x06, 0x01, 0x01, 0x11, 0x00, 0x03, 0x04, 0x05, 0x06, 0xff, 0xda, 0x00,
	    0x08, 0x01, 0x01, 0x00, 0x00, 0x06, 0x06, 0x06, 0x09, 0x26, 0xbf, 0xff, 0xd9, 0x4b};
	spit(p, bomb, sizeof bomb);
	assert_int_equal(usv_image_load(p, &img, err, sizeof err), -USV_ERR_FORMAT);
	assert_null(img);
	free(mem);
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_png_roundtrip),
	    cmocka_unit_test(test_bmp),
	    cmocka_unit_test(test_jpeg),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
