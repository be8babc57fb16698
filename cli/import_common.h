/*
 * NAME
 *	import_common.h - shared tail of the import-caffe / import-tflite commands
 *
 * DESCRIPTION
 *	usv_cli_import_finish() - sets the labels (from labels_path, if not
 *	NULL; their count must equal the output size), the model name (if not
 *	NULL) and a provenance JSON {importer, sources: [{role, path,
 *	sha256}]} on def, then writes the model file to out_path. Prints one
 *	error line "usview <cmd>: ..." and returns 1 on failure, 0 on success.
 */
#ifndef USV_CLI_IMPORT_COMMON_H
#define USV_CLI_IMPORT_COMMON_H

#include "usv/nn.h"

typedef struct usv_cli_source {
	const char *role; /* "prototxt", "weights", "mean", "model", "head", "labels" */
	const char *path; /* NULL entries are skipped */
} usv_cli_source;

int usv_cli_import_finish(const char *cmd, usv_netdef *def, const char *importer,
                          const usv_cli_source *src, int nsrc, const char *labels_path,
                          const char *name, const char *out_path);

#endif
