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

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

int usv_phantom_render(const usv_phantom_vendor *v, int view, uint64_t seed, uint8_t **out)
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
	/* annotations outside the crop box */
	char line[96];
	snprintf(line, sizeof line, "%s %s", v->manufacturer, v->model);
	usv_phantom_text(px, W, H, 8, 6, 2, 200, line);
	usv_phantom_text(px, W, H, 8, 26, 2, 200, "SYNTHETIC PHANTOM");
	snprintf(line, sizeof line, "%s", label);
	usv_phantom_text(px, W, H, 8, v->crop_y + S + 12, 2, 255, line);
	/* depth scale ticks right of the crop */
	for (int t = 0; t <= 10; t++) {
		int y = v->crop_y + t * (S - 1) / 10, x0 = v->crop_x + S + 6;
		for (int x = x0; x < x0 + (t % 5 ? 5 : 10) && x < W; x++)
			px[(size_t)y * W + x] = 180;
	}
	free(re);
	free(im);
	free(tmp);
	*out = px;
	return 0;
}
