/*
 * NAME
 *	annot.c - annotation areas of a frame, caliper marks in the image
 *
 * DESCRIPTION
 *	See usv/annot.h. The caliper finder works on v = max(R, G, B) of
 *	the ultrasound box: a mark pixel is bright (v >= MARK_ON) and
 *	clearly brighter than the pixels that flank it. A cross is found
 *	from its centre (which may be hollow, as Philips draws it): four
 *	thin bright arms along the axes ('+') or the diagonals ('x'), each
 *	of one colour and ending in dark pixels, all four alike in
 *	brightness, with dark pixels between the arms; one pixel of bright
 *	speckle touching an arm or between the arms is forgiven. A dotted
 *	line is a run of >= 5 small isolated near-white dots of one
 *	brightness (>= 4 when it ends at a cross) at an even step on a
 *	straight line, dark between the dots.
 */
#include "usv/annot.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Default rules. Philips EPIQ and Toshiba/Canon Aplio XG use the strips
 * around the paper's crop box under the default banner. Philips iU22 at
 * 1024 x 768 lays the screen out as the EPIQ does, but its frames carry no
 * ultrasound regions and the crop falls back to the centred square, which
 * would cut the bottom label line in two; its rule names the EPIQ strips.
 * G.E. LOGIQ 700 at 640 x 480 (measured on US1_UNCI): institution, IDs and
 * clock fill rows 0..103, the image rows 108..336 and columns 14..622, the
 * typed title (e.g. "LYMPH NODE") rows 362..373, the acoustic output line
 * rows 458..469. */
static const usv_annot_rule default_rules[] = {
    {.manufacturer = "Philips", .model = "EPIQ", .rows = 768, .cols = 1024, .banner_px = -1},
    {.manufacturer = "Philips",
     .model = "iU22",
     .rows = 768,
     .cols = 1024,
     .banner_px = -1,
     .nboxes = 3,
     .boxes = {{0, 0, 212, 768}, {212, 684, 600, 84}, {812, 0, 212, 768}}},
    {.manufacturer = "TOSHIBA", .rows = 537, .cols = 716, .banner_px = -1},
    {.manufacturer = "CANON", .rows = 537, .cols = 716, .banner_px = -1},
    {.manufacturer = "G.E. Medical",
     .model = "LOGIQ 700",
     .rows = 480,
     .cols = 640,
     .banner_px = 106,
     .nboxes = 4,
     .boxes = {{0, 338, 640, 62}, {0, 400, 640, 80}, {0, 106, 14, 232}, {624, 106, 16, 232}}},
};

const usv_annot_rule *usv_annot_default_rules(size_t *n)
{
	if (n)
		*n = sizeof default_rules / sizeof default_rules[0];
	return default_rules;
}

static int rule_matches(const usv_annot_rule *r, const usv_crop_attrs *a)
{
	return usv_crop_device_matches(r->manufacturer, r->model, r->rows, r->cols, a);
}

/* Appends the part of (x0, y0)-(x1, y1) (exclusive) that lies in the frame
 * below the banner, if it is at least min_side on each side. */
static void add_area(usv_box *areas, size_t max, size_t *n, const usv_crop_attrs *a, int banner,
                     long x0, long y0, long x1, long y1, int min_side)
{
	if (x0 < 0)
		x0 = 0;
	if (y0 < banner)
		y0 = banner;
	if (x1 > a->cols)
		x1 = a->cols;
	if (y1 > a->rows)
		y1 = a->rows;
	if (x1 - x0 < min_side || y1 - y0 < min_side || *n >= max)
		return;
	areas[*n] = (usv_box){(int)x0, (int)y0, (int)(x1 - x0), (int)(y1 - y0)};
	(*n)++;
}

