/*
 * NAME
 *	import_util.h - helpers shared by the Caffe and TFLite importers
 *
 * DESCRIPTION
 *	imp_read_file() - reads a whole regular file (at most max bytes) into
 *	a malloc()ed buffer the caller frees; errbuf names the file.
 */
#ifndef USV_IMPORT_UTIL_H
#define USV_IMPORT_UTIL_H

#include <stddef.h>
#include <stdint.h>

int imp_read_file(const char *path, size_t max, uint8_t **buf, size_t *len, char *errbuf,
                  size_t errlen);

#endif
