/*
 * NAME
 *	phantom.c - rendering of synthetic abdominal B-mode views
 *
 * DESCRIPTION
 *	See phantom.h. Scene coordinates: X in [-1, 1] across the crop box,
 *	Y in [0, 1] down its height (depth). A seeded similarity transform
 *	(shift, scale, rotation) moves each scene; shapes are painted in
 *	order, later over earlier.
 */
#include "phantom.h"

#include "usv/dcm_result.h"
#include "usv/train.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *usv_phantom_view_label(int view)
{
	const usv_view_info *vi =
	    view >= 0 && view < USV_PHANTOM_N_VIEWS ? usv_view_at((size_t)view) : NULL;
	return vi ? vi->key : NULL;
}

static const usv_phantom_vendor vendors[] = {
    {"philips", "Philips", "EPIQ 7G", 1024, 768, 212, 84, 600, 0.025},
    {"toshiba", "TOSHIBA_MEC", "Aplio XG", 716, 537, 172, 82, 372, 0.04},
};

const usv_phantom_vendor *usv_phantom_vendor_find(const char *key)
{
	for (size_t i = 0; i < sizeof vendors / sizeof vendors[0]; i++)
		if (!strcmp(vendors[i].key, key))
			return &vendors[i];
	return NULL;
}

enum { ELL = 1, RING, TUBE, BOOST };

typedef struct shape {
	int kind;
	float x, y, a, b, ang; /* ellipse centre, half axes, angle (deg); tube: x,y -> a,b */
	float r;               /* tube radius, ring thickness */
	float echo;            /* BOOST: multiplier */
} shape;

#define MAXS 24

typedef struct scene {
	int n;
	shape s[MAXS];
} scene;

static void add(scene *sc, int kind, float x, float y, float a, float b, float ang, float r,
                float echo)
{
	if (sc->n < MAXS)
		sc->s[sc->n++] = (shape){kind, x, y, a, b, ang, r, echo};
}

static void ell(scene *sc, float x, float y, float a, float b, float ang, float e)
{
	add(sc, ELL, x, y, a, b, ang, 0, e);
}

static void kidney_long(scene *sc, float x, float y, float ang, usv_rng *r)
{
	add(sc, ELL, x, y, 0.62f, 0.25f, ang, 0, 0.78f);  /* capsule */
	add(sc, ELL, x, y, 0.58f, 0.215f, ang, 0, 0.26f); /* cortex */
	float c = cosf(ang * 0.01745f), s = sinf(ang * 0.01745f);
	for (int k = -2; k <= 2; k++) { /* pyramids along the cortex */
		float t = 0.2f * k;
		ell(sc, x + c * t - s * 0.13f, y + s * t + c * 0.13f, 0.06f, 0.045f, ang, 0.1f);
		ell(sc, x + c * t + s * 0.13f, y + s * t - c * 0.13f, 0.06f, 0.045f, ang, 0.1f);
	}
	add(sc, ELL, x, y, 0.40f + 0.04f * (float)usv_rng_uniform(r), 0.075f, ang, 0, 0.88f);
}

static void kidney_trans(scene *sc, float x, float y, int hilum_dir)
{
	add(sc, ELL, x, y, 0.31f, 0.27f, 0, 0, 0.78f);
	add(sc, ELL, x, y, 0.28f, 0.24f, 0, 0, 0.26f);
	ell(sc, x - hilum_dir * 0.12f, y - 0.12f, 0.06f, 0.05f, 0, 0.1f);
	ell(sc, x - hilum_dir * 0.12f, y + 0.12f, 0.06f, 0.05f, 0, 0.1f);
	add(sc, ELL, x + hilum_dir * 0.08f, y, 0.14f, 0.085f, 0, 0, 0.88f);
	add(sc, TUBE, x + hilum_dir * 0.1f, y, x + hilum_dir * 0.42f, y, 0, 0.05f, 0.8f);
	add(sc, TUBE, x + hilum_dir * 0.2f, y + 0.02f, x + hilum_dir * 0.5f, y + 0.04f, 0, 0.025f,
	    0.03f); /* renal vein */
}

static void spine(scene *sc, float x)
{
	add(sc, RING, x, 1.02f, 0.22f, 0.08f, 0, 0.025f, 0.95f);
}

