/*
 * NAME
 *	fuzz_model.c - libFuzzer harness: usview's own model file
 *
 * DESCRIPTION
 *	Each input is a model file (docs/model-format.md) read by
 *	usv_netdef_read(); a definition that reads and validates is also built
 *	into a model (usv_model_from_netdef), as usviewd does when it loads
 *	its model.
 */
#include "fuzz_common.h"
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
	usv_model *m = NULL;
	if (usv_netdef_read(path, &def, err, sizeof err) == 0 &&
	    usv_netdef_validate(def, err, sizeof err) == 0)
		usv_model_from_netdef(def, &m, err, sizeof err);
	usv_model_free(m);
	usv_netdef_free(def);
	fuzz_file_close(fd);
	return 0;
}
