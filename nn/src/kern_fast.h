/*
 * NAME
 *	kern_fast.h - fast-path kernels of the nn engine (internal, not installed)
 *
 * SYNOPSIS
 *	#include "kern_fast.h"
 *
 * DESCRIPTION
 *	Self-contained compute kernels that the layer code selects per layer
 *	at model/session setup. Each has a plain FP32 or scalar fallback; none
 *	allocates, prints or reads the environment. Buffers are owned by the
 *	caller (transformed weights by the model, workspaces by the session).
 *
 *	CPU features (cpu.c)
 *	    usv__cpu_features() returns the USV_CPU_* bits of the running CPU,
 *	    detected once with cpuid/xgetbv (the OS must save the AVX-512
 *	    state). usv__cpu_mask() hides bits, for tests and benchmarks.
 *	    Nothing in the engine assumes a feature at compile time.
 *
 *	Winograd F(m x m, 3x3), m = 4 or 6 (kern_winograd.c)
 *	    For 3x3 stride-1 convolutions, explicit padding 0..8; a grouped
 *	    convolution is one call per group (in_stride / out_stride step
 *	    over the other groups' channels).
 *	    The input is [n, c, h, w] and the output [n, k, oh, ow] with
 *	    oh = h + pt + pb - 2 and ow = w + pl + pr - 2 (both >= 1).
 *	    usv__wino_transform_weights() turns Caffe-order weights
 *	    [k, c, 3, 3] into usv__wino_weight_floats(m, k, c) floats ((m + 2)^2
 *	    matrices of k x c: U = G g G^T); done once at model load.
 *	    usv__wino_conv() transforms the input tiles (B^T d B), runs one
 *	    GEMM per matrix and chunk of tiles and transforms back (A^T m A)
 *	    with bias and the activation fused. m = 6 does 1.27 times fewer
 *	    multiplies per output than m = 4 and keeps 1.78 times the
 *	    transformed weights; its rounding error is about 3 times larger
 *	    (still near 1e-5 of max |output| at c = 512). It needs
 *	    usv__wino_workspace_floats() floats of workspace and never
 *	    allocates. Results differ from a direct convolution by rounding
 *	    only; the error grows with c (measured bounds in
 *	    tests/unit/kernels).
 *
 *	Packed BF16 GEMM (kern_bgemm.c): see its section below; kern_bf16.c
 *	has the FP32 <-> BF16 rounding.
 *
 * DIAGNOSTICS
 *	0, or -EINVAL on bad arguments or a too small workspace.
 */
#ifndef USV_NN_KERN_FAST_H
#define USV_NN_KERN_FAST_H

#include "usv/nn.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------- CPU features ---------------- */

enum {
	USV_CPU_AVX2 = 1u << 0,
	USV_CPU_FMA = 1u << 1,
	USV_CPU_AVX512F = 1u << 2,
	USV_CPU_AVX512BW = 1u << 3,
	USV_CPU_AVX512VL = 1u << 4,
	USV_CPU_AVX512BF16 = 1u << 5,
	USV_CPU_AVX512VNNI = 1u << 6,
};

unsigned usv__cpu_features(void);
/* Hides the `off` bits from usv__cpu_features() (0 shows all again). */
void usv__cpu_mask(unsigned off);
/* 1 if the AVX-512 BF16 kernels can run (F, BW, VL and BF16 present). */
int usv__cpu_has_bf16(void);
/* 1 if the AVX-512 F (+ FMA) kernels can run. */
int usv__cpu_has_avx512(void);

/* ---------------- Winograd F(4x4, 3x3) ---------------- */

typedef struct usv_wino_args {
	int n, c, h, w;     /* input, NCHW */
	int k;              /* output channels */
	int pt, pb, pl, pr; /* zero padding, 0..8 */
	int tile;           /* output tile side m: 4 or 6 (0: 4), as for the weights */
	const float *u;     /* usv__wino_transform_weights(tile, ...) output */
	const float *bias;  /* k values or NULL */
	usv_act act;
	int threads; /* threads to use, the caller's included; <= 1: the caller only */
	/* Optional fork-join runner (the session's thread pool): runs
	 * fn(ctx, task, thread) for task = 0 .. ntasks - 1 and returns when all
	 * are done. NULL: the call starts threads - 1 helper threads itself. */
	void (*par_run)(void *par, int ntasks, void (*fn)(void *ctx, int task, int thread),
	                void *ctx);
	void *par;
	long in_stride, out_stride; /* floats from image to image; 0: c*h*w, k*oh*ow */
	/* 1: the output is the 2x2 stride-2 max pooling of the convolution (after
	 * bias and activation): [n, k, oh / 2, ow / 2], oh and ow even, and
	 * out_stride counts pooled floats */
	int pool2;
	/* Optional per-thread workspaces (with par_run): the thread numbered t
	 * by par_run uses tws + t * tws_stride, tws_stride >=
	 * usv__wino_thread_workspace_floats(tile, c, k). With them, inputs with many
	 * tiles are split by tiles, each thread working alone (no barriers). */
	float *tws;
	size_t tws_stride;
} usv_wino_args;

