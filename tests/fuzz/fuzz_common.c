/*
 * NAME
 *	fuzz_common.c - input files for the libFuzzer harnesses
 *
 * DESCRIPTION
 *	See fuzz_common.h.
 */
#include "fuzz_common.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_file_open(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
	int fd = memfd_create("usv-fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);
		if (w <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

void fuzz_file_close(int fd)
{
	if (fd >= 0)
		close(fd);
}