int usv_annot_areas(const usv_annot_rule *rules, size_t nrules, const usv_crop_attrs *attrs,
                    const usv_box *us, usv_box *areas, size_t max, size_t *n)
{
	if (!attrs || !us || !n || (nrules && !rules) || (max && !areas))
		return -EINVAL;
	*n = 0;
	if (attrs->rows < 1 || attrs->rows > USV_CROP_MAX_DIM || attrs->cols < 1 ||
	    attrs->cols > USV_CROP_MAX_DIM)
		return -EINVAL;
	if (us->x < 0 || us->y < 0 || us->w < 1 || us->h < 1 || us->w > attrs->cols - us->x ||
	    us->h > attrs->rows - us->y)
		return -EINVAL;
	const usv_annot_rule *r = NULL;
	for (size_t i = 0; i < nrules && !r; i++)
		if (rule_matches(&rules[i], attrs))
			r = &rules[i];
	int banner = attrs->rows * 12 / 100;
	if (banner < USV_ANNOT_BANNER_MIN_PX)
		banner = USV_ANNOT_BANNER_MIN_PX;
	if (r && r->nboxes > 0) {
		if (r->banner_px >= 0)
			banner = r->banner_px;
		size_t nb = r->nboxes < USV_ANNOT_MAX_BOXES ? r->nboxes : USV_ANNOT_MAX_BOXES;
		for (size_t i = 0; i < nb; i++) {
			const usv_box *b = &r->boxes[i];
			add_area(areas, max, n, attrs, banner, b->x, b->y, (long)b->x + b->w,
			         (long)b->y + b->h, 1);
		}
		return 0;
	}
	if (r && r->banner_px > banner)
		banner = r->banner_px;
	long ux1 = (long)us->x + us->w, uy1 = (long)us->y + us->h;
	add_area(areas, max, n, attrs, banner, 0, banner, us->x, attrs->rows, USV_ANNOT_MIN_SIDE);
	add_area(areas, max, n, attrs, banner, ux1, banner, attrs->cols, attrs->rows,
	         USV_ANNOT_MIN_SIDE);
	add_area(areas, max, n, attrs, banner, us->x, uy1 > banner ? uy1 : banner, ux1, attrs->rows,
	         USV_ANNOT_MIN_SIDE);
	return 0;
}

/* ---- calipers ---------------------------------------------------------- */

enum {
	MARK_ON = 180,      /* v at or above: a candidate mark pixel */
	MARK_CONTRAST = 50, /* mark pixel minus flanking pixel, at least */
	ARM_GAP_MAX = 5,    /* a hollow centre: first arm pixel at most this far */
	ARM_MIN = 3,
	ARM_MAX = 10,
	ARM_THICK_MAX = 3,
	MARK_SPREAD = 40, /* the pixels of one mark differ by at most this */
	DOT_MAX_SIDE = 4,
	DOT_STEP_MIN = 4,
	DOT_ON = 230,       /* a dot's brightest pixel, at least */
	DOT_CONTRAST = 80,  /* a dot's brightest pixel minus its ring, at least */
	DOT_WHITE = 240,    /* every dot of a line: brightest pixel at least */
	DOT_SPREAD = 16,    /* brightest pixels of a line's dots: within */
	DOT_RUN_ALONE = 5,  /* dots of a line that ends at no cross */
	DOT_RUN_CROSS = 4,  /* dots of a line that ends at a cross */
	DOT_STEP_MAX = 16,  /* a run at this step or less counts on its own */
	DOT_STEP_WIDE = 30, /* a wider step counts when the run ends at a cross */
	MAX_MARKS = 256,
	MAX_DOTS = 8192,
};

typedef struct plane {
	const uint8_t *v;
	int w, h;
} plane;

static int pv(const plane *p, int x, int y)
{
	if (x < 0 || y < 0 || x >= p->w || y >= p->h)
		return 0;
	return p->v[(size_t)y * p->w + x];
}

static int on(const plane *p, int x, int y)
{
	return pv(p, x, y) >= MARK_ON;
}

/* A pixel of the arm is isolated: at most ARM_THICK_MAX bright pixels
 * across, and the pixels that flank them darker by MARK_CONTRAST. */
