/*
 * NAME
 *	fuzz_common.h - helpers shared by the libFuzzer harnesses
 *
 * DESCRIPTION
 *	The readers under test take a path, so each input is written to an
 *	anonymous memory file (memfd_create) and handed over as
 *	/proc/self/fd/N. fuzz_file_open() returns the descriptor (or -1) and
 *	fills path; fuzz_file_close() closes it. fuzz_tmpdir() makes a private
 *	folder for harnesses that need real names (the CSV dataset).
 *
 * CONTRACTS
 *	No function here logs or exits; a harness that cannot set up its
 *	input just returns 0 (the input is skipped).
 */
#ifndef USV_FUZZ_COMMON_H
#define USV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int fuzz_file_open(const uint8_t *data, size_t size, char *path, size_t pathlen);
void fuzz_file_close(int fd);

#ifdef __cplusplus
}
#endif

#endif
