/*
 * NAME
 *	ocr_bench - cost of reading a frame's annotations and caliper marks
 *
 * SYNOPSIS
 *	ocr_bench [FRAMES [THREADS]]
 *
 * DESCRIPTION
 *	Renders FRAMES (default 40) EPIQ-like 1024 x 768 RGB frames: speckle
 *	in the central 600 x 600 box with two '+' calipers and a dotted line,
 *	five settings lines on the left, a heart rate on the right, a view
 *	label under the box (5 x 7 font at scale 2 and 3) and a name in the
 *	top banner. Each frame goes through what harvesting does per frame
 *	beyond decoding: usv_crop_choose(), usv_annot_areas(),
 *	usv_ocr_read_box() on every area and usv_annot_find_calipers().
 *	For 1 .. THREADS threads (default 2), each with its own usv_ocr,
 *	prints frames per second (wall clock), and per frame and per line the
 *	wall and CPU milliseconds (CPU: the threads' own time, which a loaded
 *	machine does not inflate), the share of the OCR in the CPU time and
 *	the Tesseract start of one thread (left out of the wall clock).
 *
 *	Built and run by bench/ocr_bench.sh. Not a test: no thresholds.
 */
#define _POSIX_C_SOURCE 200809L
#include "phantom.h"
#include "usv/annot.h"
#include "usv/crop.h"
#include "usv/ocr.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { W = 1024, H = 768 };

static const char *labels[] = {"RT KIDNEY LONG", "LT KIDNEY TRANS", "GALLBLADDER",
                               "RT LIVER TRANS", "SPLEEN LONG",     "PANCREAS TR"};

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint8_t *render(int i)
{
	uint8_t *g = calloc((size_t)W * H, 1);
	uint8_t *rgb = malloc((size_t)W * H * 3);
	if (!g || !rgb) {
		free(g);
		free(rgb);
		return NULL;
	}
	uint32_t s = 12345u + (uint32_t)i * 7919u;
	for (int y = 84; y < 684; y++)
		for (int x = 212; x < 812; x++) {
			s = s * 1664525u + 1013904223u;
			unsigned r = (s >> 24) & 255;
			g[(size_t)y * W + x] =
			    (uint8_t)(r * r / 400 + (y > 300 && y < 420 ? 50 : 0));
		}
	for (int k = -4; k <= 4; k++) {
		g[(size_t)(200 + k) * W + 400] = g[(size_t)200 * W + 400 + k] = 255;
		g[(size_t)(254 + k) * W + 472] = g[(size_t)254 * W + 472 + k] = 255;
	}
	for (int d = 1; d < 10; d++)
		for (int a = 0; a < 4; a++)
			g[(size_t)(200 + d * 6 + a / 2) * W + 400 + d * 8 + a % 2] = 255;
	usv_phantom_text(g, W, H, 10, 10, 3, 255, "DOE^JANE 1234567");
	static const char *left[] = {"C5-1", "28HZ", "16CM", "GN 60", "2D 64"};
	for (int k = 0; k < 5; k++)
		usv_phantom_text(g, W, H, 12, 130 + 26 * k, 2, 255, left[k]);
	usv_phantom_text(g, W, H, 900, 700, 2, 230, "65BPM");
	usv_phantom_text(g, W, H, 380, 720, 3, 255, labels[i % 6]);
	for (size_t p = 0; p < (size_t)W * H; p++)
		rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = g[p];
	free(g);
	return rgb;
}

typedef struct job {
	uint8_t **frames;
	int first, count;
	double cpu_all, cpu_ocr, init;
	long lines;
	int crosses, dotted, fail;
} job;

