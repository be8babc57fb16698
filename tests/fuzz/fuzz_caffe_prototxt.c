/*
 * NAME
 *	fuzz_caffe_prototxt.c - libFuzzer harness: the Caffe prototxt reader
 *
 * DESCRIPTION
 *	Each input is a deploy prototxt imported by usv_import_caffe() (the
 *	network built from the prototxt, arch NULL) with the fixed weights
 *	of a small CaffeNet (data/mini_caffenet.caffemodel, path compiled in
 *	as USV_FUZZ_CAFFEMODEL): the text parser, the network builder and the
 *	matching of layers to weights by name all see the input. A network
 *	that imports is validated.
 */
#include "fuzz_common.h"
#include "usv/import.h"
#include "usv/nn.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char ppath[64], err[512];
	int pfd = fuzz_file_open(data, size, ppath, sizeof ppath);
	if (pfd < 0)
		return 0;
	usv_netdef *def = NULL;
	if (usv_import_caffe(ppath, USV_FUZZ_CAFFEMODEL, NULL, NULL, &def, err, sizeof err) == 0)
		usv_netdef_validate(def, err, sizeof err);
	usv_netdef_free(def);
	fuzz_file_close(pfd);
	return 0;
}
