/*
 * NAME
 *	fileio.c - atomic file replacement and whole-file reading for nn/
 *
 * DESCRIPTION
 *	usv__write_atomic() writes through a callback into "<path>.tmp.<pid>"
 *	in the same directory, fsyncs, renames over path and fsyncs the
 *	directory; on any failure the temporary file is removed.
 *	usv__map_file() maps a whole regular file read-only.
 *	usv__drop_pages() lets such a mapping release the pages of a range
 *	(they fault back in from the page cache if read again).
 */
#include "nn_internal.h"

#include "usv/err.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int usv__write_atomic(const char *path, int (*fill)(FILE *f, void *ctx), void *ctx, char *errbuf,
                      size_t errlen)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
		return usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: path too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		return usv_seterr(errbuf, errlen, -e, "%s: %s", tmp, strerror(e));
	}
	FILE *f = fdopen(fd, "wb");
	if (!f) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return usv_seterr(errbuf, errlen, -e, "%s: %s", tmp, strerror(e));
	}
	int rc = fill(f, ctx);
	if (rc == 0 && fflush(f) != 0)
		rc = -errno;
	if (rc == 0 && fsync(fileno(f)) != 0)
		rc = -errno;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0) {
		unlink(tmp);
		return usv_seterr(errbuf, errlen, rc, "%s: write failed: %s", path,
		                  usv_strerror(rc));
	}
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
}

int usv__map_file(const char *path, void **map, size_t *len, char *errbuf, size_t errlen)
{
	*map = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: not a regular file", path);
	}
	size_t n = (size_t)st.st_size;
	void *p = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (n && p == MAP_FAILED) {
		int e = errno;
		return usv_seterr(errbuf, errlen, -e, "%s: mmap: %s", path, strerror(e));
	}
	*map = p;
	*len = n;
	return 0;
}

void usv__drop_pages(const void *p, size_t len)
{
	static long page;
	if (!p || !len)
		return;
	if (page <= 0)
		page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
	uintptr_t a = (uintptr_t)p, lo = a / (uintptr_t)page * (uintptr_t)page;
	uintptr_t hi = (a + len + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
	(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}