static void *work(void *arg)
{
	job *j = arg;
	char err[256];
	usv_ocr *o;
	double i0 = mono();
	int rc = usv_ocr_new(NULL, &o, err, sizeof err);
	j->init = mono() - i0;
	if (rc != 0) {
		fprintf(stderr, "ocr_bench: %s\n", err);
		j->fail = 1;
		return NULL;
	}
	size_t ncr, nar;
	const usv_crop_rule *cr = usv_crop_default_rules(&ncr);
	const usv_annot_rule *ar = usv_annot_default_rules(&nar);
	usv_crop_attrs a = {"Philips Medical Systems", "EPIQ 7G", H, W, NULL, 0};
	double c0 = cpu();
	for (int f = j->first; f < j->first + j->count; f++) {
		usv_image img = {W, H, 3, j->frames[f]};
		usv_box us, areas[USV_ANNOT_MAX_AREAS];
		enum usv_crop_source src;
		size_t na, n;
		usv_ocr_line lines[USV_OCR_MAX_LINES];
		if (usv_crop_choose(cr, ncr, &a, &us, &src, NULL) != 0 ||
		    usv_annot_areas(ar, nar, &a, &us, areas, USV_ANNOT_MAX_AREAS, &na) != 0) {
			j->fail = 1;
			break;
		}
		double o0 = cpu();
		for (size_t k = 0; k < na; k++) {
			if (usv_ocr_read_box(o, &img, &areas[k], lines, USV_OCR_MAX_LINES, &n, err,
			                     sizeof err) != 0) {
				j->fail = 1;
				break;
			}
			j->lines += (long)n;
		}
		j->cpu_ocr += cpu() - o0;
		usv_caliper_report rep;
		if (usv_annot_find_calipers(&img, &us, &rep) != 0)
			j->fail = 1;
		j->crosses += rep.crosses;
		j->dotted += rep.dotted_lines;
	}
	j->cpu_all = cpu() - c0;
	usv_ocr_free(o);
	return NULL;
}

int main(int argc, char **argv)
{
	int nf = argc > 1 ? atoi(argv[1]) : 40;
	int maxt = argc > 2 ? atoi(argv[2]) : 2;
	if (nf < 1 || nf > 10000 || maxt < 1 || maxt > 64) {
		fprintf(stderr, "usage: ocr_bench [FRAMES [THREADS]]\n");
		return 2;
	}
	uint8_t **frames = calloc((size_t)nf, sizeof *frames);
	for (int i = 0; i < nf; i++)
		if (!(frames[i] = render(i))) {
			fprintf(stderr, "ocr_bench: out of memory\n");
			return 1;
		}
	printf("%-8s %7s %9s %10s %10s %9s %9s %7s %-11s %s\n", "threads", "frames", "frames/s",
	       "wall/frame", "cpu/frame", "cpu/line", "lines/fr", "ocr%", "marks/frame", "init");
	for (int t = 1; t <= maxt; t++) {
		job *jobs = calloc((size_t)t, sizeof *jobs);
		pthread_t *th = calloc((size_t)t, sizeof *th);
		int per = nf / t, rest = nf % t, at = 0;
		for (int k = 0; k < t; k++) {
			jobs[k] = (job){.frames = frames, .first = at, .count = per + (k < rest)};
			at += jobs[k].count;
		}
		double w0 = mono();
		for (int k = 0; k < t; k++)
			pthread_create(&th[k], NULL, work, &jobs[k]);
		for (int k = 0; k < t; k++)
			pthread_join(th[k], NULL);
		double wall = mono() - w0;
		double c = 0, co = 0, init = 0;
		long lines = 0;
		int crosses = 0, dotted = 0, fail = 0;
		for (int k = 0; k < t; k++) {
			c += jobs[k].cpu_all;
			co += jobs[k].cpu_ocr;
			lines += jobs[k].lines;
			crosses += jobs[k].crosses;
			dotted += jobs[k].dotted;
			fail |= jobs[k].fail;
			init = jobs[k].init > init ? jobs[k].init : init;
		}
		if (fail) {
			fprintf(stderr, "ocr_bench: a step failed\n");
			return 1;
		}
		/* each thread's Tesseract start (once per thread) is left out */
		wall -= init;
		printf("%-8d %7d %9.1f %8.1fms %8.1fms %7.2fms %9.1f %6.0f%% %d+ %d.. %6.0fms\n", t,
		       nf, nf / wall, 1e3 * wall * t / nf, 1e3 * c / nf,
		       lines ? 1e3 * co / lines : 0.0, (double)lines / nf,
		       c > 0 ? 100 * co / c : 0.0, crosses / nf, dotted / nf, 1e3 * init);
		free(jobs);
		free(th);
	}
	for (int i = 0; i < nf; i++)
		free(frames[i]);
	free(frames);
	return 0;
}
