/*
 * NAME
 *	nn_test_util.c - helpers shared by the nn unit tests
 */
#include "nn_test_util.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static uint64_t tu_state = 88172645463325252ull;

void tu_seed(uint64_t s)
{
	tu_state = s ? s : 1;
}

uint32_t tu_rand(void)
{
	tu_state ^= tu_state << 13;
	tu_state ^= tu_state >> 7;
	tu_state ^= tu_state << 17;
	return (uint32_t)(tu_state >> 32);
}

int tu_irand(int lo, int hi)
{
	return lo + (int)(tu_rand() % (uint32_t)(hi - lo + 1));
}

float tu_frand(void)
{
	return (float)tu_rand() / 2147483648.0f - 1.0f;
}

void tu_fill(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = tu_frand();
}

float *tu_alloc_rand(size_t n)
{
	float *p = malloc((n ? n : 1) * sizeof(float));
	assert_non_null(p);
	tu_fill(p, n);
	return p;
}

usv_netdef *tu_netdef(int c, int h, int w)
{
	usv_netdef *d;
	assert_int_equal(usv_netdef_new(&d), 0);
	usv_model_meta m;
	memset(&m, 0, sizeof m);
	snprintf(m.arch, sizeof m.arch, "custom");
	m.input_c = c, m.input_h = h, m.input_w = w;
	m.resize_h = h, m.resize_w = w;
	m.scale = 1.0f;
	assert_int_equal(usv_netdef_set_meta(d, &m), 0);
	return d;
}

void tu_layer(usv_netdef *d, const usv_layer_def *l, int in_c, int in_h, int in_w)
{
	assert_int_equal(usv_netdef_add_layer(d, l), 0);
	char tn[USV_NAME_MAX + 16];
	if (l->type == USV_LAYER_CONV) {
		int g = l->group ? l->group : 1;
		int64_t shp[4] = {l->num_output, in_c / g, l->kernel_h, l->kernel_w};
		size_t n = (size_t)shp[0] * shp[1] * shp[2] * shp[3];
		float *w = tu_alloc_rand(n);
		snprintf(tn, sizeof tn, "%s.weight", l->name);
		assert_int_equal(usv_netdef_add_tensor(d, tn, 4, shp, w), 0);
		free(w);
	} else if (l->type == USV_LAYER_FC) {
		int64_t shp[2] = {l->num_output, (int64_t)in_c * in_h * in_w};
		float *w = tu_alloc_rand((size_t)shp[0] * shp[1]);
		snprintf(tn, sizeof tn, "%s.weight", l->name);
		assert_int_equal(usv_netdef_add_tensor(d, tn, 2, shp, w), 0);
		free(w);
	} else {
		return;
	}
	if (l->has_bias) {
		int64_t n = l->num_output;
		float *b = tu_alloc_rand((size_t)n);
		snprintf(tn, sizeof tn, "%s.bias", l->name);
		assert_int_equal(usv_netdef_add_tensor(d, tn, 1, &n, b), 0);
		free(b);
	}
}

void tu_assert_close(const float *got, const float *ref, size_t n, float rtol, const char *what)
{
	float mref = 1e-3f, mdiff = 0.0f;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		float a = fabsf(ref[i]);
		mref = a > mref ? a : mref;
		float d = fabsf(got[i] - ref[i]);
		if (!(d <= mdiff)) {
			mdiff = d;
			at = i;
		}
	}
	if (!(mdiff <= rtol * mref)) {
		print_error("%s: max |diff| %g at %zu (got %g, ref %g), max |ref| %g\n", what,
		            (double)mdiff, at, (double)got[at], (double)ref[at], (double)mref);
		fail();
	}
}