static void build(scene *sc, int view, usv_rng *r)
{
	memset(sc, 0, sizeof *sc);
	switch (view) {
	case 0: /* liver_left_long: left lobe, heart below, aorta along */
		ell(sc, 0.0f, 0.42f, 1.15f, 0.36f, -8, 0.5f);
		ell(sc, -0.55f, 0.98f, 0.55f, 0.26f, 0, 0.75f);
		ell(sc, -0.55f, 0.98f, 0.5f, 0.22f, 0, 0.1f);
		add(sc, TUBE, -1.0f, 0.78f, 1.0f, 0.86f, 0, 0.055f, 0.03f);
		break;
	case 1: /* liver_left_trans: lobe wedge, aorta, IVC, spine */
		ell(sc, 0.1f, 0.38f, 0.95f, 0.3f, 10, 0.5f);
		ell(sc, -0.12f, 0.78f, 0.075f, 0.075f, 0, 0.03f);
		ell(sc, 0.25f, 0.74f, 0.11f, 0.06f, 0, 0.05f);
		spine(sc, -0.1f);
		break;
	case 2: /* liver_right_long: liver, diaphragm, kidney pole */
		ell(sc, 0.0f, 0.5f, 1.35f, 0.52f, 0, 0.52f);
		add(sc, RING, -0.3f, 1.3f, 1.05f, 0.5f, 0, 0.035f, 0.95f);
		add(sc, ELL, 0.62f, 0.86f, 0.32f, 0.15f, -15, 0, 0.3f);
		add(sc, ELL, 0.62f, 0.86f, 0.2f, 0.05f, -15, 0, 0.85f);
		break;
	case 3: /* liver_right_trans: liver, three hepatic veins to the IVC */
		ell(sc, 0.0f, 0.5f, 1.35f, 0.55f, 0, 0.5f);
		add(sc, TUBE, -0.85f, 0.3f, 0.0f, 0.92f, 0, 0.035f, 0.04f);
		add(sc, TUBE, 0.0f, 0.22f, 0.02f, 0.92f, 0, 0.035f, 0.04f);
		add(sc, TUBE, 0.85f, 0.32f, 0.04f, 0.92f, 0, 0.035f, 0.04f);
		ell(sc, 0.03f, 0.95f, 0.09f, 0.07f, 0, 0.04f);
		break;
	case 4: /* spleen: crescent over the left kidney */
		ell(sc, 0.15f, 0.42f, 0.85f, 0.32f, -20, 0.6f);
		ell(sc, 0.45f, 0.12f, 0.65f, 0.2f, -20, 0.3f);
		add(sc, TUBE, -0.1f, 0.6f, 0.15f, 0.52f, 0, 0.025f, 0.04f); /* hilar vessel */
		ell(sc, -0.15f, 0.88f, 0.36f, 0.13f, 5, 0.27f);
		ell(sc, -0.15f, 0.88f, 0.22f, 0.045f, 5, 0.85f);
		break;
	case 5: /* pancreas: band over splenic vein, SMA, aorta */
		ell(sc, -0.7f, 0.2f, 0.5f, 0.2f, 0, 0.5f);
		ell(sc, 0.0f, 0.46f, 0.78f, 0.1f, 6, 0.65f);
		add(sc, TUBE, -0.75f, 0.56f, 0.35f, 0.59f, 0, 0.03f, 0.03f);
		ell(sc, 0.05f, 0.68f, 0.035f, 0.035f, 0, 0.04f);
		ell(sc, 0.05f, 0.84f, 0.075f, 0.075f, 0, 0.03f);
		spine(sc, 0.05f);
		break;
	case 6: /* kidney_left_long: spleen tip at left, kidney tilted up */
		ell(sc, -0.65f, 0.22f, 0.6f, 0.22f, -15, 0.58f);
		kidney_long(sc, 0.08f, 0.58f, 12, r);
		break;
	case 7: /* kidney_left_trans: hilum to the right */
		ell(sc, -0.6f, 0.2f, 0.55f, 0.2f, -10, 0.58f);
		kidney_trans(sc, -0.05f, 0.58f, 1);
		break;
	case 8: /* kidney_right_long: liver above, kidney tilted down */
		ell(sc, 0.0f, 0.12f, 1.3f, 0.3f, 0, 0.5f);
		kidney_long(sc, -0.05f, 0.62f, -12, r);
		break;
	case 9: /* kidney_right_trans: liver above, hilum to the left */
		ell(sc, 0.0f, 0.12f, 1.3f, 0.3f, 0, 0.5f);
		kidney_trans(sc, 0.05f, 0.62f, -1);
		break;
	default: /* gallbladder: anechoic pear in the liver, enhancement below */
		ell(sc, 0.0f, 0.45f, 1.35f, 0.55f, 0, 0.5f);
		add(sc, BOOST, 0.05f, 0.75f, 0.28f, 0.3f, 20, 0, 1.45f);
		add(sc, ELL, 0.05f, 0.5f, 0.38f, 0.16f, 20, 0, 0.8f);
		add(sc, ELL, 0.05f, 0.5f, 0.35f, 0.135f, 20, 0, 0.02f);
		add(sc, TUBE, 0.3f, 0.6f, 0.55f, 0.75f, 0, 0.03f, 0.03f); /* portal vein */
		break;
	}
}