static int isolated(const plane *p, int x, int y, int px, int py)
{
	int a = 0, b = 0;
	while (a <= ARM_THICK_MAX && on(p, x + (a + 1) * px, y + (a + 1) * py))
		a++;
	while (b <= ARM_THICK_MAX && on(p, x - (b + 1) * px, y - (b + 1) * py))
		b++;
	if (1 + a + b > ARM_THICK_MAX)
		return 0;
	int v = pv(p, x, y);
	return v - pv(p, x + (a + 1) * px, y + (a + 1) * py) >= MARK_CONTRAST &&
	       v - pv(p, x - (b + 1) * px, y - (b + 1) * py) >= MARK_CONTRAST;
}

/* The run of one colour (within MARK_SPREAD of its first pixel) from step
 * k0 on, ARM_MIN..ARM_MAX long, isolated on all its length but one pixel
 * (bright speckle touching a side or the tip). */
static int arm_from(const plane *p, int cx, int cy, int dx, int dy, int k0, int *len)
{
	int px = -dy, py = dx;
	int ref = pv(p, cx + k0 * dx, cy + k0 * dy);
	int k = k0;
	while (k - k0 <= ARM_MAX && on(p, cx + k * dx, cy + k * dy) &&
	       abs(pv(p, cx + k * dx, cy + k * dy) - ref) <= MARK_SPREAD)
		k++;
	int n = k - k0;
	if (n < ARM_MIN || n > ARM_MAX)
		return 0;
	/* next to a solid centre the arm crosses the other arm's width */
	int checked = 0, bad = 0;
	for (int j = k0 == 1 ? 2 : k0; j < k; j++) {
		checked++;
		bad += !isolated(p, cx + j * dx, cy + j * dy, px, py);
	}
	if (bad > (checked >= 2 ? 1 : 0))
		return 0;
	*len = n;
	return 1;
}

/* One arm from (cx, cy) along (dx, dy): a run of ARM_MIN..ARM_MAX bright
 * pixels starting within ARM_GAP_MAX steps (a hollow centre may hold
 * bright tissue: every run that starts there is tried), at most
 * ARM_THICK_MAX wide across, with darker flanks on both sides. */
static int arm(const plane *p, int cx, int cy, int dx, int dy, int *gap, int *len)
{
	for (int k = 1; k <= ARM_GAP_MAX; k++) {
		if (!on(p, cx + k * dx, cy + k * dy) ||
		    (k > 1 && on(p, cx + (k - 1) * dx, cy + (k - 1) * dy)))
			continue;
		if (arm_from(p, cx, cy, dx, dy, k, len)) {
			*gap = k;
			return 1;
		}
	}
	return 0;
}

