/*
 * NAME
 *	cmd_bench.c - `usview bench`: inference speed of a built-in
 *	architecture (random weights) or of a model file
 *
 * DESCRIPTION
 *	usview bench --arch caffenet|vgg16|mobilenet_v1|mobilenet_v2
 *	    [--model FILE] --batch B --threads T [--iters N] [--warmup W]
 *	    [--classes K] [--json]
 *	    [--profile] [--save FILE] [--kernels default|portable|bf16|bf16-all]
 *	    [--views 1|2|10]
 *	--kernels portable: im2col/GEMM only (no Winograd); bf16: BF16 inner
 *	products; bf16-all: BF16 convolutions too (see usv_model_opts in usv/nn.h).
 *	Runs W warm-up forwards, then N timed forwards of a batch of B random
 *	images, and reports the median (and min) time per image, images per
 *	second and the peak resident set size of the process (getrusage).
 *	--views V: each image is V network inputs (model.test_views: the
 *	test-time views averaged), so the times per image include them.
 */
#include "cli.h"
#include "opt.h"
#include "parse.h"

#include "usv/err.h"
#include "usv/nn.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: usview bench (--arch caffenet|vgg16|mobilenet_v1|mobilenet_v2 | --model "
	       "FILE)\n"
	       "                    [--batch B] [--threads T] [--iters N] [--warmup W] "
	       "[--classes K] [--json] [--profile]\n                    [--save FILE]   "
	       "(--arch only: also write the random-weight model)\n"
	       "                    [--kernels default|portable|bf16|bf16-all] [--views 1|2|10]\n");
}