/* inside test of shape s at (x, y) */
static int inside(const shape *s, float x, float y)
{
	if (s->kind == TUBE) {
		float dx = s->a - s->x, dy = s->b - s->y;
		float t = ((x - s->x) * dx + (y - s->y) * dy) / (dx * dx + dy * dy + 1e-9f);
		t = t < 0 ? 0 : t > 1 ? 1 : t;
		float ex = s->x + t * dx - x, ey = s->y + t * dy - y;
		return ex * ex + ey * ey <= s->r * s->r;
	}
	float c = cosf(s->ang * 0.01745329f), sn = sinf(s->ang * 0.01745329f);
	float u = (x - s->x) * c + (y - s->y) * sn, v = -(x - s->x) * sn + (y - s->y) * c;
	float q = u * u / (s->a * s->a) + v * v / (s->b * s->b);
	if (s->kind == RING) {
		float ai = s->a - s->r, bi = s->b - s->r;
		float qi = u * u / (ai * ai) + v * v / (bi * bi);
		return q <= 1 && qi > 1;
	}
	return q <= 1;
}

/* ---- typed view text -------------------------------------------------- */

static const char *pick(usv_rng *r, const char *const *w, const double *p, int n)
{
	double u = usv_rng_uniform(r), acc = 0;
	for (int i = 0; i < n - 1; i++) {
		acc += p[i];
		if (u < acc)
			return w[i];
	}
	return w[n - 1];
}

/* upper case, or title case ("Lt Kidney Long"; "GB" stays upper) */
static void set_case(char *s, int title)
{
	int start = 1;
	for (char *c = s; *c; c++) {
		if (*c == ' ') {
			start = 1;
			continue;
		}
		int keep =
		    title && !start && !(c[-1] == 'G' && c[0] == 'B' && (c[1] == ' ' || !c[1]));
		*c = keep ? (char)tolower((unsigned char)*c) : (char)toupper((unsigned char)*c);
		start = 0;
	}
}

