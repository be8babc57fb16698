/*
 * NAME
 *	fuzz_caffemodel.c - libFuzzer harness: the Caffe caffemodel reader
 *
 * DESCRIPTION
 *	Each input is a caffemodel (binary protobuf) imported by
 *	usv_import_caffe() against the fixed prototxt of a small CaffeNet
 *	(data/mini_caffenet_deploy.prototxt, path compiled in as
 *	USV_FUZZ_CAFFE_PROTOTXT); a network that imports is validated.
 */
#include "fuzz_common.h"
#include "usv/import.h"
#include "usv/nn.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char mpath[64], err[512];
	int mfd = fuzz_file_open(data, size, mpath, sizeof mpath);
	if (mfd < 0)
		return 0;
	usv_netdef *def = NULL;
	if (usv_import_caffe(USV_FUZZ_CAFFE_PROTOTXT, mpath, NULL, NULL, &def, err, sizeof err) ==
	    0)
		usv_netdef_validate(def, err, sizeof err);
	usv_netdef_free(def);
	fuzz_file_close(mfd);
	return 0;
}
