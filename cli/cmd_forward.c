/*
 * NAME
 *	cmd_forward.c - `usview forward -m MODEL --in X.npy [--layer NAME]
 *	--out Y.npy [--threads T] [--kernels default|portable|bf16|bf16-all]`: run the
 *	network on a ready-made input tensor
 *
 * DESCRIPTION
 *	X is float32 [N, C, H, W] (or [C, H, W] for one image) already
 *	preprocessed; Y receives [N, c, h, w] of the named layer (default:
 *	the model's last layer). --kernels picks the kernels the model
 *	is built with (usv_model_opts): default, portable (the
 *	FP32 reference: im2col/GEMM only) or bf16 (the BF16 fast paths).
 */
#include "cli.h"
#include "opt.h"
#include "parse.h"

#include "usv/err.h"
#include "usv/nn.h"
#include "usv/npy.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: usview forward -m MODEL --in X.npy [--layer NAME] --out Y.npy [--threads T]\n"
	    "                      [--kernels default|portable|bf16|bf16-all]\n");
}

int usv_cmd_forward(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"model", required_argument, NULL, 'm'},   {"in", required_argument, NULL, 'i'},
	    {"out", required_argument, NULL, 'o'},     {"layer", required_argument, NULL, 'l'},
	    {"threads", required_argument, NULL, 't'}, {"kernels", required_argument, NULL, 'K'},
	    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
	const char *model = NULL, *in = NULL, *out = NULL, *layer = NULL;
	int threads = 1, wino = 1, bf16 = 0, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":m:i:o:l:t:K:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			model = optarg;
			break;
		case 'i':
			in = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'l':
			layer = optarg;
			break;
		case 't':
			if (usv_opt_int("forward", "--threads", optarg, 1, 256, &threads))
				return 2;
			break;
		case 'K':
			if (usv_parse_kernels(optarg, &wino, &bf16)) {
				fprintf(stderr,
				        "usview forward: --kernels: '%s' is not default, "
				        "portable, bf16 or bf16-all\n",
				        optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("forward", c, argv);
		}
	}
	if (!model || !in || !out) {
		fprintf(stderr, "usview forward: %s: required\n",
		        !model ? "--model"
		        : !in  ? "--in"
		               : "--out");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usview forward: %s: unexpected argument\n", argv[optind]);
		return 2;
	}
	char eb[USV_ERRBUF];
	usv_model *m = NULL;
	usv_session *s = NULL;
	float *x = NULL;
	int rc = 1;
	usv_model_opts mo = {.winograd = wino, .bf16 = bf16};
	if (usv_model_load_ex(model, &mo, &m, eb, sizeof eb)) {
		fprintf(stderr, "usview forward: %s\n", eb);
		return 1;
	}
	const usv_model_meta *mm = usv_model_get_meta(m);
	int nd;
	int64_t shp[USV_NPY_MAX_DIMS];
	if (usv_npy_read(in, &x, &nd, shp, eb, sizeof eb)) {
		fprintf(stderr, "usview forward: %s\n", eb);
		goto out;
	}
	int64_t n = nd == 4 ? shp[0] : 1;
	const int64_t *chw = nd == 4 ? shp + 1 : shp;
	if ((nd != 3 && nd != 4) || chw[0] != mm->input_c || chw[1] != mm->input_h ||
	    chw[2] != mm->input_w || n < 1 || n > 4096) {
		fprintf(stderr, "usview forward: %s: shape is not [N, %d, %d, %d]\n", in,
		        mm->input_c, mm->input_h, mm->input_w);
		goto out;
	}
	usv_session_opts so = {.max_batch = (int)n, .threads = threads, .end_layer = layer};
	int e = usv_session_new(m, &so, &s);
	if (e) {
		fprintf(stderr, "usview forward: %s: %s\n", layer && e == -ENOENT ? layer : model,
		        e == -ENOENT ? "no such layer" : usv_strerror(e));
		goto out;
	}
	const float *y;
	int ochw[3];
	if ((e = usv_session_run(s, x, (int)n, &y, ochw))) {
		fprintf(stderr, "usview forward: %s: %s\n", model, usv_strerror(e));
		goto out;
	}
	int64_t os[4] = {n, ochw[0], ochw[1], ochw[2]};
	if (usv_npy_write(out, y, 4, os, eb, sizeof eb)) {
		fprintf(stderr, "usview forward: %s\n", eb);
		goto out;
	}
	rc = 0;
out:
	free(x);
	usv_session_free(s);
	usv_model_free(m);
	return rc;
}
