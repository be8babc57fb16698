/*
 * NAME
 *	cmd_classify.c - usview classify: classify PNG / JPEG / BMP files
 *
 * SYNOPSIS
 *	usview classify -m MODEL [--top K] [--json] [--threads T]
 *	                [--kernels default|portable|bf16|bf16-all] FILE...
 *
 * DESCRIPTION
 *	Each file is loaded as RGB, resized (area resampling) to the model's
 *	resize size, preprocessed by usv_preprocess() (crop, channel order,
 *	mean, scale) and run through one session; the output gets a softmax
 *	unless the model's output is already a probability. The probabilities
 *	are the mean over the test views (usv_preprocess_view(): --views 1
 *	the centre crop, 2 with its mirror, 10 the centre and the four
 *	corners, each mirrored; default the model's meta.test_views), as
 *	usviewd computes them; --view V shows view V alone.
 *	Text output: per file the line "FILE: LABEL PROB" for the best class,
 *	then for --top K > 1 one indented line "  #R LABEL PROB" per further
 *	class. --json: one JSON object per line and file: {"file", "top":
 *	[{"index", "label", "prob"}, ...]}.
 *	A file that cannot be read gives one line "usview classify: FILE:
 *	reason" on stderr; the others are still classified and the exit
 *	status is 1 at the end.
 *	--kernels picks the kernels the model is built with
 *	(usv_model_opts): default, portable (the FP32 reference:
 *	im2col/GEMM only), bf16 (BF16 inner products, as model.precision:
 *	bf16 in usviewd) or bf16-all (BF16 convolutions too, to evaluate on
 *	one's own images).
 */
#include "cli.h"
#include "opt.h"
#include "parse.h"

#include "usv/err.h"
#include "usv/image.h"
#include "usv/nn.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: usview classify -m MODEL [--top K] [--json] [--threads T]\n"
	           "                       [--kernels default|portable|bf16|bf16-all]\n"
	           "                       [--views 1|2|10 | --view V] FILE...\n");
}

/* Loads and resizes one file to the model's resize size into *out. */
static int prepare(const usv_model_meta *m, const char *path, usv_image **out, char *err,
                   size_t errlen)
{
	usv_image *img = NULL, *rs = NULL;
	int rc = usv_image_load(path, &img, err, errlen);
	if (rc < 0)
		return rc;
	if (img->w == m->resize_w && img->h == m->resize_h) {
		rs = img;
		img = NULL;
	} else if ((rc = usv_image_resize_area(img, m->resize_w, m->resize_h, &rs)) < 0) {
		usv_image_free(img);
		return usv_seterr(err, errlen, rc, "%s: resize: %s", path, usv_strerror(rc));
	}
	usv_image_free(img);
	*out = rs;
	return 0;
}