int usv_phantom_view_text(int view, uint64_t seed, int long_form, char *buf, size_t len)
{
	/* organ, side (0 none, 1 left, 2 right), orientation (0 none, 1 long, 2 trans) */
	static const struct {
		int organ, side, orient;
	} vt[USV_PHANTOM_N_VIEWS] = {{0, 1, 1}, {0, 1, 2}, {0, 2, 1}, {0, 2, 2},
	                             {2, 0, 0}, {3, 0, 0}, {1, 1, 1}, {1, 1, 2},
	                             {1, 2, 1}, {1, 2, 2}, {4, 0, 0}};
	static const char *const organ[5][3] = {{"LIVER", "LIV", "LIVER"},
	                                        {"KIDNEY", "KID", "RENAL"},
	                                        {"SPLEEN", "SPL", "SPLEEN"},
	                                        {"PANCREAS", "PANC", "PANCREAS"},
	                                        {"GALLBLADDER", "GB", "GALL BLADDER"}};
	static const double p_organ[3] = {0.6, 0.25, 0.15};
	static const char *const left[3] = {"LT", "LEFT", "L"}, *const right[3] = {"RT", "RIGHT",
	                                                                           "R"};
	static const double p_side[3] = {0.55, 0.25, 0.2};
	static const char *const lng[4] = {"LONG", "SAG", "LONGITUDINAL", "SAGITTAL"};
	static const double p_long[4] = {0.45, 0.3, 0.15, 0.1};
	static const char *const trv[6] = {"TRANS", "TRV", "TRANSVERSE", "AX", "TRX", "AXIAL"};
	static const double p_trans[6] = {0.4, 0.15, 0.15, 0.1, 0.1, 0.1};
	static const char *const full_organ[5] = {"LIVER", "KIDNEY", "SPLEEN", "PANCREAS",
	                                          "GALLBLADDER"};
	if (view < 0 || view >= USV_PHANTOM_N_VIEWS || !buf || len < USV_PHANTOM_TEXT_MAX)
		return -EINVAL;
	usv_rng r;
	usv_rng_seed(&r, seed ^ 0x7E47A11E5ULL);
	int o = vt[view].organ, sd = vt[view].side, or = vt[view].orient;
	const char *on, *sn = NULL, *dn = NULL;
	if (long_form) {
		on = full_organ[o];
		sn = sd == 1 ? "LEFT" : sd == 2 ? "RIGHT" : NULL;
		dn = or == 1 ? "LONGITUDINAL" : or == 2 ? "TRANSVERSE" : NULL;
	} else {
		on = pick(&r, organ[o], p_organ, 3);
		if (sd)
			sn = pick(&r, sd == 1 ? left : right, p_side, 3);
		if (or == 1)
			dn = pick(&r, lng, p_long, 4);
		else if (or == 2)
			dn = pick(&r, trv, p_trans, 6);
	}
	const char *w[3];
	int n = 0;
	if (sd) {
		/* side organ orient, organ side orient, orient side organ, organ orient side;
		 * a one-letter side only before the organ */
		int order = (int)usv_rng_below(&r, long_form ? 2 : 4);
		if (strlen(sn) == 1)
			order = 0;
		static const int ord[4][3] = {{0, 1, 2}, {1, 0, 2}, {2, 0, 1}, {1, 2, 0}};
		const char *parts[3] = {sn, on, dn};
		for (int i = 0; i < 3; i++)
			w[n++] = parts[ord[order][i]];
	} else {
		/* organ alone, or with an orientation word before or after it */
		double u = usv_rng_uniform(&r);
		if (!long_form && u >= 0.5) {
			const char *d = usv_rng_uniform(&r) < 0.5 ? pick(&r, lng, p_long, 2)
			                                          : pick(&r, trv, p_trans, 2);
			if (u < 0.85) {
				w[n++] = on;
				w[n++] = d;
			} else {
				w[n++] = d;
				w[n++] = on;
			}
		} else {
			w[n++] = on;
		}
	}
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < n; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? " " : "", w[i]);
	int title = long_form || usv_rng_uniform(&r) < 0.22;
	set_case(buf, title);
	return 0;
}

int usv_phantom_unmappable_text(uint64_t seed, char *buf, size_t len)
{
	static const char *const t[] = {"RUQ", "AORTA",   "LYMPH NODE",
	                                "IVC", "BLADDER", "LT UPPER QUAD"};
	if (!buf || len < USV_PHANTOM_TEXT_MAX)
		return -EINVAL;
	usv_rng r;
	usv_rng_seed(&r, seed ^ 0x0BAD7E47ULL);
	snprintf(buf, len, "%s", t[usv_rng_below(&r, sizeof t / sizeof t[0])]);
	return 0;
}

/* ---- burned-in text ----------------------------------------------------- */

/* text styles: 5 x 7 at scale 2 and 3, 7 x 9 at scale 2; and 7 x 9 at 1 for
 * measurement lines that would not fit */
typedef struct style {
	int font, scale;
} style;

static const style styles[] = {{0, 2}, {0, 3}, {1, 2}, {1, 1}};

static int glyph_w(style st)
{
	return (st.font ? 7 : 5) * st.scale;
}

static int glyph_h(style st)
{
	return (st.font ? 9 : 7) * st.scale;
}

static int adv(style st)
{
	return (st.font ? USV_PHANTOM_ADV7X9 : USV_PHANTOM_ADV5X7) * st.scale;
}

/* width of the dots of n characters */
static int text_w(style st, size_t n)
{
	return n ? (int)(n - 1) * adv(st) + glyph_w(st) : 0;
}

static int line_h(style st)
{
	return glyph_h(st) + 3 * st.scale + 2;
}

static void draw(uint8_t *px, int W, int H, style st, int x, int y, uint8_t val, const char *s)
{
	if (st.font)
		usv_phantom_text7x9(px, W, H, x, y, st.scale, val, s);
	else
		usv_phantom_text(px, W, H, x, y, st.scale, val, s);
}

#define MAX_LINES 4

/* Splits s into lines of at most maxw dots, breaking at spaces but never
 * inside "GALL BLADDER". Returns the line count, or -1 when a word alone is
 * too wide or more than MAX_LINES lines are needed. */
