/*
 * NAME
 *	cmd_import_tflite.c - usview import-tflite: TFLite model to a usview model file
 *
 * SYNOPSIS
 *	usview import-tflite FILE [--head FILE] [--labels FILE] [--name TEXT] -o MODEL
 *
 * DESCRIPTION
 *	Reads a (uint8-quantized or float) TFLite flatbuffer; --head appends a
 *	second model fed by the first one's output (Coral embedding extractor
 *	+ head layers). Weights are dequantized to float. The input
 *	preprocessing comes from the input tensor's quantization: RGB, resize
 *	straight to the input size, (x - zero_point) * scale, e.g. (x - 128) /
 *	128 for the MobileNet files. See usv/import.h.
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
	fprintf(f, "usage: usview import-tflite FILE [--head FILE] [--labels FILE] [--name TEXT] "
	           "-o MODEL\n");
}

int usv_cmd_import_tflite(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"head", required_argument, NULL, 'H'}, {"labels", required_argument, NULL, 'l'},
	    {"name", required_argument, NULL, 'n'}, {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
	const char *head = NULL, *labels = NULL, *name = NULL, *out = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			head = optarg;
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
			return usv_opt_fail("import-tflite", c, argv);
		}
	}
	if (!out) {
		fprintf(stderr, "usview import-tflite: --output: required\n");
		return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usview import-tflite: %s\n",
		        optind >= argc ? "no TFLite file" : "give exactly one TFLite file");
		return 2;
	}
	const char *path = argv[optind];
	usv_netdef *def = NULL;
	char err[USV_ERRBUF];
	if (usv_import_tflite(path, head, &def, err, sizeof err) < 0) {
		fprintf(stderr, "usview import-tflite: %s\n", err);
		return 1;
	}
	const usv_cli_source src[] = {{"model", path}, {"head", head}, {"labels", labels}};
	int rc = usv_cli_import_finish("import-tflite", def, "tflite", src, 3, labels, name, out);
	usv_netdef_free(def);
	return rc;
}
