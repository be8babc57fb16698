/*
 * NAME
 *	npy.h - NumPy .npy files of float32 arrays
 *
 * SYNOPSIS
 *	#include "usv/npy.h"
 *
 * DESCRIPTION
 *	Reads and writes the NumPy array file format (versions 1.0, 2.0 and
 *	3.0 headers), C order, little endian. Reading accepts dtype '<f4' and
 *	'<f8' (converted to float32); writing always produces '<f4' with a 1.0
 *	header (2.0 when the header would not fit), padded so the data starts
 *	at a multiple of 64 bytes.
 *
 *	usv_npy_read() - loads path into a malloc()ed float array that the
 *	caller owns (release with free()); *ndim receives 0..USV_NPY_MAX_DIMS
 *	and shape[] the dimensions. Rejects Fortran order, big-endian or other
 *	dtypes, a header over 64 KiB, more than USV_NPY_MAX_DIMS dimensions,
 *	more than USV_NPY_MAX_ELEMS elements and a file whose size does not
 *	match the shape.
 *
 *	usv_npy_write() - writes data (product of shape elements) to path,
 *	atomically (temporary file, fsync, rename).
 *
 * DIAGNOSTICS
 *	0 or a negative code (-EIO and friends, -USV_ERR_FORMAT for a malformed
 *	file, -USV_ERR_UNSUPPORTED for a well-formed one we do not read,
 *	-USV_ERR_LIMIT for a cap). errbuf receives one line naming the file.
 */
#ifndef USV_NPY_H
#define USV_NPY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_NPY_MAX_DIMS 8
#define USV_NPY_MAX_ELEMS ((int64_t)1 << 30) /* 4 GiB of float32 */

int usv_npy_read(const char *path, float **data, int *ndim, int64_t shape[USV_NPY_MAX_DIMS],
                 char *errbuf, size_t errlen);
int usv_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, char *errbuf,
                  size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