static int cross_at(const plane *p, int cx, int cy, int diagonal)
{
	static const int axes[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
	static const int diags[4][2] = {{1, 1}, {-1, -1}, {1, -1}, {-1, 1}};
	const int(*d)[2] = diagonal ? diags : axes;
	int gap[4], len[4];
	for (int i = 0; i < 4; i++)
		if (!arm(p, cx, cy, d[i][0], d[i][1], &gap[i], &len[i]))
			return 0;
	for (int i = 0; i < 4; i += 2)
		if (abs(gap[i] - gap[i + 1]) > 2 || abs(len[i] - len[i + 1]) > 3)
			return 0;
	if (abs(gap[0] - gap[2]) > 2 || abs(len[0] - len[2]) > 3)
		return 0;
	/* solid (every arm starts next to the centre) or hollow (none does,
	 * and the centre is dark) */
	int solid = gap[0] == 1 && gap[1] == 1 && gap[2] == 1 && gap[3] == 1;
	if (!solid && (gap[0] == 1 || gap[1] == 1 || gap[2] == 1 || gap[3] == 1 || on(p, cx, cy)))
		return 0;
	/* one colour: the inner ARM_MIN pixels of the arms, and a solid
	 * centre, within MARK_SPREAD (speckle that lines up is uneven) */
	int lo = 255, hi = 0;
	for (int i = 0; i < 4; i++)
		for (int k = gap[i]; k < gap[i] + ARM_MIN; k++) {
			int v = pv(p, cx + k * d[i][0], cy + k * d[i][1]);
			lo = v < lo ? v : lo;
			hi = v > hi ? v : hi;
		}
	if (solid) {
		int v = pv(p, cx, cy);
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	if (hi - lo > MARK_SPREAD)
		return 0;
	/* between the arms: dark, but for one pixel of speckle */
	const int(*q)[2] = diagonal ? axes : diags;
	int lit = 0;
	for (int i = 0; i < 4; i++)
		for (int s = 2; s <= 3; s++)
			lit += on(p, cx + s * q[i][0], cy + s * q[i][1]);
	return lit <= 1;
}

static int near_any(const int (*pts)[2], int n, int x, int y, int r)
{
	for (int i = 0; i < n; i++)
		if (abs(pts[i][0] - x) <= r && abs(pts[i][1] - y) <= r)
			return 1;
	return 0;
}

/* integral of the mark mask: ii[(y)(w + 1) + x] = marks in [0, x) x [0, y) */
static void integral(const plane *p, uint32_t *ii)
{
	size_t w1 = (size_t)p->w + 1;
	memset(ii, 0, w1 * sizeof *ii);
	for (int y = 0; y < p->h; y++) {
		uint32_t row = 0;
		ii[(size_t)(y + 1) * w1] = 0;
		for (int x = 0; x < p->w; x++) {
			row += p->v[(size_t)y * p->w + x] >= MARK_ON;
			ii[(size_t)(y + 1) * w1 + x + 1] = ii[(size_t)y * w1 + x + 1] + row;
		}
	}
}

static uint32_t marks_in(const plane *p, const uint32_t *ii, int x0, int y0, int x1, int y1)
{
	size_t w1 = (size_t)p->w + 1;
	x0 = x0 < 0 ? 0 : x0;
	y0 = y0 < 0 ? 0 : y0;
	x1 = x1 > p->w ? p->w : x1;
	y1 = y1 > p->h ? p->h : y1;
	return ii[(size_t)y1 * w1 + x1] - ii[(size_t)y0 * w1 + x1] - ii[(size_t)y1 * w1 + x0] +
	       ii[(size_t)y0 * w1 + x0];
}

static int count_crosses(const plane *p, const uint32_t *ii, int (*found)[2])
{
	/* four arms of ARM_MIN pixels within R of the centre */
	const int R = ARM_GAP_MAX + ARM_MIN;
	int n = 0;
	for (int y = 0; y < p->h; y++)
		for (int x = 0; x < p->w; x++) {
			/* cheap rejections: enough mark pixels around, one close
			 * to the right or lower right */
			if (marks_in(p, ii, x - R, y - R, x + R + 1, y + R + 1) < 4 * ARM_MIN)
				continue;
			int any = 0;
			for (int k = 1; k <= ARM_GAP_MAX && !any; k++)
				any = on(p, x + k, y) || on(p, x + k, y + k);
			if (!any)
				continue;
			if (near_any((const int(*)[2])found, n, x, y, 8))
				continue;
			if (cross_at(p, x, y, 0) || cross_at(p, x, y, 1)) {
				if (n < MAX_MARKS) {
					found[n][0] = x;
					found[n][1] = y;
					n++;
				}
			}
		}
	return n;
}

/* Small isolated bright dots: 8-connected bright sets that fit in
 * DOT_MAX_SIDE x DOT_MAX_SIDE, brightest pixel >= DOT_ON, surrounded by a
 * one-pixel ring whose brightest pixel is at least DOT_CONTRAST darker. */
static int find_dots(const plane *p, uint8_t *seen, float (*dots)[2], uint8_t *dmax, int maxdots)
{
	int n = 0;
	int stack[DOT_MAX_SIDE * DOT_MAX_SIDE * 4][2];
	for (int y = 0; y < p->h; y++)
		for (int x = 0; x < p->w; x++) {
			size_t i0 = (size_t)y * p->w + x;
			if (seen[i0] || p->v[i0] < MARK_ON)
				continue;
			/* flood fill, giving up once it grows past a dot */
			int sp = 0, cnt = 0, big = 0, maxv = 0;
			int x0 = x, x1 = x, y0 = y, y1 = y;
			float sx = 0, sy = 0;
			stack[sp][0] = x;
			stack[sp][1] = y;
			sp++;
			seen[i0] = 1;
			while (sp > 0) {
				sp--;
				int cx = stack[sp][0], cy = stack[sp][1];
				cnt++;
				sx += (float)cx;
				sy += (float)cy;
				int v = pv(p, cx, cy);
				maxv = v > maxv ? v : maxv;
				x0 = cx < x0 ? cx : x0;
				x1 = cx > x1 ? cx : x1;
				y0 = cy < y0 ? cy : y0;
				y1 = cy > y1 ? cy : y1;
				if (x1 - x0 >= DOT_MAX_SIDE || y1 - y0 >= DOT_MAX_SIDE)
					big = 1;
				for (int dy = -1; dy <= 1; dy++)
					for (int dx = -1; dx <= 1; dx++) {
						int nx = cx + dx, ny = cy + dy;
						if (nx < 0 || ny < 0 || nx >= p->w || ny >= p->h)
							continue;
						size_t j = (size_t)ny * p->w + nx;
						if (seen[j] || p->v[j] < MARK_ON)
							continue;
						seen[j] = 1;
						if (big ||
						    sp >= (int)(sizeof stack / sizeof stack[0])) {
							big = 1;
							continue;
						}
						stack[sp][0] = nx;
						stack[sp][1] = ny;
						sp++;
					}
			}
			if (big)
				continue;
			int ring = 0;
			for (int ry = y0 - 1; ry <= y1 + 1; ry++)
				for (int rx = x0 - 1; rx <= x1 + 1; rx++)
					if (ry == y0 - 1 || ry == y1 + 1 || rx == x0 - 1 ||
					    rx == x1 + 1) {
						int v = pv(p, rx, ry);
						ring = v > ring ? v : ring;
					}
			if (maxv < DOT_ON || maxv - ring < DOT_CONTRAST || n >= maxdots)
				continue;
			dots[n][0] = sx / (float)cnt;
			dots[n][1] = sy / (float)cnt;
			dmax[n] = (uint8_t)maxv;
			n++;
		}
	return n;
}

/* A dot within 1 px of (x, y), through the grid of dot indices
 * (index + 1 at the rounded centre, 0 = none). */
static int dot_near(const plane *p, const int32_t *grid, const float (*dots)[2], float x, float y)
{
	int ix = (int)(x + 0.5f), iy = (int)(y + 0.5f);
	for (int dy = -2; dy <= 2; dy++)
		for (int dx = -2; dx <= 2; dx++) {
			int gx = ix + dx, gy = iy + dy;
			if (gx < 0 || gy < 0 || gx >= p->w || gy >= p->h)
				continue;
			int32_t g = grid[(size_t)gy * p->w + gx];
			if (!g)
				continue;
			float ex = dots[g - 1][0] - x, ey = dots[g - 1][1] - y;
			if (ex * ex + ey * ey <= 1.0f)
				return g - 1;
		}
	return -1;
}

/* A run stands out: in the corridor around it (half-width one step,
 * reaching one step beyond both ends) there are at most nc / 4 dots that
 * are not in the run. Bright speckle is full of small dots; a caliper line
 * crosses it alone. */
static int lone_run(const plane *p, const int32_t *grid, const float (*dots)[2], const int *chain,
                    int nc)
{
	const float *a = dots[chain[0]], *b = dots[chain[nc - 1]];
	float dx = b[0] - a[0], dy = b[1] - a[1];
	float len = sqrtf(dx * dx + dy * dy);
	if (len <= 0)
		return 0;
	float step = len / (float)(nc - 1);
	float ux = dx / len, uy = dy / len;
	int x0 = (int)fminf(a[0], b[0]) - (int)step - 1,
	    x1 = (int)fmaxf(a[0], b[0]) + (int)step + 1;
	int y0 = (int)fminf(a[1], b[1]) - (int)step - 1,
	    y1 = (int)fmaxf(a[1], b[1]) + (int)step + 1;
	int extra = 0;
	for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < p->h; y++)
		for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < p->w; x++) {
			int32_t g = grid[(size_t)y * p->w + x];
			if (!g)
				continue;
			int in = 0;
			for (int c = 0; c < nc && !in; c++)
				in = chain[c] == g - 1;
			if (in)
				continue;
			float rx = dots[g - 1][0] - a[0], ry = dots[g - 1][1] - a[1];
			float along = rx * ux + ry * uy, across = fabsf(rx * uy - ry * ux);
			if (along >= -step && along <= len + step && across <= step)
				extra++;
		}
	return extra <= nc / 4;
}

