/*
 * NAME
 *	cmd_model_info.c - `usview model-info MODEL`: what a model file holds
 *
 * DESCRIPTION
 *	Prints the metadata (architecture, input and resize size, channel
 *	order, mean, scale, labels, output layer, SHA-256 of the file,
 *	provenance) and one line per layer: name, type, inputs, output shape
 *	per image and the kernel the engine chose.
 */
#include "cli.h"
#include "opt.h"

#include "usv/err.h"
#include "usv/nn.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char *type_name(usv_layer_type t)
{
	static const char *const n[] = {"?",       "conv",    "relu",   "relu6",  "lrn",
	                                "maxpool", "avepool", "gap",    "fc",     "softmax",
	                                "add",     "dropout", "concat", "flatten"};
	return (int)t > 0 && (size_t)t < sizeof n / sizeof n[0] ? n[t] : "?";
}

static void usage(FILE *f)
{
	fprintf(f, "usage: usview model-info MODEL\n");
}

int usv_cmd_model_info(int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c != 'h')
			return usv_opt_fail("model-info", c, argv);
		usage(stdout);
		return 0;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usview model-info: %s\n",
		        optind >= argc ? "no model file" : "give exactly one model file");
		return 2;
	}
	const char *path = argv[optind];
	usv_model *m;
	char eb[USV_ERRBUF];
	if (usv_model_load(path, &m, eb, sizeof eb)) {
		fprintf(stderr, "usview model-info: %s\n", eb);
		return 1;
	}
	const usv_model_meta *mm = usv_model_get_meta(m);
	printf("file:          %s\n", path);
	printf("sha256:        %s\n", mm->sha256);
	printf("arch:          %s\n", mm->arch);
	printf("name:          %s\n", mm->name);
	printf("input:         %d x %d x %d (C x H x W)\n", mm->input_c, mm->input_h, mm->input_w);
	printf("resize:        %d x %d\n", mm->resize_h, mm->resize_w);
	printf("channel order: %s\n", mm->channel_order == USV_BGR ? "BGR" : "RGB");
	printf("mean:          %s [%g, %g, %g]\n", mm->mean_image ? "image" : "per channel",
	       (double)mm->mean_rgb[0], (double)mm->mean_rgb[1], (double)mm->mean_rgb[2]);
	printf("scale:         %g\n", (double)mm->scale);
	printf("output:        %s%s\n", mm->output_layer ? mm->output_layer : "(last)",
	       mm->output_is_prob ? " (probabilities)" : "");
	printf("temperature:   %g%s\n", (double)usv_model_temperature(m),
	       usv_model_temperature(m) == 1.0f ? " (uncalibrated softmax)"
	                                        : " (calibrated: softmax(logits / T))");
	printf("labels (%d):", mm->n_labels);
	for (int i = 0; i < mm->n_labels; i++)
		printf(" %s%s", mm->labels[i], i + 1 < mm->n_labels ? "," : "");
	printf("\nprovenance:    %s\n", mm->provenance_json ? mm->provenance_json : "(none)");
	printf("layers (%d):\n", usv_model_n_layers(m));
	printf("  %-4s %-22s %-8s %-28s %-18s %s\n", "#", "name", "type", "inputs", "output CxHxW",
	       "kernel");
	for (int i = 0; i < usv_model_n_layers(m); i++) {
		const usv_layer_def *l = usv_model_layer(m, i);
		char ins[256] = "";
		size_t o = 0;
		for (int k = 0; k < l->n_inputs && o < sizeof ins; k++)
			o += (size_t)snprintf(ins + o, sizeof ins - o, "%s%s", k ? "," : "",
			                      l->inputs[k]);
		int chw[3];
		usv_model_layer_shape(m, l->name, chw);
		char shp[48];
		snprintf(shp, sizeof shp, "%dx%dx%d", chw[0], chw[1], chw[2]);
		printf("  %-4d %-22s %-8s %-28s %-18s %s\n", i, l->name, type_name(l->type), ins,
		       shp, usv_model_layer_impl(m, i));
	}
	usv_model_free(m);
	return 0;
}
