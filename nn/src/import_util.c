/*
 * NAME
 *	import_util.c - file and label reading for the model importers
 */
#include "import_util.h"

#include "usv/err.h"
#include "usv/import.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int imp_read_file(const char *path, size_t max, uint8_t **buf, size_t *len, char *errbuf,
                  size_t errlen)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) == -1) {
		int e = errno;
		close(fd);
		return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > (uint64_t)max) {
		close(fd);
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
		                  "%s: file too large (%lld bytes, limit %zu)", path,
		                  (long long)st.st_size, max);
	}
	size_t n = (size_t)st.st_size;
	uint8_t *b = malloc(n + 1);
	if (!b) {
		close(fd);
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			int e = errno;
			free(b);
			close(fd);
			return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	b[got] = 0;
	*buf = b;
	*len = got;
	return 0;
}

void usv_labels_free(char **labels, int n)
{
	if (!labels)
		return;
	for (int i = 0; i < n; i++)
		free(labels[i]);
	free(labels);
}

int usv_labels_read(const char *path, char ***labels, int *n, char *errbuf, size_t errlen)
{
	*labels = NULL;
	*n = 0;
	uint8_t *buf;
	size_t len;
	int rc = imp_read_file(path, (size_t)USV_MAX_LABELS * USV_LABEL_MAX * 2, &buf, &len, errbuf,
	                       errlen);
	if (rc < 0)
		return rc;
	char **l = calloc(USV_MAX_LABELS, sizeof *l);
	if (!l) {
		free(buf);
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	}
	int k = 0, line = 0;
	char *p = (char *)buf, *end = (char *)buf + len;
	while (p < end) {
		char *e = memchr(p, '\n', (size_t)(end - p));
		if (!e)
			e = end;
		line++;
		char *q = e;
		while (q > p && (q[-1] == '\r' || q[-1] == ' ' || q[-1] == '\t'))
			q--;
		size_t sl = (size_t)(q - p);
		if (sl == 0 && e == end)
			break;
		if (memchr(p, 0, sl)) {
			usv_labels_free(l, k);
			free(buf);
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: line %d: NUL byte",
			                  path, line);
		}
		if (k >= USV_MAX_LABELS || sl >= USV_LABEL_MAX) {
			usv_labels_free(l, k);
			free(buf);
			return usv_seterr(
			    errbuf, errlen, -USV_ERR_LIMIT,
			    "%s: line %d: more than %d labels or a label over %d bytes", path, line,
			    USV_MAX_LABELS, USV_LABEL_MAX - 1);
		}
		l[k] = malloc(sl + 1);
		if (!l[k]) {
			usv_labels_free(l, k);
			free(buf);
			return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
		}
		memcpy(l[k], p, sl);
		l[k][sl] = 0;
		k++;
		p = e + 1;
	}
	free(buf);
	/* trailing empty lines are not labels */
	while (k > 0 && !l[k - 1][0])
		free(l[--k]);
	*labels = l;
	*n = k;
	return 0;
}