/* The dots of a run are drawn as one line: near white and of one
 * brightness, each gap within 1 px of the mean step, each dot within 1 px
 * of the line through the first and the last, and dark (below MARK_ON)
 * half way between neighbours, but for one gap (speckle). */
static int drawn_run(const plane *p, const float (*dots)[2], const uint8_t *dmax, const int *chain,
                     int nc)
{
	const float *a = dots[chain[0]], *b = dots[chain[nc - 1]];
	float dx = b[0] - a[0], dy = b[1] - a[1];
	float len = sqrtf(dx * dx + dy * dy);
	if (len <= 0)
		return 0;
	float step = len / (float)(nc - 1);
	int lo = 255, hi = 0, lit = 0;
	for (int c = 0; c < nc; c++) {
		const float *d = dots[chain[c]];
		int v = dmax[chain[c]];
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
		if (fabsf((d[0] - a[0]) * dy - (d[1] - a[1]) * dx) / len > 1.0f)
			return 0;
		if (c == 0)
			continue;
		const float *e = dots[chain[c - 1]];
		float gx = d[0] - e[0], gy = d[1] - e[1];
		if (fabsf(sqrtf(gx * gx + gy * gy) - step) > 1.0f)
			return 0;
		lit += on(p, (int)floorf((d[0] + e[0]) / 2 + 0.5f),
		          (int)floorf((d[1] + e[1]) / 2 + 0.5f));
	}
	return lo >= DOT_WHITE && hi - lo <= DOT_SPREAD && lit <= 1;
}