static int wrap(const char *s, style st, int maxw, char lines[MAX_LINES][USV_PHANTOM_TEXT_MAX])
{
	char tok[8][USV_PHANTOM_TEXT_MAX];
	int nt = 0;
	for (const char *p = s; *p && nt < 8;) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, " ");
		if (!strncasecmp(p, "GALL BLADDER", 12))
			n = 12;
		if (n >= USV_PHANTOM_TEXT_MAX)
			return -1;
		memcpy(tok[nt], p, n);
		tok[nt++][n] = 0;
		p += n;
	}
	int nl = 0;
	for (int i = 0; i < nt; i++) {
		if (text_w(st, strlen(tok[i])) > maxw)
			return -1;
		size_t cur = nl ? strlen(lines[nl - 1]) : 0;
		if (nl && text_w(st, cur + 1 + strlen(tok[i])) <= maxw) {
			snprintf(lines[nl - 1] + cur, USV_PHANTOM_TEXT_MAX - cur, " %s", tok[i]);
			continue;
		}
		if (nl == MAX_LINES)
			return -1;
		snprintf(lines[nl++], USV_PHANTOM_TEXT_MAX, "%s", tok[i]);
	}
	return nl;
}

static int banner_rows(const usv_phantom_vendor *v)
{
	int b = (v->rows * 12 + 99) / 100;
	return b < 48 ? 48 : b;
}

/* The typed view text at the lower left: beside the image (left of the
 * crop box, in its lower fifth) or just below it. */
static void draw_annotation(const usv_phantom_vendor *v, uint8_t *px, uint64_t seed,
                            usv_phantom_overlay *ov)
{
	int W = v->cols, H = v->rows, S = v->crop_side;
	usv_rng r;
	usv_rng_seed(&r, seed ^ 0xA77E0A7ULL);
	style st = styles[usv_rng_below(&r, 3)];
	uint8_t val = (uint8_t)(200 + usv_rng_below(&r, 56));
	int beside = usv_rng_uniform(&r) < 0.6;
	double ux = usv_rng_uniform(&r), uy = usv_rng_uniform(&r);
	char lines[MAX_LINES][USV_PHANTOM_TEXT_MAX];
	int x0 = 0, y0 = 0, nl = -1;
	if (beside) {
		x0 = 6 + (int)(ux * 14);
		y0 = v->crop_y + (int)((0.8 + 0.1 * uy) * S);
		nl = wrap(ov->annotation, st, v->crop_x - x0 - 6, lines);
		if (nl > 0 && y0 + nl * line_h(st) > H - 24)
			nl = -1;
		if (nl < 0)
			st = styles[0];
		nl = nl < 0 ? wrap(ov->annotation, st, v->crop_x - x0 - 6, lines) : nl;
		if (nl > 0 && y0 + nl * line_h(st) > H - 24)
			nl = -1;
	}
	if (nl < 0) { /* below the image, one line */
		x0 = 8 + (int)(ux * v->crop_x / 2);
		y0 = v->crop_y + S + 8 + (int)(uy * 10);
		nl = wrap(ov->annotation, st, W - x0 - 10, lines);
		if (nl != 1)
			return;
	}
	int x1 = -1;
	for (int i = 0; i < nl; i++) {
		draw(px, W, H, st, x0, y0 + i * line_h(st), val, lines[i]);
		int w = text_w(st, strlen(lines[i]));
		x1 = x0 + w - 1 > x1 ? x0 + w - 1 : x1;
	}
	/* the box around the dots actually drawn */
	int bx0 = W, by0 = H, bx1 = -1, by1 = -1;
	for (int y = y0; y < y0 + nl * line_h(st) && y < H; y++)
		for (int x = x0; x <= x1 && x < W; x++)
			if (px[(size_t)y * W + x] == val) {
				bx0 = x < bx0 ? x : bx0;
				bx1 = x > bx1 ? x : bx1;
				by0 = y < by0 ? y : by0;
				by1 = y > by1 ? y : by1;
			}
	if (bx1 >= 0) {
		ov->text_x0 = bx0;
		ov->text_y0 = by0;
		ov->text_x1 = bx1;
		ov->text_y1 = by1;
	}
}

/* ---- calipers ----------------------------------------------------------- */

/* a point of the crop box inside the sector, away from its border */
static int in_sector(int S, float x, float y)
{
	float ax = S / 2.0f, ay = -0.12f * S;
	float dx = x - ax, dy = y - ay, rr = sqrtf(dx * dx + dy * dy);
	return x >= 10 && x < S - 10 && y >= 10 && y < S - 10 && rr > 0.3f * S && rr < 1.0f * S &&
	       fabsf(atan2f(dx, dy)) < 22.0f * 0.01745329f;
}

