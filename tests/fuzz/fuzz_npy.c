/*
 * NAME
 *	fuzz_npy.c - libFuzzer harness: the .npy reader
 *
 * DESCRIPTION
 *	Each input is a .npy file read by usv_npy_read() (mean images,
 *	feature caches); the values read are summed so that every element
 *	returned is touched.
 */
#include "fuzz_common.h"
#include "usv/npy.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[256];
	int fd = fuzz_file_open(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	float *v = NULL;
	int ndim = 0;
	int64_t shape[USV_NPY_MAX_DIMS];
	if (usv_npy_read(path, &v, &ndim, shape, err, sizeof err) == 0) {
		int64_t n = 1;
		for (int i = 0; i < ndim; i++)
			n *= shape[i];
		volatile float sum = 0;
		for (int64_t i = 0; i < n; i++)
			sum += v[i];
		(void)sum;
	}
	free(v);
	fuzz_file_close(fd);
	return 0;
}