static int count_dotted(const plane *p, uint8_t *scratch, int32_t *grid, const int (*cross)[2],
                        int ncross)
{
	float(*dots)[2] = malloc(sizeof *dots * MAX_DOTS);
	uint8_t *used = calloc(MAX_DOTS, 1), *dmax = malloc(MAX_DOTS);
	if (!dots || !used || !dmax) {
		free(dots);
		free(used);
		free(dmax);
		return -ENOMEM;
	}
	int nd = find_dots(p, scratch, dots, dmax, MAX_DOTS);
	for (int i = 0; i < nd; i++) {
		int gx = (int)(dots[i][0] + 0.5f), gy = (int)(dots[i][1] + 0.5f);
		grid[(size_t)gy * p->w + gx] = i + 1;
	}
	int lines = 0;
	for (int i = 0; i < nd; i++) {
		if (used[i])
			continue;
		int ix = (int)(dots[i][0] + 0.5f), iy = (int)(dots[i][1] + 0.5f);
		int done = 0;
		for (int gy = iy - DOT_STEP_WIDE; gy <= iy + DOT_STEP_WIDE && !done; gy++)
			for (int gx = ix - DOT_STEP_WIDE; gx <= ix + DOT_STEP_WIDE && !done; gx++) {
				if (gx < 0 || gy < 0 || gx >= p->w || gy >= p->h)
					continue;
				int32_t g = grid[(size_t)gy * p->w + gx];
				if (!g || g - 1 == i || used[g - 1])
					continue;
				int j = g - 1;
				float sx = dots[j][0] - dots[i][0], sy = dots[j][1] - dots[i][1];
				float d2 = sx * sx + sy * sy;
				if (d2 < (float)(DOT_STEP_MIN * DOT_STEP_MIN) ||
				    d2 > (float)(DOT_STEP_WIDE * DOT_STEP_WIDE))
					continue;
				/* the run must start at i: no dot one step before */
				if (dot_near(p, grid, (const float(*)[2])dots, dots[i][0] - sx,
				             dots[i][1] - sy) >= 0)
					continue;
				int chain[64], nc = 2;
				chain[0] = i;
				chain[1] = j;
				while (nc < 64) {
					/* the next dot, predicted from the mean step so far */
					const float *f = dots[chain[0]], *a = dots[chain[nc - 1]];
					float mx = (a[0] - f[0]) / (float)(nc - 1),
					      my = (a[1] - f[1]) / (float)(nc - 1);
					int k = dot_near(p, grid, (const float(*)[2])dots,
					                 a[0] + mx, a[1] + my);
					if (k < 0 || used[k] || k == chain[nc - 2])
						break;
					chain[nc++] = k;
				}
				int ok = nc >= DOT_RUN_CROSS &&
				         drawn_run(p, (const float(*)[2])dots, dmax, chain, nc) &&
				         lone_run(p, grid, (const float(*)[2])dots, chain, nc);
				if (ok && (nc < DOT_RUN_ALONE ||
				           d2 > (float)(DOT_STEP_MAX * DOT_STEP_MAX))) {
					/* short runs, and wide steps (depth ticks along a
					 * sector edge look alike): a caliper's line ends at
					 * one of its crosses */
					float st = sqrtf(d2);
					int r = (int)(1.5f * st + 0.5f) + ARM_MAX / 2;
					const float *e0 = dots[chain[0]], *e1 = dots[chain[nc - 1]];
					ok = near_any(cross, ncross, (int)e0[0], (int)e0[1], r) ||
					     near_any(cross, ncross, (int)e1[0], (int)e1[1], r);
				}
				if (ok) {
					for (int c = 0; c < nc; c++)
						used[chain[c]] = 1;
					lines++;
					done = 1;
				}
			}
	}
	free(dots);
	free(used);
	free(dmax);
	return lines;
}