int usv_cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"arch", required_argument, NULL, 'a'},    {"model", required_argument, NULL, 'm'},
	    {"batch", required_argument, NULL, 'b'},   {"threads", required_argument, NULL, 't'},
	    {"iters", required_argument, NULL, 'n'},   {"warmup", required_argument, NULL, 'w'},
	    {"classes", required_argument, NULL, 'k'}, {"json", no_argument, NULL, 'j'},
	    {"save", required_argument, NULL, 's'},    {"kernels", required_argument, NULL, 'K'},
	    {"profile", no_argument, NULL, 'p'},       {"views", required_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
	const char *arch = NULL, *model = NULL, *save = NULL, *kern = "default";
	int batch = 1, threads = 1, iters = 10, warmup = 2, classes = 11, json = 0, prof = 0, c;
	int views = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":a:m:b:t:n:w:k:jps:K:V:h", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'a':
			arch = optarg;
			break;
		case 'm':
			model = optarg;
			break;
		case 'b':
			bad = usv_opt_int("bench", "--batch", optarg, 1, 1024, &batch);
			break;
		case 't':
			bad = usv_opt_int("bench", "--threads", optarg, 1, 256, &threads);
			break;
		case 'n':
			bad = usv_opt_int("bench", "--iters", optarg, 1, 100000, &iters);
			break;
		case 'w':
			bad = usv_opt_int("bench", "--warmup", optarg, 0, 1000, &warmup);
			break;
		case 'k':
			bad =
			    usv_opt_int("bench", "--classes", optarg, 1, USV_MAX_LABELS, &classes);
			break;
		case 'j':
			json = 1;
			break;
		case 'V':
			bad = usv_opt_int("bench", "--views", optarg, 1, USV_MAX_VIEWS, &views);
			if (!bad && !usv_views_valid(views)) {
				fprintf(stderr, "usview bench: --views: %d is not 1, 2 or 10\n",
				        views);
				bad = 1;
			}
			break;
		case 'p':
			prof = 1;
			break;
		case 's':
			save = optarg;
			break;
		case 'K':
			kern = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("bench", c, argv);
		}
		if (bad)
			return 2;
	}
	if ((!arch) == (!model)) {
		fprintf(stderr, "usview bench: give exactly one of --arch and --model\n");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usview bench: %s: unexpected argument\n", argv[optind]);
		return 2;
	}
	int wino, bf16;
	if (usv_parse_kernels(kern, &wino, &bf16)) {
		fprintf(stderr,
		        "usview bench: --kernels: '%s' is not default, portable, bf16 or "
		        "bf16-all\n",
		        kern);
		return 2;
	}
	usv_model_opts mo = {.winograd = wino, .bf16 = bf16};
	char eb[USV_ERRBUF];
	usv_model *m = NULL;
	double t0 = now_ms();
	if (model) {
		if (usv_model_load_ex(model, &mo, &m, eb, sizeof eb)) {
			fprintf(stderr, "usview bench: %s\n", eb);
			return 1;
		}
	} else {
		usv_netdef *d;
		int e = usv_netdef_builtin(arch, classes, 1, &d);
		if (e) {
			fprintf(stderr, "usview bench: %s: %s\n", arch,
			        e == -USV_ERR_UNSUPPORTED ? "unknown architecture"
			                                  : usv_strerror(e));
			return e == -USV_ERR_UNSUPPORTED ? 2 : 1;
		}
		if (save && usv_netdef_write(d, save, eb, sizeof eb)) {
			fprintf(stderr, "usview bench: %s\n", eb);
			usv_netdef_free(d);
			return 1;
		}
		if (usv_model_from_netdef_take_ex(d, &mo, &m, eb, sizeof eb)) {
			fprintf(stderr, "usview bench: %s\n", eb);
			return 1;
		}
	}
	double load_ms = now_ms() - t0;
	const usv_model_meta *mm = usv_model_get_meta(m);
	usv_session *s;
	/* each image runs as its views: batch x views network inputs */
	int inputs = batch * views;
	usv_session_opts so = {.max_batch = inputs, .threads = threads, .profile = prof};
	int e = usv_session_new(m, &so, &s);
	if (e) {
		fprintf(stderr, "usview bench: session: %s\n", usv_strerror(e));
		usv_model_free(m);
		return 1;
	}
	size_t n = (size_t)inputs * mm->input_c * mm->input_h * mm->input_w;
	float *x = malloc(n * sizeof(float));
	double *t = malloc((size_t)iters * sizeof(double));
	if (!x || !t) {
		fprintf(stderr, "usview bench: out of memory\n");
		free(x);
		free(t);
		usv_session_free(s);
		usv_model_free(m);
		return 1;
	}
	uint64_t r = 12345;
	for (size_t i = 0; i < n; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = (float)((r >> 40) % 256) - 128.0f;
		x[i] *= mm->scale;
	}
	const float *y;
	int chw[3];
	for (int i = 0; i < warmup; i++)
		usv_session_run(s, x, inputs, &y, chw);
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	for (int i = 0; i < iters; i++) {
		double a = now_ms();
		usv_session_run(s, x, inputs, &y, chw);
		t[i] = now_ms() - a;
	}
	getrusage(RUSAGE_SELF, &r1);
	double cpu_ms = ((r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1e3 +
	                 (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e3 +
	                 (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e3 +
	                 (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e3) /
	                ((double)iters * batch);
	qsort(t, (size_t)iters, sizeof *t, cmp_d);
	double med = iters % 2 ? t[iters / 2] : (t[iters / 2 - 1] + t[iters / 2]) / 2;
	double ms_img = med / batch, min_img = t[0] / batch;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double rss = ru.ru_maxrss / 1024.0;
	const char *an = arch ? arch : mm->arch;
	if (json)
		printf("{\"arch\":\"%s\",\"batch\":%d,\"views\":%d,\"threads\":%d,\"iters\":%d,"
		       "\"ms_per_image\":%.3f,\"ms_per_image_min\":%.3f,\"ms_per_batch\":%.3f,"
		       "\"images_per_s\":%.2f,\"peak_rss_mb\":%.1f,\"load_ms\":%.1f,"
		       "\"cpu_ms_per_image\":%.3f}\n",
		       an, batch, views, threads, iters, ms_img, min_img, med, 1000.0 / ms_img, rss,
		       load_ms, cpu_ms);
	else
		printf("%s batch %d%s%s threads %d: %.2f ms/image (median of %d, min %.2f), %.1f "
		       "images/s, peak RSS %.0f MiB, CPU %.2f ms/image\n",
		       an, batch, views > 1 ? " views " : "",
		       views > 1 ? (views == 2 ? "2" : "10") : "", threads, ms_img, iters, min_img,
		       1000.0 / ms_img, rss, cpu_ms);
	const double *lm = usv_session_layer_ms(s);
	for (int i = 0; lm && i < usv_model_n_layers(m); i++)
		fprintf(stderr, "  %-22s %-24s %8.3f ms/image\n", usv_model_layer_name(m, i),
		        usv_model_layer_impl(m, i), lm[i] / ((double)(warmup + iters) * batch));
	free(x);
	free(t);
	usv_session_free(s);
	usv_model_free(m);
	return 0;
}
