/*
 * NAME
 *	test_annot.c - annotation areas and caliper marks
 *
 * DESCRIPTION
 *	Areas: the strips around the ultrasound box under the banner,
 *	computed by hand for a generic frame and for the EPIQ crop; rule
 *	boxes clipped to the frame and the banner; argument checks. On the
 *	real files of $USV_SHARED_DIR/data/dicom/us that carry a name or an
 *	institution in the top banner, the first text line (found from the
 *	decoded pixels: the first run of rows with bright pixels) lies
 *	entirely above every area.
 *	Calipers: synthetic speckle without marks gives no cross and no
 *	dotted line; '+' and 'x' of 7 x 7 and 9 x 9 one-pixel lines and a
 *	dotted line of 2 x 2 dots every 7 pixels (as the phantom draws them)
 *	are counted on the same speckle; real files with calipers (Philips
 *	EPIQ, CX50, Acuson) give marks, files without give none.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "usv/annot.h"
#include "usv/dcm_image.h"
#include "usv/dicom.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *shared(void)
{
	const char *s = getenv("USV_SHARED_DIR");
	return s ? s : "../shared";
}

static void assert_box(const usv_box *b, int x, int y, int w, int h)
{
	assert_int_equal(b->x, x);
	assert_int_equal(b->y, y);
	assert_int_equal(b->w, w);
	assert_int_equal(b->h, h);
}

static void test_strips_generic(void **state)
{
	(void)state;
	size_t nr;
	const usv_annot_rule *rules = usv_annot_default_rules(&nr);
	assert_true(nr > 0);
	usv_crop_attrs a = {"ACME", "X1", 600, 800, NULL, 0};
	usv_box us = {100, 100, 500, 400}, areas[USV_ANNOT_MAX_AREAS];
	size_t n = 99;
	assert_int_equal(usv_annot_areas(rules, nr, &a, &us, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	/* banner: 12 % of 600 = 72 rows */
	assert_int_equal(n, 3);
	assert_box(&areas[0], 0, 72, 100, 528);
	assert_box(&areas[1], 600, 72, 200, 528);
	assert_box(&areas[2], 100, 500, 500, 100);
	/* small frame: the banner is at least USV_ANNOT_BANNER_MIN_PX */
	usv_crop_attrs s = {NULL, NULL, 240, 320, NULL, 0};
	usv_box us2 = {40, 0, 240, 240};
	assert_int_equal(usv_annot_areas(NULL, 0, &s, &us2, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	assert_int_equal(n, 2);
	assert_box(&areas[0], 0, 48, 40, 192);
	assert_box(&areas[1], 280, 48, 40, 192);
	/* a box reaching the frame's edges leaves nothing; a strip
	 * narrower than USV_ANNOT_MIN_SIDE is dropped */
	usv_box full = {0, 0, 320, 240}, narrow = {5, 0, 300, 200};
	assert_int_equal(usv_annot_areas(NULL, 0, &s, &full, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(usv_annot_areas(NULL, 0, &s, &narrow, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	assert_int_equal(n, 2);
	assert_box(&areas[0], 305, 48, 15, 192);
	assert_box(&areas[1], 5, 200, 300, 40);
}

static void test_strips_epiq(void **state)
{
	(void)state;
	size_t nr, ncr;
	const usv_annot_rule *rules = usv_annot_default_rules(&nr);
	const usv_crop_rule *cr = usv_crop_default_rules(&ncr);
	usv_crop_attrs a = {"Philips Medical Systems", "EPIQ 7C", 768, 1024, NULL, 0};
	usv_box us, areas[USV_ANNOT_MAX_AREAS];
	enum usv_crop_source src;
	assert_int_equal(usv_crop_choose(cr, ncr, &a, &us, &src, NULL), 0);
	assert_box(&us, 212, 84, 600, 600);
	size_t n;
	assert_int_equal(usv_annot_areas(rules, nr, &a, &us, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	/* banner max(48, 92) */
	assert_int_equal(n, 3);
	assert_box(&areas[0], 0, 92, 212, 676);
	assert_box(&areas[1], 812, 92, 212, 676);
	assert_box(&areas[2], 212, 684, 600, 84);
	/* Toshiba Aplio XG 716 x 537: box 372 x 372 at 172, 82 */
	usv_crop_attrs t = {"TOSHIBA_MEC", "TUS-A500", 537, 716, NULL, 0};
	assert_int_equal(usv_crop_choose(cr, ncr, &t, &us, &src, NULL), 0);
	assert_box(&us, 172, 82, 372, 372);
	assert_int_equal(usv_annot_areas(rules, nr, &t, &us, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	assert_int_equal(n, 3);
	assert_box(&areas[0], 0, 64, 172, 473);
	assert_box(&areas[1], 544, 64, 172, 473);
	assert_box(&areas[2], 172, 454, 372, 83);
	/* only one area wanted */
	assert_int_equal(usv_annot_areas(rules, nr, &t, &us, areas, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_box(&areas[0], 0, 64, 172, 473);
}

static void test_rule_boxes(void **state)
{
	(void)state;
	usv_annot_rule r[2] = {
	    {.manufacturer = "acme",
	     .model = "",
	     .rows = 0,
	     .cols = 0,
	     .banner_px = 50,
	     .nboxes = 3,
	     .boxes = {{-10, 20, 100, 100}, {700, 500, 200, 200}, {0, 0, 10, 40}}},
	    {.manufacturer = "other", .banner_px = 300},
	};
	usv_crop_attrs a = {"ACME Corp", NULL, 600, 800, NULL, 0};
	usv_box us = {100, 100, 500, 400}, areas[USV_ANNOT_MAX_AREAS];
	size_t n;
	assert_int_equal(usv_annot_areas(r, 2, &a, &us, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	/* clipped to the frame and below the banner; the third is empty */
	assert_int_equal(n, 2);
	assert_box(&areas[0], 0, 50, 90, 70);
	assert_box(&areas[1], 700, 500, 100, 100);
	/* a rule without boxes raises the banner */
	usv_crop_attrs b = {"Other Inc", NULL, 600, 800, NULL, 0};
	assert_int_equal(usv_annot_areas(r, 2, &b, &us, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	assert_int_equal(n, 3);
	assert_box(&areas[0], 0, 300, 100, 300);
	assert_box(&areas[1], 600, 300, 200, 300);
	assert_box(&areas[2], 100, 500, 500, 100);
	/* LOGIQ 700: its boxes stay below row 106 */
	size_t nr;
	const usv_annot_rule *rules = usv_annot_default_rules(&nr);
	usv_crop_attrs g = {"G.E. Medical Systems", "LOGIQ 700", 480, 640, NULL, 0};
	usv_box c = {80, 0, 480, 480};
	assert_int_equal(usv_annot_areas(rules, nr, &g, &c, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_true(areas[i].y >= 106);
	/* the same vendor at another size: strips */
	usv_crop_attrs g2 = {"G.E. Medical Systems", "LOGIQ 700", 60, 80, NULL, 0};
	usv_box c2 = {10, 0, 60, 60};
	assert_int_equal(usv_annot_areas(rules, nr, &g2, &c2, areas, USV_ANNOT_MAX_AREAS, &n), 0);
	assert_int_equal(n, 2); /* 10 x 12 strips under the 48-row banner */
	assert_box(&areas[0], 0, 48, 10, 12);
	assert_box(&areas[1], 70, 48, 10, 12);
}

static void test_areas_args(void **state)
{
	(void)state;
	usv_crop_attrs a = {NULL, NULL, 600, 800, NULL, 0};
	usv_box us = {100, 100, 500, 400}, areas[4];
	size_t n;
	assert_int_equal(usv_annot_areas(NULL, 1, &a, &us, areas, 4, &n), -EINVAL);
	assert_int_equal(usv_annot_areas(NULL, 0, NULL, &us, areas, 4, &n), -EINVAL);
	assert_int_equal(usv_annot_areas(NULL, 0, &a, NULL, areas, 4, &n), -EINVAL);
	assert_int_equal(usv_annot_areas(NULL, 0, &a, &us, NULL, 4, &n), -EINVAL);
	assert_int_equal(usv_annot_areas(NULL, 0, &a, &us, areas, 4, NULL), -EINVAL);
	usv_box out = {400, 100, 500, 400};
	assert_int_equal(usv_annot_areas(NULL, 0, &a, &out, areas, 4, &n), -EINVAL);
	usv_box neg = {-1, 0, 10, 10};
	assert_int_equal(usv_annot_areas(NULL, 0, &a, &neg, areas, 4, &n), -EINVAL);
	usv_crop_attrs big = {NULL, NULL, USV_CROP_MAX_DIM + 1, 800, NULL, 0};
	assert_int_equal(usv_annot_areas(NULL, 0, &big, &us, areas, 4, &n), -EINVAL);
	assert_int_equal(usv_annot_areas(NULL, 0, &a, &us, NULL, 0, &n), 0);
	assert_int_equal(n, 0);
}

/* Opens name, decodes frame 0 and chooses the crop. */
static usv_image *load(const char *name, usv_crop_attrs *a, usv_box *us, usv_dcm **hp)
{
	char path[PATH_MAX], err[512];
	snprintf(path, sizeof path, "%s/data/dicom/us/%s", shared(), name);
	usv_dcm *h = NULL;
	if (usv_dcm_open(path, &h, err, sizeof err) != 0) {
		print_error("%s\n", err);
		return NULL;
	}
	const usv_dcm_info *in = usv_dcm_get_info(h);
	usv_image *img = NULL;
	if (usv_dcm_decode_frame(h, 0, &img, err, sizeof err) != 0) {
		print_error("%s\n", err);
		usv_dcm_free(h);
		return NULL;
	}
	*a = (usv_crop_attrs){in->manufacturer, in->model,   in->rows,
	                      in->cols,         in->regions, in->nregions};
	size_t ncr;
	const usv_crop_rule *cr = usv_crop_default_rules(&ncr);
	enum usv_crop_source src;
	if (usv_crop_choose(cr, ncr, a, us, &src, NULL) != 0) {
		usv_image_free(img);
		usv_dcm_free(h);
		return NULL;
	}
	*hp = h; /* attrs point into the handle's info */
	return img;
}

static int vmax(const usv_image *img, int x, int y)
{
	const uint8_t *p = img->px + ((size_t)y * img->w + x) * img->c;
	int m = p[0];
	for (int c = 1; c < img->c; c++)
		m = p[c] > m ? p[c] : m;
	return m;
}

static void test_banner_real(void **state)
{
	(void)state;
	/* files with a patient name or an institution in the first line */
	static const char *files[] = {
	    "pylibjpeg-data__JPEGExtended_3s_1f_u_08_08.dcm", /* name */
	    "dcm4che__YBR_FULL-RLE.dcm",                      /* name */
	    "pydicom-data__gdcm-US-ALOKA-16.dcm",             /* institution */
	    "pydicom-data__OBXXXX1A.dcm",
	    "cwil__no-pixel-spacing.dcm",
	    "pydicom-data__US1_UNCI.dcm", /* institution */
	    "cwil__US-YBR_FULL_422-EVRLE.dcm",
	    "dcm4che__US-PAL-8-10x-echo",
	    "dicomParser__IM00001.implicit_little_endian.dcm",
	    "pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm",
	};
	size_t nr;
	const usv_annot_rule *rules = usv_annot_default_rules(&nr);
	int checked = 0;
	for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
		usv_crop_attrs a;
		usv_box us;
		usv_dcm *h = NULL;
		usv_image *img = load(files[f], &a, &us, &h);
		assert_non_null(img);
		/* first text line: first row (in the top 30) with >= 3
		 * bright pixels, down to the next row with fewer */
		int r0 = -1, r1 = -1;
		for (int y = 0; y < img->h && y < 60; y++) {
			int cnt = 0;
			for (int x = 0; x < img->w; x++)
				cnt += vmax(img, x, y) >= 150;
			if (r0 < 0 && cnt >= 3 && y < 30)
				r0 = y;
			else if (r0 >= 0 && cnt < 3) {
				r1 = y - 1;
				break;
			}
		}
		usv_box areas[USV_ANNOT_MAX_AREAS];
		size_t n;
		assert_int_equal(
		    usv_annot_areas(rules, nr, &a, &us, areas, USV_ANNOT_MAX_AREAS, &n), 0);
		if (r0 >= 0 && r1 >= r0) {
			checked++;
			for (size_t i = 0; i < n; i++) {
				if (areas[i].y <= r1)
					print_error(
					    "%s: area %zu starts at row %d, first line %d..%d\n",
					    files[f], i, areas[i].y, r0, r1);
				assert_true(areas[i].y > r1);
			}
		}
		usv_image_free(img);
		usv_dcm_free(h);
	}
	assert_int_equal(checked, (int)(sizeof files / sizeof files[0]));
}

/* ---- calipers ---------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(rng_state >> 33);
}

/* Speckle: a random field smoothed along rows (lateral blur), squared
 * (Rayleigh-like tail) and scaled by a depth gain that brightens a band in
 * the middle; values saturate at 255 there. */
static usv_image *speckle(int w, int h, int c, uint64_t seed, double gain)
{
	usv_image *img;
	if (usv_image_new(w, h, c, &img) != 0)
		return NULL;
	rng_state = seed;
	double *f = malloc(sizeof *f * (size_t)w * h);
	for (size_t i = 0; i < (size_t)w * h; i++)
		f[i] = (double)(rnd() % 1000) / 1000.0;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			double s = 0;
			int k = 0;
			for (int d = -2; d <= 2; d++)
				for (int e = -1; e <= 1; e++) {
					int xx = x + d, yy = y + e;
					if (xx < 0 || yy < 0 || xx >= w || yy >= h)
						continue;
					s += f[(size_t)yy * w + xx];
					k++;
				}
			double m = s / k;
			double band = (y > h / 3 && y < h / 2) ? 2.2 : 1.0;
			double v = m * m * 4.0 * 90.0 * band * gain;
			if (rnd() % 50 == 0)
				v *= 1.8; /* bright scatterers */
			int iv = v > 255 ? 255 : (int)v;
			for (int ch = 0; ch < c; ch++)
				img->px[((size_t)y * w + x) * c + ch] = (uint8_t)iv;
		}
	free(f);
	return img;
}

static void put(usv_image *img, int x, int y, int v)
{
	if (x < 0 || y < 0 || x >= img->w || y >= img->h)
		return;
	for (int ch = 0; ch < img->c; ch++)
		img->px[((size_t)y * img->w + x) * img->c + ch] = (uint8_t)v;
}

static void plus(usv_image *img, int cx, int cy, int arm)
{
	for (int k = -arm; k <= arm; k++) {
		put(img, cx + k, cy, 255);
		put(img, cx, cy + k, 255);
	}
}

static void ex(usv_image *img, int cx, int cy, int arm)
{
	for (int k = -arm; k <= arm; k++) {
		put(img, cx + k, cy + k, 255);
		put(img, cx + k, cy - k, 255);
	}
}

static void dots(usv_image *img, int x0, int y0, int dx, int dy, int n)
{
	for (int i = 0; i < n; i++)
		for (int a = 0; a < 2; a++)
			for (int b = 0; b < 2; b++)
				put(img, x0 + i * dx + a, y0 + i * dy + b, 255);
}

static void test_calipers_speckle(void **state)
{
	(void)state;
	int crosses = 0, dl = 0;
	for (uint64_t seed = 1; seed <= 12; seed++) {
		usv_image *img =
		    speckle(400, 400, seed % 2 ? 1 : 3, seed, 0.8 + 0.1 * (double)seed);
		assert_non_null(img);
		usv_box us = {0, 0, 400, 400};
		usv_caliper_report r;
		assert_int_equal(usv_annot_find_calipers(img, &us, &r), 0);
		crosses += r.crosses;
		dl += r.dotted_lines;
		usv_image_free(img);
	}
	print_message("speckle, 12 frames of 400 x 400: %d crosses, %d dotted lines\n", crosses,
	              dl);
	assert_int_equal(crosses, 0);
	assert_int_equal(dl, 0);
}

static void test_calipers_drawn(void **state)
{
	(void)state;
	for (int c = 1; c <= 3; c += 2) {
		usv_image *img = speckle(400, 400, c, 7, 0.7);
		assert_non_null(img);
		plus(img, 60, 60, 3);  /* 7 x 7 */
		plus(img, 300, 70, 4); /* 9 x 9 */
		ex(img, 80, 300, 3);
		ex(img, 320, 330, 4);
		usv_box us = {0, 0, 400, 400};
		usv_caliper_report r;
		assert_int_equal(usv_annot_find_calipers(img, &us, &r), 0);
		assert_int_equal(r.crosses, 4);
		assert_int_equal(r.dotted_lines, 0);
		/* a dotted line between two more crosses, every 7 px */
		plus(img, 120, 100, 4);
		plus(img, 120 + 7 * 7, 100 + 7 * 4, 4);
		dots(img, 126, 103, 7, 4, 6);
		/* and one on its own, vertical, every 6 px */
		dots(img, 250, 280, 0, 6, 5);
		assert_int_equal(usv_annot_find_calipers(img, &us, &r), 0);
		assert_int_equal(r.crosses, 6);
		assert_int_equal(r.dotted_lines, 2);
		/* a box that leaves the marks out */
		usv_box part = {150, 150, 90, 100};
		assert_int_equal(usv_annot_find_calipers(img, &part, &r), 0);
		assert_int_equal(r.crosses, 0);
		assert_int_equal(r.dotted_lines, 0);
		usv_box bad = {350, 0, 60, 10};
		assert_int_equal(usv_annot_find_calipers(img, &bad, &r), -EINVAL);
		assert_int_equal(usv_annot_find_calipers(NULL, &us, &r), -EINVAL);
		usv_image_free(img);
	}
}

static usv_caliper_report find(const usv_image *img)
{
	usv_box us = {0, 0, img->w, img->h};
	usv_caliper_report r;
	assert_int_equal(usv_annot_find_calipers(img, &us, &r), 0);
	return r;
}

/* Bright speckle touching a mark: a pixel between the arms of an 'x', a
 * blob against the tip and the side of a '+' arm. The marks still count;
 * crosses of uneven brightness (speckle that lines up) do not. */
static void test_calipers_touched(void **state)
{
	(void)state;
	for (int c = 1; c <= 3; c += 2) {
		usv_image *img = speckle(300, 300, c, 11, 0.6);
		assert_non_null(img);
		for (int y = 20; y < 280; y++) /* a dark region for the marks */
			for (int x = 20; x < 280; x++)
				put(img, x, y, 40 + (x * 7 + y * 13) % 60);
		ex(img, 60, 60, 3);
		put(img, 57, 60, 222); /* between the arms, next to the centre */
		plus(img, 150, 60, 3);
		put(img, 154, 60, 200); /* beyond the tip of the right arm */
		put(img, 155, 60, 190);
		put(img, 150, 64, 210); /* and at the tip of the lower arm */
		put(img, 151, 63, 205);
		put(img, 151, 64, 230);
		plus(img, 240, 60, 4);
		put(img, 242, 59, 200); /* against the side of an arm */
		put(img, 242, 58, 200);
		usv_caliper_report r = find(img);
		assert_int_equal(r.crosses, 3);
		assert_int_equal(r.dotted_lines, 0);

		/* the same shapes with arms of uneven brightness: speckle */
		static const int uneven[] = {255, 185, 230, 196, 255, 188, 240, 181, 210};
		for (int k = -4; k <= 4; k++) {
			int v = uneven[k + 4];
			put(img, 60 + k, 200, v);
			put(img, 60, 200 + k, v);
			put(img, 200 + k, 200 + k, v);
			put(img, 200 + k, 200 - k, v);
		}
		r = find(img);
		assert_int_equal(r.crosses, 3);
		usv_image_free(img);
	}
}

/* A hollow '+' (arms 3 px from a dark centre) counts; the same with a
 * bright centre, or with arms that start next to the centre on one side
 * and away from it on the other (saturated speckle), does not. */
static void test_calipers_centre(void **state)
{
	(void)state;
	usv_image *img;
	assert_int_equal(usv_image_new(200, 100, 1, &img), 0);
	for (int y = 0; y < 100; y++)
		for (int x = 0; x < 200; x++)
			put(img, x, y, 40 + (x * 7 + y * 13) % 60);
	for (int k = 3; k <= 7; k++) {
		put(img, 50 + k, 50, 250);
		put(img, 50 - k, 50, 250);
		put(img, 50, 50 + k, 250);
		put(img, 50, 50 - k, 250);
	}
	usv_caliper_report r = find(img);
	assert_int_equal(r.crosses, 1);
	put(img, 50, 50, 250); /* a bright dot in the middle */
	r = find(img);
	assert_int_equal(r.crosses, 0);
	/* solid on three sides, the right arm 3 px away */
	for (int k = 1; k <= 3; k++) {
		put(img, 150 - k, 50, 255);
		put(img, 150, 50 + k, 255);
		put(img, 150, 50 - k, 255);
		put(img, 152 + k, 50, 255);
	}
	put(img, 150, 50, 255);
	r = find(img);
	assert_int_equal(r.crosses, 0);
	put(img, 151, 50, 255); /* closed: a solid '+' */
	put(img, 152, 50, 255);
	r = find(img);
	assert_int_equal(r.crosses, 1);
	usv_image_free(img);
}

/* Dotted lines: five dots or more on their own, four when they end at a
 * cross; evenly spaced, collinear, near white, of one brightness, with
 * dark gaps. */
static void test_dotted_strict(void **state)
{
	(void)state;
	usv_image *img = speckle(400, 400, 1, 5, 0.6);
	assert_non_null(img);
	for (int y = 0; y < 400; y++)
		for (int x = 0; x < 400; x++)
			put(img, x, y, 30 + (x * 5 + y * 11) % 70);
	usv_image *clean = NULL;
	assert_int_equal(usv_image_new(400, 400, 1, &clean), 0);
	memcpy(clean->px, img->px, (size_t)400 * 400);
	usv_caliper_report r;

	dots(img, 40, 40, 7, 0, 4); /* four, alone */
	r = find(img);
	assert_int_equal(r.dotted_lines, 0);
	dots(img, 40 + 4 * 7, 40, 7, 0, 1); /* the fifth */
	r = find(img);
	assert_int_equal(r.dotted_lines, 1);

	/* four ending at a cross */
	memcpy(img->px, clean->px, (size_t)400 * 400);
	plus(img, 100, 100, 3);
	dots(img, 108, 100, 7, 0, 4);
	r = find(img);
	assert_int_equal(r.crosses, 1);
	assert_int_equal(r.dotted_lines, 1);

	/* uneven steps 7, 7, 9, 7, 7 */
	memcpy(img->px, clean->px, (size_t)400 * 400);
	static const int at[] = {0, 7, 14, 23, 30, 37};
	for (int i = 0; i < 6; i++)
		dots(img, 200, 40 + at[i], 0, 0, 1);
	r = find(img);
	assert_int_equal(r.dotted_lines, 0);

	/* dots of 235 (a dot, but not near white) */
	memcpy(img->px, clean->px, (size_t)400 * 400);
	for (int i = 0; i < 6; i++)
		for (int a = 0; a < 4; a++)
			put(img, 40 + 8 * i + a % 2, 300 + a / 2, 235);
	r = find(img);
	assert_int_equal(r.dotted_lines, 0);

	/* white dots joined by a grey line: no gap is dark */
	memcpy(img->px, clean->px, (size_t)400 * 400);
	dots(img, 40, 200, 8, 0, 6);
	r = find(img);
	assert_int_equal(r.dotted_lines, 1);
	for (int i = 0; i < 5; i++)
		for (int a = 0; a < 9; a++)
			put(img, 40 + 8 * i + 4 + a % 3, 200 + a / 3 - 1, 200);
	r = find(img);
	assert_int_equal(r.dotted_lines, 0);

	/* a bent line: the middle dot 2 px off */
	memcpy(img->px, clean->px, (size_t)400 * 400);
	for (int i = 0; i < 7; i++)
		dots(img, 300 + (i == 3 ? 2 : 0), 100 + 7 * i, 0, 0, 1);
	r = find(img);
	assert_int_equal(r.dotted_lines, 0);
	usv_image_free(img);
	usv_image_free(clean);
}

static void test_calipers_real(void **state)
{
	(void)state;
	static const struct {
		const char *file;
		int min_crosses, min_dotted, max_crosses;
	} cases[] = {
	    /* EPIQ: two '+' joined by a dotted line (step about 27 px) */
	    {"pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm", 2, 1, 2},
	    /* CX50: a '+' pair with a dotted line, and the '+' before
	     * "Dist Mag" */
	    {"pydicom-data__OBXXXX1A.dcm", 2, 1, 3},
	    {"pydicom-data__OBXXXX1A_rle.dcm", 2, 1, 3},
	    /* Acuson: two hollow green '+' */
	    {"pylibjpeg-data__JPEGExtended_3s_1f_u_08_08.dcm", 2, 0, 2},
	    /* no calipers */
	    {"cwil__no-pixel-spacing.dcm", 0, 0, 0},
	    {"cwil__US-YBR_FULL_422-EVRLE.dcm", 0, 0, 0},
	    {"dcm4che__YBR_FULL-RLE.dcm", 0, 0, 0},
	    {"dcm4che__US-PAL-8-10x-echo", 0, 0, 0},
	    {"pydicom-data__gdcm-US-ALOKA-16.dcm", 0, 0, 0},
	    {"fo-dicom__DIRW0007", 0, 0, 0},
	    {"pylibjpeg-data__JPEGLosslessP14SV1_3s_2f_u_08_08.dcm", 0, 0, 0},
	    {"dicomParser__IM00001.implicit_little_endian.dcm", 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		usv_crop_attrs a;
		usv_box us;
		usv_dcm *h = NULL;
		usv_image *img = load(cases[i].file, &a, &us, &h);
		assert_non_null(img);
		usv_caliper_report r;
		assert_int_equal(usv_annot_find_calipers(img, &us, &r), 0);
		if (r.crosses < cases[i].min_crosses || r.crosses > cases[i].max_crosses ||
		    (cases[i].min_dotted ? r.dotted_lines < cases[i].min_dotted
		                         : r.dotted_lines != 0))
			print_error("%s: %d crosses, %d dotted lines\n", cases[i].file, r.crosses,
			            r.dotted_lines);
		assert_in_range(r.crosses, cases[i].min_crosses, cases[i].max_crosses);
		if (cases[i].min_dotted)
			assert_true(r.dotted_lines >= cases[i].min_dotted);
		else
			assert_int_equal(r.dotted_lines, 0);
		usv_image_free(img);
		usv_dcm_free(h);
	}
}

static int setup(void **state)
{
	(void)state;
	char err[512];
	return usv_dcm_global_init(err, sizeof err);
}

static int teardown(void **state)
{
	(void)state;
	usv_dcm_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strips_generic),   cmocka_unit_test(test_strips_epiq),
	    cmocka_unit_test(test_rule_boxes),       cmocka_unit_test(test_areas_args),
	    cmocka_unit_test(test_banner_real),      cmocka_unit_test(test_calipers_speckle),
	    cmocka_unit_test(test_calipers_drawn),   cmocka_unit_test(test_calipers_real),
	    cmocka_unit_test(test_calipers_touched), cmocka_unit_test(test_calipers_centre),
	    cmocka_unit_test(test_dotted_strict),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