int usv_annot_find_calipers(const usv_image *img, const usv_box *us, usv_caliper_report *r)
{
	if (!img || !img->px || !us || !r || (img->c != 1 && img->c != 3) || img->w < 1 ||
	    img->h < 1)
		return -EINVAL;
	if (us->x < 0 || us->y < 0 || us->w < 1 || us->h < 1 || us->w > img->w - us->x ||
	    us->h > img->h - us->y)
		return -EINVAL;
	memset(r, 0, sizeof *r);
	size_t area = (size_t)us->w * us->h;
	uint8_t *v = malloc(area * 2);
	int32_t *grid = calloc(area, sizeof *grid);
	if (!v || !grid) {
		free(v);
		free(grid);
		return -ENOMEM;
	}
	for (int y = 0; y < us->h; y++) {
		const uint8_t *s = img->px + ((size_t)(us->y + y) * img->w + us->x) * img->c;
		uint8_t *d = v + (size_t)y * us->w;
		if (img->c == 1) {
			memcpy(d, s, (size_t)us->w);
		} else {
			for (int x = 0; x < us->w; x++, s += 3) {
				uint8_t m = s[0] > s[1] ? s[0] : s[1];
				d[x] = m > s[2] ? m : s[2];
			}
		}
	}
	plane p = {v, us->w, us->h};
	uint8_t *scratch = v + area;
	memset(scratch, 0, area);
	int(*cross)[2] = malloc(sizeof *cross * MAX_MARKS);
	uint32_t *ii = malloc(((size_t)us->w + 1) * ((size_t)us->h + 1) * sizeof *ii);
	if (!cross || !ii) {
		free(v);
		free(grid);
		free(cross);
		free(ii);
		return -ENOMEM;
	}
	integral(&p, ii);
	r->crosses = count_crosses(&p, ii, cross);
	free(ii);
	int dl = count_dotted(&p, scratch, grid, (const int(*)[2])cross, r->crosses);
	free(cross);
	free(v);
	free(grid);
	if (dl < 0)
		return dl;
	r->dotted_lines = dl;
	return 0;
}
