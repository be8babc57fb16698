/*
 * usview - command-line tool of the usview ultrasound view classifier.
 */
#include "cli.h"
#include "harvest.h"

#include <stdio.h>
#include <string.h>

#include "usv/nn.h"
#include "usv/version.h"

/* One row per subcommand; keep sorted by name. */
static const usv_cli_cmd commands[] = {
    {"bench", usv_cmd_bench, "inference speed of a built-in network or a model file"},
    {"classify", usv_cmd_classify, "classify PNG / JPEG / BMP files with a model"},
    {"compare", usv_cmd_compare, "chi-square / McNemar test of two classifiers' accuracy"},
    {"eval", usv_cmd_eval, "accuracy, confusion matrix, AUC of a model on a labelled dataset"},
    {"forward", usv_cmd_forward, "run a model on an input .npy, write a layer's output .npy"},
    {"harvest", usv_cmd_harvest,
     "labelled training CSV from an archive: DICOM labels, OCR, exclusions"},
    {"import-caffe", usv_cmd_import_caffe, "Caffe prototxt + caffemodel to a model file"},
    {"import-tflite", usv_cmd_import_tflite, "TFLite model (+ head) to a model file"},
    {"model-info", usv_cmd_model_info, "metadata and layers of a model file"},
    {"phantom", usv_cmd_phantom,
     "write labelled synthetic ultrasound DICOM studies of the 11 views"},
    {"preview", usv_cmd_preview, "write the 256x256 crop the network would see"},
    {"report", usv_cmd_report,
     "self-contained HTML report: data, confusion, curves, t-SNE, errors"},
    {"train", usv_cmd_train, "transfer learning: train the FC head on frozen backbone features"},
    {"version", usv_cmd_version, "print the version"},
};

int usv_cmd_version(int argc, char **argv)
{
	(void)argc, (void)argv;
	printf("usview %s\n", USV_VERSION_STRING);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: usview <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'usview <command> --help' describes a command.\n");
}

int main(int argc, char **argv)
{
	/* process setting, once, before any thread: the engine's sessions and
	 * training split their own work and call OpenBLAS single-threaded */
	usv_nn_set_threads(1);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return usv_cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "usview: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