static void put(uint8_t *px, int W, int H, int x, int y)
{
	if (x >= 0 && x < W && y >= 0 && y < H)
		px[(size_t)y * W + x] = 255;
}

/* a saturated echo within 6 pixels of crop point (x, y): a mark there
 * would merge with it */
static int bright_near(const usv_phantom_vendor *v, const uint8_t *px, int x, int y)
{
	for (int dy = -6; dy <= 6; dy++)
		for (int dx = -6; dx <= 6; dx++)
			if (px[(size_t)(v->crop_y + y + dy) * v->cols + v->crop_x + x + dx] >= 250)
				return 1;
	return 0;
}

static void draw_measurement(const usv_phantom_vendor *v, uint8_t *px, uint64_t seed,
                             usv_phantom_overlay *ov)
{
	ov->measurement[0] = 0;
	ov->ncalipers = 0;
	if (!ov->measure)
		return;
	int W = v->cols, H = v->rows, S = v->crop_side;
	usv_rng r;
	usv_rng_seed(&r, seed ^ 0xCA11BE85ULL);
	int n = 1 + (int)usv_rng_below(&r, 3), cross = usv_rng_uniform(&r) < 0.6;
	int arm = 3 + (int)usv_rng_below(&r, 2);
	float cx[3], cy[3];
	int got = 0;
	for (int tries = 0; tries < 2000 && got < n; tries++) {
		float x, y;
		if (got == 1) { /* the second one measures a distance from the first */
			float len = (0.08f + 0.25f * (float)usv_rng_uniform(&r)) * S;
			float a = (float)usv_rng_uniform(&r) * 6.2831853f;
			x = cx[0] + len * cosf(a);
			y = cy[0] + len * sinf(a);
		} else {
			float rr = (0.35f + 0.55f * (float)usv_rng_uniform(&r)) * S;
			float th = ((float)usv_rng_uniform(&r) - 0.5f) * 40.0f * 0.01745329f;
			x = S / 2.0f + rr * sinf(th);
			y = -0.12f * S + rr * cosf(th);
		}
		x = floorf(x + 0.5f);
		y = floorf(y + 0.5f);
		if (!in_sector(S, x, y) || (tries < 1500 && bright_near(v, px, (int)x, (int)y)))
			continue;
		int far = 1;
		for (int k = 0; k < got; k++)
			if (fabsf(x - cx[k]) < 24 && fabsf(y - cy[k]) < 24)
				far = 0;
		if (!far)
			continue;
		cx[got] = x;
		cy[got] = y;
		got++;
	}
	for (int k = 0; k < got; k++) {
		int x = v->crop_x + (int)cx[k], y = v->crop_y + (int)cy[k];
		put(px, W, H, x, y);
		for (int d = 1; d <= arm; d++) {
			if (cross) {
				put(px, W, H, x - d, y);
				put(px, W, H, x + d, y);
				put(px, W, H, x, y - d);
				put(px, W, H, x, y + d);
			} else {
				put(px, W, H, x - d, y - d);
				put(px, W, H, x + d, y + d);
				put(px, W, H, x + d, y - d);
				put(px, W, H, x - d, y + d);
			}
		}
	}
	ov->ncalipers = got;
	float dist = 0;
	if (got >= 2) {
		float dx = cx[1] - cx[0], dy = cy[1] - cy[0];
		dist = sqrtf(dx * dx + dy * dy);
		if (usv_rng_uniform(&r) < 0.5) { /* dotted line between the two */
			int step = 6 + (int)usv_rng_below(&r, 3);
			for (float t = (float)arm + 4; t < dist - arm - 4; t += (float)step) {
				int x = v->crop_x + (int)floorf(cx[0] + dx * t / dist + 0.5f),
				    y = v->crop_y + (int)floorf(cy[0] + dy * t / dist + 0.5f);
				put(px, W, H, x, y);
				put(px, W, H, x + 1, y);
				put(px, W, H, x, y + 1);
				put(px, W, H, x + 1, y + 1);
			}
		}
	} else {
		dist = (0.1f + 0.3f * (float)usv_rng_uniform(&r)) * S;
	}
	double cm = dist * v->cm_per_px;
	switch (usv_rng_below(&r, 4)) {
	case 0:
		snprintf(ov->measurement, sizeof ov->measurement, "D1 %.1f cm", cm);
		break;
	case 1:
		snprintf(ov->measurement, sizeof ov->measurement, "Dist %.2f cm", cm);
		break;
	case 2:
		snprintf(ov->measurement, sizeof ov->measurement, "Vol %.1f ml",
		         2 + 80 * usv_rng_uniform(&r));
		break;
	default:
		snprintf(ov->measurement, sizeof ov->measurement, "+ Dist %.2f cm", cm);
		break;
	}
	/* the result line: upper left, below the banner */
	int x0 = 6 + (int)usv_rng_below(&r, 8),
	    y0 = banner_rows(v) + 8 + (int)usv_rng_below(&r, 24);
	style st = styles[0];
	if (text_w(st, strlen(ov->measurement)) > v->crop_x - x0 - 4)
		st = styles[3];
	draw(px, W, H, st, x0, y0, (uint8_t)(220 + usv_rng_below(&r, 36)), ov->measurement);
}