/* 1 if a convolution of that geometry can use usv__wino_conv() (group by
 * group when group > 1). */
int usv__wino_applicable(int kernel_h, int kernel_w, int stride_h, int stride_w, int group);
/* Every size below is for F(m x m, 3x3), m = 4 or 6 (0 for other m). */
size_t usv__wino_weight_floats(int m, int k, int c);
/* w: [k, c, 3, 3]; u: usv__wino_weight_floats(m, k, c) floats. */
int usv__wino_transform_weights(int m, const float *w, int k, int c, float *u);
/* Per-thread workspace for the tile split (see usv_wino_args.tws). */
size_t usv__wino_thread_workspace_floats(int m, int c, int k);
/* Workspace of a call with up to n images (0 on bad arguments). */
size_t usv__wino_workspace_floats(int m, int n, int c, int k, int oh, int ow);
/* Size of a chunk of tiles (floats of V + M, default 256 Ki; a set value also
 * lowers the minimum chunk from 64 to 16 tiles): for tests and tuning only.
 * The workspace size depends on it, so set it before planning. <= 0 restores
 * the default. */
void usv__wino_set_chunk_floats(long floats);
/* in: [n, c, h, w]; out: [n, k, oh, ow]; out must not overlap in. */
int usv__wino_conv(const usv_wino_args *a, const float *in, float *out, float *ws,
                   size_t ws_floats);

/* ---------------- layer selection (kern_select.c) ---------------- */

struct usv_mlayer;
/* Called by the model build for every layer after usv__choose_impl(): may
 * switch L->impl to a fast kernel allowed by the model's options o (see
 * usv_model_opts in usv/nn.h) and set L->packed (free()d with the model).
 * Returns 0 (a layer that cannot be prepared keeps its implementation). */
int usv__fast_select(struct usv_mlayer *L, const usv_model_opts *o);

/* ---------------- BF16 rounding (kern_bf16.c) ---------------- */

/* Round-to-nearest-even FP32 -> BF16 and back. */
uint16_t usv__bf16_from_f32(float f);
float usv__bf16_to_f32(uint16_t b);

/* ---------------- packed BF16 GEMM (kern_bgemm.c) ---------------- */

/* C = act(A . B + bias) with A [m, k] and B [k, n] rounded to bfloat16 and
 * FP32 accumulation. Operands are packed once (A typically the weights,
 * B the activations) into usv__bgemm_a_elems() / usv__bgemm_b_elems()
 * uint16 values (caller-owned, 4-byte aligned); rows of A come in blocks of
 * USV_BGEMM_MR, columns of B in panels of USV_BGEMM_NR. */
#define USV_BGEMM_MR 12
#define USV_BGEMM_NR 32

size_t usv__bgemm_a_elems(int m, int k);
size_t usv__bgemm_b_elems(int k, int n);
/* a: element (i, kk) at a[i * lda + kk], or a[kk * lda + i] when trans. */
int usv__bgemm_pack_a(const float *a, long lda, int trans, int m, int k, uint16_t *ap);
/* b: element (kk, j) at b[kk * ldb + j], or b[j * ldb + kk] when trans. */
int usv__bgemm_pack_b(const float *b, long ldb, int trans, int k, int n, uint16_t *bp);
/* Packs rows 2q (r0) and 2q + 1 (r1; NULL: zeros) of a B with k rows and n
 * columns (for im2col producers that make B row by row). No checks. */
void usv__bgemm_pack_b_pair(const float *r0, const float *r1, int n, int k, int q, uint16_t *bp);

typedef struct usv_bgemm_args {
	int m, n, k;
	const uint16_t *ap, *bp; /* packed A and B */
	float *c;                /* element (i, j) at c[i * ldc + j] */
	long ldc;                /* >= n */
	const float *bias;       /* NULL, m values (per row) or n (bias_per_col) */
	int bias_per_col;
	usv_act act;
	int accumulate; /* 1: C += A . B (bias and act applied after) */
} usv_bgemm_args;

/* Computes row blocks [mb0, mb1) (units of USV_BGEMM_MR rows) times column
 * panels [nb0, nb1) (units of USV_BGEMM_NR) of C: disjoint rectangles may
 * run on different threads. AVX512_BF16 where the CPU has it, else the
 * scalar loop of usv__bgemm_ref(). 0 or -EINVAL. */
int usv__bgemm(const usv_bgemm_args *g, int mb0, int mb1, int nb0, int nb1);
int usv__bgemm_ref(const usv_bgemm_args *g, int mb0, int mb1, int nb0, int nb1);

#endif
