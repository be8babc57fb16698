/*
 * NAME
 *	engine.c - whole-network timing of the kernel settings, measured in
 *	the same process and interleaved
 *
 * SYNOPSIS
 *	bench/engine.sh ARCH BATCH THREADS [ITERS] [BUILD_DIR]
 *
 * DESCRIPTION
 *	Builds the built-in network ARCH (random weights, seed 1) three times:
 *	portable kernels (usv_model_opts {0, 0}), Winograd {1, 0} and
 *	Winograd + BF16 inner products (1, 1); runs one warm-up forward each,
 *	then ITERS rounds that time one forward of every model in turn, so
 *	machine load affects all three alike. Prints the median and minimum
 *	milliseconds per image, the median process CPU time per image (less
 *	sensitive to other load; with threads > 1 it includes the pool's
 *	spinning), the speed-up against the portable model and
 *	the largest difference of the outputs (the logits: a final softmax is
 *	left out) relative to max |portable output|.
 */
#define _GNU_SOURCE
#include "usv/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NCFG 3

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: engine ARCH BATCH THREADS [ITERS]\n");
		return 2;
	}
	const char *arch = argv[1];
	int batch = atoi(argv[2]), threads = atoi(argv[3]);
	int iters = argc > 4 ? atoi(argv[4]) : 5;
	if (batch < 1 || batch > 256 || threads < 1 || threads > 64 || iters < 1 || iters > 1000)
		return 2;
	static const char *names[NCFG] = {"portable fp32", "winograd fp32", "winograd + bf16 fc"};
	static const int cfg[NCFG][2] = {{0, 0}, {1, 0}, {1, 1}};
	usv_model *m[NCFG] = {0};
	usv_session *s[NCFG] = {0};
	char eb[512];

	usv_nn_set_threads(1); /* sessions split their own work */
	for (int c = 0; c < NCFG; c++) {
		usv_netdef *d;
		if (usv_netdef_builtin(arch, 11, 1, &d)) {
			fprintf(stderr, "engine: unknown architecture %s\n", arch);
			return 2;
		}
		usv_model_opts mo = {.winograd = cfg[c][0], .bf16 = cfg[c][1]};
		if (usv_model_from_netdef_take_ex(d, &mo, &m[c], eb, sizeof eb)) {
			fprintf(stderr, "engine: %s\n", eb);
			return 1;
		}
		/* compare logits, not probabilities: stop before a final softmax */
		int nl = usv_model_n_layers(m[c]);
		const char *end = NULL;
		if (nl > 1 && strcmp(usv_model_layer_impl(m[c], nl - 1), "softmax") == 0)
			end = usv_model_layer_name(m[c], nl - 2);
		usv_session_opts so = {.max_batch = batch, .threads = threads, .end_layer = end};
		if (usv_session_new(m[c], &so, &s[c])) {
			fprintf(stderr, "engine: session failed\n");
			return 1;
		}
	}
	const usv_model_meta *mm = usv_model_get_meta(m[0]);
	size_t n = (size_t)batch * mm->input_c * mm->input_h * mm->input_w;
	float *x = malloc(n * sizeof(float));
	double *t = malloc((size_t)NCFG * iters * sizeof(double));
	double *ct = malloc((size_t)NCFG * iters * sizeof(double));
	if (!x || !t || !ct)
		return 1;
	uint64_t r = 12345;
	for (size_t i = 0; i < n; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = ((float)((r >> 40) % 256) - 128.0f) * mm->scale;
	}
	const float *y[NCFG];
	int chw[3];
	size_t outn = 0;
	for (int c = 0; c < NCFG; c++) {
		usv_session_run(s[c], x, batch, &y[c], chw);
		outn = (size_t)batch * chw[0] * chw[1] * chw[2];
	}
	for (int i = 0; i < iters; i++)
		for (int c = 0; c < NCFG; c++) {
			double a = now_ms(), ca = cpu_ms();
			usv_session_run(s[c], x, batch, &y[c], chw);
			t[c * iters + i] = now_ms() - a;
			ct[c * iters + i] = cpu_ms() - ca;
		}
	printf("%s batch %d threads %d, %d interleaved rounds\n", arch, batch, threads, iters);
	double base = 0;
	for (int c = 0; c < NCFG; c++) {
		qsort(t + c * iters, (size_t)iters, sizeof *t, cmp_d);
		qsort(ct + c * iters, (size_t)iters, sizeof *ct, cmp_d);
		double cmed = ct[c * iters + iters / 2] / batch;
		double med = t[c * iters + iters / 2] / batch, mn = t[c * iters] / batch;
		if (c == 0)
			base = med;
		double mref = 0, md = 0;
		for (size_t i = 0; i < outn; i++) {
			mref = fmax(mref, fabs(y[0][i]));
			md = fmax(md, fabs(y[c][i] - y[0][i]));
		}
		printf("  %-20s %8.2f ms/image (min %8.2f, cpu %8.2f)  x%.2f  output diff %.1e of "
		       "max |y| (%.3g)\n",
		       names[c], med, mn, cmed, base / med, mref > 0 ? md / mref : md, mref);
	}
	if (getenv("ENGINE_VERBOSE"))
		for (int i = 0; i < usv_model_n_layers(m[2]); i++)
			printf("  %-12s %-22s %-22s %s\n", usv_model_layer_name(m[0], i),
			       usv_model_layer_impl(m[0], i), usv_model_layer_impl(m[1], i),
			       usv_model_layer_impl(m[2], i));
	for (int c = 0; c < NCFG; c++) {
		usv_session_free(s[c]);
		usv_model_free(m[c]);
	}
	free(x);
	free(t);
	free(ct);
	return 0;
}