int usv_cmd_classify(int argc, char **argv)
{
	static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
	                                     {"top", required_argument, NULL, 'k'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"threads", required_argument, NULL, 't'},
	                                     {"kernels", required_argument, NULL, 'K'},
	                                     {"views", required_argument, NULL, 'V'},
	                                     {"view", required_argument, NULL, 'W'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *mpath = NULL;
	int top = 1, json = 0, threads = 1, wino = 1, bf16 = 0, views = 0, one_view = -1, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":m:k:jt:K:V:W:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mpath = optarg;
			break;
		case 'k':
			if (usv_opt_int("classify", "--top", optarg, 1, USV_MAX_LABELS, &top))
				return 2;
			break;
		case 'j':
			json = 1;
			break;
		case 't':
			if (usv_opt_int("classify", "--threads", optarg, 1, 256, &threads))
				return 2;
			break;
		case 'K':
			if (usv_parse_kernels(optarg, &wino, &bf16)) {
				fprintf(stderr,
				        "usview classify: --kernels: '%s' is not default, "
				        "portable, bf16 or bf16-all\n",
				        optarg);
				return 2;
			}
			break;
		case 'V':
			if (usv_opt_int("classify", "--views", optarg, 1, USV_MAX_VIEWS, &views))
				return 2;
			if (!usv_views_valid(views)) {
				fprintf(stderr, "usview classify: --views: %d is not 1, 2 or 10\n",
				        views);
				return 2;
			}
			break;
		case 'W':
			if (usv_opt_int("classify", "--view", optarg, 0, USV_MAX_VIEWS - 1,
			                &one_view))
				return 2;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("classify", c, argv);
		}
	}
	if (!mpath) {
		fprintf(stderr, "usview classify: --model: required\n");
		return 2;
	}
	if (optind >= argc) {
		fprintf(stderr, "usview classify: no image files\n");
		return 2;
	}
	char err[USV_ERRBUF];
	usv_model *model = NULL;
	usv_session *s = NULL;
	usv_model_opts mo = {.winograd = wino, .bf16 = bf16};
	if (usv_model_load_ex(mpath, &mo, &model, err, sizeof err) < 0) {
		fprintf(stderr, "usview classify: %s\n", err);
		return 1;
	}
	const usv_model_meta *m = usv_model_get_meta(model);
	usv_session_opts so = {.max_batch = 1, .threads = threads, .end_layer = m->output_layer};
	int rc = usv_session_new(model, &so, &s);
	if (rc < 0) {
		fprintf(stderr, "usview classify: %s: cannot create a session: %s\n", mpath,
		        usv_strerror(rc));
		usv_model_free(model);
		return 1;
	}
	size_t insz = (size_t)m->input_c * m->input_h * m->input_w;
	float *in = malloc(insz * sizeof *in);
	float *prob = NULL, *acc = NULL;
	int *idx = NULL;
	int failed = 0;
	if (!in) {
		fprintf(stderr, "usview classify: out of memory\n");
		failed = 1;
		goto out;
	}
	/* the views averaged: --view V alone, --views N, else the model's */
	if (!views)
		views = usv_views_valid(m->test_views) ? m->test_views : 1;
	int v0 = one_view >= 0 ? one_view : 0, v1 = one_view >= 0 ? one_view + 1 : views;
	for (int f = optind; f < argc; f++) {
		const char *path = argv[f];
		usv_image *rs = NULL;
		if (prepare(m, path, &rs, err, sizeof err) < 0) {
			fprintf(stderr, "usview classify: %s\n", err);
			failed = 1;
			continue;
		}
		int n = 0, bad = 0;
		for (int v = v0; v < v1 && !bad; v++) {
			const float *o;
			int chw[3], ox, oy, flip;
			usv_preprocess_view(m, v, &ox, &oy, &flip);
			if ((rc = usv_preprocess(m, rs->px, ox, oy, flip, in)) < 0 ||
			    (rc = usv_session_run(s, in, 1, &o, chw)) < 0) {
				fprintf(stderr, "usview classify: %s: view %d: %s\n", path, v,
				        usv_strerror(rc));
				bad = 1;
				break;
			}
			n = chw[0] * chw[1] * chw[2];
			if (!prob) {
				prob = malloc((size_t)n * sizeof *prob);
				acc = malloc((size_t)n * sizeof *acc);
				idx = malloc((size_t)n * sizeof *idx);
				if (!prob || !acc || !idx) {
					fprintf(stderr, "usview classify: out of memory\n");
					usv_image_free(rs);
					failed = 1;
					goto out;
				}
			}
			if (v == v0)
				memset(acc, 0, (size_t)n * sizeof *acc);
			memcpy(prob, o, (size_t)n * sizeof *prob);
			if (!m->output_is_prob)
				usv_softmax_t(prob, n, usv_model_temperature(model));
			for (int k = 0; k < n; k++)
				acc[k] += prob[k] / (float)(v1 - v0);
		}
		usv_image_free(rs);
		if (bad) {
			failed = 1;
			continue;
		}
		memcpy(prob, acc, (size_t)n * sizeof *prob);
		int k = top < n ? top : n;
		usv_topk(prob, n, k, idx);
		char lbl[32];
		if (json) {
			cJSON *j = cJSON_CreateObject();
			cJSON *arr = cJSON_AddArrayToObject(j, "top");
			cJSON_AddStringToObject(j, "file", path);
			for (int i = 0; i < k && arr; i++) {
				cJSON *e = cJSON_CreateObject();
				if (!e)
					break;
				cJSON_AddItemToArray(arr, e);
				cJSON_AddNumberToObject(e, "index", idx[i]);
				snprintf(lbl, sizeof lbl, "class %d", idx[i]);
				cJSON_AddStringToObject(e, "label",
				                        m->n_labels == n ? m->labels[idx[i]] : lbl);
				cJSON_AddNumberToObject(e, "prob", prob[idx[i]]);
			}
			char *txt = cJSON_PrintUnformatted(j);
			if (txt)
				printf("%s\n", txt);
			else
				failed = 1;
			free(txt);
			cJSON_Delete(j);
		} else {
			for (int i = 0; i < k; i++) {
				snprintf(lbl, sizeof lbl, "class %d", idx[i]);
				const char *l = m->n_labels == n ? m->labels[idx[i]] : lbl;
				if (i == 0)
					printf("%s: %s %.4f\n", path, l, prob[idx[i]]);
				else
					printf("  #%d %s %.4f\n", i + 1, l, prob[idx[i]]);
			}
		}
		fflush(stdout);
	}
out:
	free(in);
	free(prob);
	free(acc);
	free(idx);
	usv_session_free(s);
	usv_model_free(model);
	return failed ? 1 : 0;
}