/* ---- the scanner screen around the image --------------------------------- */

static void draw_chrome(const usv_phantom_vendor *v, uint8_t *px, uint64_t seed,
                        usv_phantom_overlay *ov)
{
	int W = v->cols, H = v->rows, S = v->crop_side;
	usv_rng r;
	usv_rng_seed(&r, seed ^ 0xC880AEULL);
	char line[96];
	/* banner */
	snprintf(line, sizeof line, "%s %s", v->manufacturer, v->model);
	usv_phantom_text(px, W, H, 8, 6, 2, 200, line);
	usv_phantom_text(px, W, H, 8, 26, 2, 200, "SYNTHETIC PHANTOM");
	if (ov && ov->banner) {
		const char *p = ov->banner;
		for (int y = 6; *p && y < banner_rows(v) - 14; y += 20) {
			size_t n = strcspn(p, "\n");
			snprintf(line, sizeof line, "%.*s", (int)(n < 60 ? n : 60), p);
			usv_phantom_text(px, W, H, W / 2 - 40, y, 2, 220, line);
			p += n;
			if (*p)
				p++;
		}
	}
	/* settings on the right of the image: probe, preset, frame rate, depth, gains */
	int depth = 14 + (int)usv_rng_below(&r, 6), fr = 18 + (int)usv_rng_below(&r, 14),
	    gain = 45 + (int)usv_rng_below(&r, 20), dr = 55 + (int)usv_rng_below(&r, 16);
	char set[6][32];
	if (!strcmp(v->key, "toshiba")) {
		snprintf(set[0], sizeof set[0], "PVT-375BT");
		snprintf(set[1], sizeof set[1], "3.5MHz");
		snprintf(set[2], sizeof set[2], "G %d", gain + 20);
		snprintf(set[3], sizeof set[3], "DR %d", dr);
		snprintf(set[4], sizeof set[4], "FR %d", fr);
		snprintf(set[5], sizeof set[5], "D %d.0cm", depth);
	} else {
		snprintf(set[0], sizeof set[0], "C5-1 %dHz", fr);
		snprintf(set[1], sizeof set[1], "Abd Gen");
		snprintf(set[2], sizeof set[2], "2D %d%%", gain + 10);
		snprintf(set[3], sizeof set[3], "C %d", dr - 5);
		snprintf(set[4], sizeof set[4], "P Low");
		snprintf(set[5], sizeof set[5], "%dcm", depth);
	}
	int xs = v->crop_x + S + 22, ys = banner_rows(v) + 4;
	for (int i = 0; i < 6; i++)
		usv_phantom_text(px, W, H, xs, ys + 20 * i, 2, 210, set[i]);
	/* bottom left: frame counter and output */
	snprintf(line, sizeof line, "MI %.1f TIS %.1f", 0.8 + 0.1 * usv_rng_below(&r, 6),
	         0.2 + 0.1 * usv_rng_below(&r, 6));
	usv_phantom_text(px, W, H, 8, H - 18, 2, 200, line);
	/* depth scale ticks right of the crop */
	for (int t = 0; t <= 10; t++) {
		int y = v->crop_y + t * (S - 1) / 10, x0 = v->crop_x + S + 6;
		for (int x = x0; x < x0 + (t % 5 ? 5 : 10) && x < W; x++)
			px[(size_t)y * W + x] = 180;
	}
	if (ov) {
		ov->text_x0 = ov->text_y0 = ov->text_x1 = ov->text_y1 = -1;
		if (ov->annotation && *ov->annotation)
			draw_annotation(v, px, seed, ov);
	}
}

