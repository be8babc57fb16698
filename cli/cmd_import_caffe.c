/*
 * NAME
 *	cmd_import_caffe.c - usview import-caffe: Caffe model to a usview model file
 *
 * SYNOPSIS
 *	usview import-caffe [--arch caffenet|vgg16] --prototxt P --weights W
 *	                    [--mean M] [--labels FILE] [--name TEXT] -o MODEL
 *
 * DESCRIPTION
 *	Without --arch the network is built from the deploy prototxt P; with
 *	it, the built-in architecture is filled with W's weights by layer
 *	name. --mean (BlobProto .binaryproto or .npy [3,H,W], BGR) becomes the
 *	mean image and H x W the resize size (Caffe: resize 256, centre crop
 *	227 / 224). See usv/import.h.
 */
#include "cli.h"
#include "opt.h"
#include "import_common.h"

#include "usv/err.h"
#include "usv/import.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: usview import-caffe [--arch caffenet|vgg16] --prototxt P --weights W\n"
	        "                           [--mean M] [--labels FILE] [--name TEXT] -o MODEL\n");
}

int usv_cmd_import_caffe(int argc, char **argv)
{
	static const struct option opts[] = {{"arch", required_argument, NULL, 'a'},
	                                     {"prototxt", required_argument, NULL, 'p'},
	                                     {"weights", required_argument, NULL, 'w'},
	                                     {"mean", required_argument, NULL, 'M'},
	                                     {"labels", required_argument, NULL, 'l'},
	                                     {"name", required_argument, NULL, 'n'},
	                                     {"output", required_argument, NULL, 'o'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *arch = NULL, *pt = NULL, *w = NULL, *mean = NULL, *labels = NULL, *name = NULL,
	           *out = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			arch = optarg;
			break;
		case 'p':
			pt = optarg;
			break;
		case 'w':
			w = optarg;
			break;
		case 'M':
			mean = optarg;
			break;
		case 'l':
			labels = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("import-caffe", c, argv);
		}
	}
	if (!pt || !w || !out) {
		fprintf(stderr, "usview import-caffe: %s: required\n",
		        !pt  ? "--prototxt"
		        : !w ? "--weights"
		             : "--output");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usview import-caffe: %s: unexpected argument\n", argv[optind]);
		return 2;
	}
	if (arch && strcmp(arch, "caffenet") && strcmp(arch, "vgg16")) {
		fprintf(stderr, "usview import-caffe: --arch: '%s' is not caffenet or vgg16\n",
		        arch);
		return 2;
	}
	usv_netdef *def = NULL;
	char err[USV_ERRBUF];
	if (usv_import_caffe(pt, w, arch, mean, &def, err, sizeof err) < 0) {
		fprintf(stderr, "usview import-caffe: %s\n", err);
		return 1;
	}
	const usv_cli_source src[] = {
	    {"prototxt", pt}, {"weights", w}, {"mean", mean}, {"labels", labels}};
	int rc = usv_cli_import_finish("import-caffe", def, "caffe", src, 4, labels, name, out);
	usv_netdef_free(def);
	return rc;
}
