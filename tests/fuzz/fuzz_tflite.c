/*
 * NAME
 *	fuzz_tflite.c - libFuzzer harness: the TensorFlow Lite importer
 *
 * DESCRIPTION
 *	Each input is a .tflite flatbuffer imported by usv_import_tflite()
 *	(no head model); a network that imports is validated.
 */
#include "fuzz_common.h"
#include "usv/import.h"
#include "usv/nn.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[512];
	int fd = fuzz_file_open(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	usv_netdef *def = NULL;
	if (usv_import_tflite(path, NULL, &def, err, sizeof err) == 0)
		usv_netdef_validate(def, err, sizeof err);
	usv_netdef_free(def);
	fuzz_file_close(fd);
	return 0;
}