int usv_phantom_render(const usv_phantom_vendor *v, int view, uint64_t seed,
                       usv_phantom_overlay *ov, uint8_t **out)
{
	const char *label = usv_phantom_view_label(view);
	if (!v || !label || !out)
		return -EINVAL;
	int W = v->cols, H = v->rows, S = v->crop_side;
	uint8_t *px = calloc((size_t)W * H, 1);
	float *re = malloc((size_t)S * S * sizeof(float)),
	      *im = malloc((size_t)S * S * sizeof(float));
	float *tmp = malloc((size_t)S * S * sizeof(float));
	if (!px || !re || !im || !tmp) {
		free(px);
		free(re);
		free(im);
		free(tmp);
		return -ENOMEM;
	}
	usv_rng r;
	usv_rng_seed(&r, seed);
	scene sc;
	build(&sc, view, &r);
	/* seeded similarity transform of the scene */
	float sh_x = (float)(usv_rng_uniform(&r) - 0.5) * 0.16f;
	float sh_y = (float)(usv_rng_uniform(&r) - 0.5) * 0.12f;
	float scl = 0.9f + 0.2f * (float)usv_rng_uniform(&r);
	float rot = (float)(usv_rng_uniform(&r) - 0.5) * 0.4f; /* +-11.5 deg */
	float gain = 0.85f + 0.3f * (float)usv_rng_uniform(&r);
	float base = 0.3f + 0.08f * (float)usv_rng_uniform(&r);
	float cr = cosf(rot), sr = sinf(rot);
	/* speckle: complex Gaussian field smoothed 5 wide laterally, 3 axially */
	for (size_t i = 0; i < (size_t)S * S; i++) {
		re[i] = (float)usv_rng_normal(&r);
		im[i] = (float)usv_rng_normal(&r);
	}
	float *f[2] = {re, im};
	for (int k = 0; k < 2; k++) {
		float *a = f[k];
		for (int y = 0; y < S; y++)
			for (int x = 0; x < S; x++) {
				float s = 0;
				for (int d = -2; d <= 2; d++) {
					int xx = x + d < 0 ? 0 : x + d >= S ? S - 1 : x + d;
					s += a[(size_t)y * S + xx];
				}
				tmp[(size_t)y * S + x] = s;
			}
		for (int y = 0; y < S; y++)
			for (int x = 0; x < S; x++) {
				float s = 0;
				for (int d = -1; d <= 1; d++) {
					int yy = y + d < 0 ? 0 : y + d >= S ? S - 1 : y + d;
					s += tmp[(size_t)yy * S + x];
				}
				a[(size_t)y * S + x] = s;
			}
	}
	/* mean of a Rayleigh magnitude: sigma * sqrt(pi / 2), sigma^2 = 15 */
	const float inv_mean = 1.0f / (sqrtf(15.0f) * 1.2533141f);
	/* sector: apex above the crop, radii in crop pixels */
	float ax = S / 2.0f, ay = -0.12f * S, r0 = 0.2f * S, r1 = 1.1f * S;
	float tmax = 26.0f * 0.01745329f;
	for (int y = 0; y < S; y++) {
		for (int x = 0; x < S; x++) {
			float dx = x - ax, dy = y - ay;
			float rr = sqrtf(dx * dx + dy * dy), th = atan2f(dx, dy);
			if (rr < r0 || rr > r1 || fabsf(th) > tmax)
				continue;
			float X = (x - S / 2.0f) / (S / 2.0f), Y = (float)y / S;
			/* inverse transform into scene coordinates */
			float qx = X - sh_x, qy = Y - 0.5f - sh_y;
			float sx = (cr * qx + sr * qy) / scl,
			      sy = (-sr * qx + cr * qy) / scl + 0.5f;
			float e = base, boost = 1;
			if (Y < 0.05f)
				e = 0.65f;
			else if (Y < 0.1f)
				e = 0.25f;
			else {
				for (int k = 0; k < sc.n; k++) {
					const shape *s = &sc.s[k];
					if (!inside(s, sx, sy))
						continue;
					if (s->kind == BOOST)
						boost *= s->echo;
					else
						e = s->echo;
				}
			}
			float depth = (rr - r0) / (r1 - r0);
			float att = 1.0f - 0.35f * depth;
			size_t i = (size_t)y * S + x;
			float mag = sqrtf(re[i] * re[i] + im[i] * im[i]) * inv_mean;
			float val = 230.0f * gain * att * boost * e * mag;
			if (val > 255)
				val = 255;
			px[(size_t)(v->crop_y + y) * W + v->crop_x + x] = (uint8_t)(val + 0.5f);
		}
	}
	free(re);
	free(im);
	free(tmp);
	if (ov)
		draw_measurement(v, px, seed, ov);
	draw_chrome(v, px, seed, ov);
	*out = px;
	return 0;
}
