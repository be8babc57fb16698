/*
 * NAME
 *	kernels.c - micro-benchmark of the fast-path kernels against their
 *	FP32 peers, measured in the same run
 *
 * SYNOPSIS
 *	bench/kernels.sh [threads] [reps]
 *
 * DESCRIPTION
 *	Convolutions (VGG16 3x3 shapes, batch 1): Winograd F(4x4, 3x3) versus
 *	im2col + cblas_sgemm with the same bias + ReLU pass. Fully connected
 *	layers: the BF16 GEMM (kern_bgemm.c, as the engine runs it) versus
 *	cblas_sgemv (batch 1) and versus
 *	cblas_sgemm computing W . X^T (batch 16). Each figure is the best of
 *	`reps` timed calls after one warm-up; GFLOPS are nominal (direct
 *	algorithm FLOP count / time) so the ratio column is the speed-up. The
 *	relative error column compares the fast result with the FP32 peer's
 *	(max |diff| / max |peer|). With threads > 1 OpenBLAS uses that many
 *	threads; the BF16 rows split output panels across as many pthreads.
 */
#define _GNU_SOURCE
#include "kern_fast.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *xalloc(size_t bytes)
{
	void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	return p;
}

static float *randf(size_t n, float scale)
{
	float *p = xalloc(n * sizeof(float));
	uint32_t s = 12345;
	for (size_t i = 0; i < n; i++) {
		s = s * 1664525u + 1013904223u;
		p[i] = ((s >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
	}
	return p;
}

static double relerr(const float *a, const float *b, size_t n)
{
	double m = 0, e = 0;
	for (size_t i = 0; i < n; i++) {
		if (fabs(b[i]) > m)
			m = fabs(b[i]);
		if (fabs(a[i] - b[i]) > e)
			e = fabs(a[i] - b[i]);
	}
	return m > 0 ? e / m : e;
}

/* ---------------- convolution ---------------- */

static void im2col3x3(const float *in, int c, int h, int w, float *col)
{
	/* pad 1, stride 1: rows (ch, r, s), columns (y, x) */
	for (int ch = 0; ch < c; ch++)
		for (int r = 0; r < 3; r++)
			for (int s = 0; s < 3; s++) {
				float *dst = col + ((size_t)(ch * 9 + r * 3 + s)) * h * w;
				const float *src = in + (size_t)ch * h * w;
				for (int y = 0; y < h; y++) {
					int yy = y + r - 1;
					float *d = dst + (size_t)y * w;
					if (yy < 0 || yy >= h) {
						memset(d, 0, w * sizeof(float));
						continue;
					}
					const float *srow = src + (size_t)yy * w;
					int x0 = s == 0 ? 1 : 0, x1 = s == 2 ? w - 1 : w;
					if (s == 0)
						d[0] = 0;
					if (s == 2)
						d[w - 1] = 0;
					memcpy(d + x0, srow + x0 + s - 1,
					       (x1 - x0) * sizeof(float));
				}
			}
}

static void bias_relu(float *y, const float *b, int k, size_t hw)
{
	for (int o = 0; o < k; o++)
		for (size_t i = 0; i < hw; i++) {
			float v = y[o * hw + i] + b[o];
			y[o * hw + i] = v > 0 ? v : 0;
		}
}

typedef struct cshape {
	const char *name;
	int c, k, hw;
} cshape;

static void bench_conv(const cshape *s, int threads, int reps)
{
	int h = s->hw, w = s->hw;
	float *in = randf((size_t)s->c * h * w, 1.0f);
	float *wt = randf((size_t)s->k * s->c * 9, 0.05f);
	float *b = randf(s->k, 0.1f);
	float *col = xalloc((size_t)s->c * 9 * h * w * sizeof(float));
	float *o1 = xalloc((size_t)s->k * h * w * sizeof(float));
	float *o2 = xalloc((size_t)s->k * h * w * sizeof(float));
	float *u = xalloc(usv__wino_weight_floats(4, s->k, s->c) * sizeof(float));
	size_t wsf = usv__wino_workspace_floats(4, 1, s->c, s->k, h, w);
	float *ws = xalloc(wsf * sizeof(float));
	usv__wino_transform_weights(4, wt, s->k, s->c, u);
	usv_wino_args a = {.n = 1,
	                   .c = s->c,
	                   .h = h,
	                   .w = w,
	                   .k = s->k,
	                   .pt = 1,
	                   .pb = 1,
	                   .pl = 1,
	                   .pr = 1,
	                   .u = u,
	                   .bias = b,
	                   .act = USV_ACT_RELU,
	                   .threads = threads};
	double best_g = 1e30, best_w = 1e30;
	for (int r = 0; r <= reps; r++) {
		double t0 = now();
		im2col3x3(in, s->c, h, w, col);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->k, h * w, s->c * 9, 1.0f,
		            wt, s->c * 9, col, h * w, 0.0f, o1, h * w);
		bias_relu(o1, b, s->k, (size_t)h * w);
		double t1 = now();
		usv__wino_conv(&a, in, o2, ws, wsf);
		double t2 = now();
		if (r > 0) {
			best_g = t1 - t0 < best_g ? t1 - t0 : best_g;
			best_w = t2 - t1 < best_w ? t2 - t1 : best_w;
		}
	}
	double flop = 2.0 * s->k * s->c * 9 * h * w;
	printf("%-10s %4d->%-4d %3dx%-3d  im2col+sgemm %7.2f ms %6.1f GF | winograd %7.2f ms "
	       "%6.1f GF | x%.2f | rel err %.1e\n",
	       s->name, s->c, s->k, h, w, best_g * 1e3, flop / best_g * 1e-9, best_w * 1e3,
	       flop / best_w * 1e-9, best_g / best_w, relerr(o2, o1, (size_t)s->k * h * w));
	fflush(stdout);
	free(in);
	free(wt);
	free(b);
	free(col);
	free(o1);
	free(o2);
	free(u);
	free(ws);
}

/* ---------------- fully connected ---------------- */

typedef struct bf16_part {
	const usv_bgemm_args *g;
	int nb0, nb1;
} bf16_part;

static void *bf16_thread(void *p)
{
	bf16_part *q = p;
	usv__bgemm(q->g, 0, (q->g->m + USV_BGEMM_MR - 1) / USV_BGEMM_MR, q->nb0, q->nb1);
	return NULL;
}

/* The engine's BF16 inner product: the batch packed as A, W^T prepacked as
 * B (panels of 32 outputs) split across threads by panels. */
static void bf16_run(const usv_bgemm_args *g, const float *x, uint16_t *ap, int threads)
{
	pthread_t th[16];
	bf16_part part[16];
	int nbt = (g->n + USV_BGEMM_NR - 1) / USV_BGEMM_NR;
	usv__bgemm_pack_a(x, g->k, 0, g->m, g->k, ap);
	for (int t = 0; t < threads; t++) {
		part[t].g = g;
		part[t].nb0 = nbt * t / threads;
		part[t].nb1 = nbt * (t + 1) / threads;
		if (t > 0)
			pthread_create(&th[t], NULL, bf16_thread, &part[t]);
	}
	bf16_thread(&part[0]);
	for (int t = 1; t < threads; t++)
		pthread_join(th[t], NULL);
}

typedef struct fshape {
	const char *name;
	int m, kd;
} fshape;

static void bench_fc(const fshape *s, int n, int threads, int reps)
{
	float *w = randf((size_t)s->m * s->kd, 0.01f);
	float *x = randf((size_t)n * s->kd, 1.0f);
	float *b = randf(s->m, 0.1f);
	float *y1 = xalloc((size_t)n * s->m * sizeof(float));
	float *yt = xalloc((size_t)n * s->m * sizeof(float));
	float *y2 = xalloc((size_t)n * s->m * sizeof(float));
	uint16_t *wb = xalloc(usv__bgemm_b_elems(s->kd, s->m) * sizeof(uint16_t));
	uint16_t *ap = xalloc(usv__bgemm_a_elems(n, s->kd) * sizeof(uint16_t));
	usv__bgemm_pack_b(w, s->kd, 1, s->kd, s->m, wb);
	usv_bgemm_args g = {.m = n,
	                    .n = s->m,
	                    .k = s->kd,
	                    .ap = ap,
	                    .bp = wb,
	                    .c = y2,
	                    .ldc = s->m,
	                    .bias = b,
	                    .bias_per_col = 1};
	double best_f = 1e30, best_b = 1e30;
	for (int r = 0; r <= reps; r++) {
		double t0 = now();
		if (n == 1) {
			memcpy(y1, b, s->m * sizeof(float));
			cblas_sgemv(CblasRowMajor, CblasNoTrans, s->m, s->kd, 1.0f, w, s->kd, x, 1,
			            1.0f, y1, 1);
		} else {
			/* W . X^T -> [m, n], then bias; transposed back for comparison */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->m, n, s->kd, 1.0f,
			            w, s->kd, x, s->kd, 0.0f, yt, n);
			for (int i = 0; i < s->m; i++)
				for (int j = 0; j < n; j++)
					y1[(size_t)j * s->m + i] = yt[(size_t)i * n + j] + b[i];
		}
		double t1 = now();
		bf16_run(&g, x, ap, threads);
		double t2 = now();
		if (r > 0) {
			best_f = t1 - t0 < best_f ? t1 - t0 : best_f;
			best_b = t2 - t1 < best_b ? t2 - t1 : best_b;
		}
	}
	double flop = 2.0 * s->m * s->kd * n;
	printf("%-14s b%-2d %5dx%-5d  fp32 %s %7.2f ms %6.1f GF | bf16 %7.2f ms %6.1f GF | x%.2f | "
	       "rel err %.1e\n",
	       s->name, n, s->m, s->kd, n == 1 ? "sgemv" : "sgemm", best_f * 1e3,
	       flop / best_f * 1e-9, best_b * 1e3, flop / best_b * 1e-9, best_f / best_b,
	       relerr(y2, y1, (size_t)n * s->m));
	fflush(stdout);
	free(w);
	free(x);
	free(b);
	free(y1);
	free(yt);
	free(y2);
	free(wb);
	free(ap);
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 1;
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	const char *only = argc > 3 ? argv[3] : "all";
	if (threads < 1 || threads > 16 || reps < 1)
		return 2;
	openblas_set_num_threads(threads);
	printf("# threads %d, best of %d; cpu features 0x%x, avx512 %d, bf16 %d\n", threads, reps,
	       usv__cpu_features(), usv__cpu_has_avx512(), usv__cpu_has_bf16());
	static const cshape convs[] = {
	    {"conv1_2", 64, 64, 224},  {"conv2_2", 128, 128, 112}, {"conv3_1", 128, 256, 56},
	    {"conv3_2", 256, 256, 56}, {"conv4_1", 256, 512, 28},  {"conv4_2", 512, 512, 28},
	    {"conv5_1", 512, 512, 14},
	};
	static const fshape fcs[] = {
	    {"caffenet fc6", 4096, 9216},
	    {"caffenet fc7", 4096, 4096},
	    {"vgg16 fc6", 4096, 25088},
	};
	if (strcmp(only, "fc") != 0)
		for (size_t i = 0; i < sizeof(convs) / sizeof(convs[0]); i++)
			bench_conv(&convs[i], threads, reps);
	if (strcmp(only, "conv") != 0) {
		if (!usv__cpu_has_bf16())
			printf("# no AVX512_BF16: the bf16 rows use the scalar fallback\n");
		for (size_t i = 0; i < sizeof(fcs) / sizeof(fcs[0]); i++)
			bench_fc(&fcs[i], 1, threads, reps);
		for (size_t i = 0; i < sizeof(fcs) / sizeof(fcs[0]); i++)
			bench_fc(&fcs[i], 16, threads, reps);
	}
	return 0;
}
