/*
 * NAME
 *	npy.c - NumPy .npy reader and writer (float32, C order)
 *
 * DESCRIPTION
 *	Format: 6-byte magic "\x93NUMPY", major and minor version bytes, a
 *	little-endian header length (2 bytes in version 1, 4 bytes in 2 and
 *	3), then a Python dict literal with keys 'descr', 'fortran_order' and
 *	'shape', padded with spaces and ending in '\n'; the data follows.
 */
#include "usv/npy.h"

#include "nn_internal.h"
#include "usv/err.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_HEADER_MAX 65536

/* Finds the value text following key 'name' in the dict literal. */
static const char *dict_value(const char *hdr, const char *key)
{
	char pat[32];
	snprintf(pat, sizeof pat, "'%s'", key);
	const char *p = strstr(hdr, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	if (*p != ':')
		return NULL;
	p++;
	while (*p == ' ')
		p++;
	return p;
}

static int parse_header(const char *path, const char *hdr, int *is_f8, int *ndim,
                        int64_t shape[USV_NPY_MAX_DIMS], char *errbuf, size_t errlen)
{
	const char *d = dict_value(hdr, "descr");
	if (!d || (*d != '\'' && *d != '"'))
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: npy header has no descr",
		                  path);
	if (!strncmp(d + 1, "<f4", 3) && (d[4] == '\'' || d[4] == '"'))
		*is_f8 = 0;
	else if (!strncmp(d + 1, "<f8", 3) && (d[4] == '\'' || d[4] == '"'))
		*is_f8 = 1;
	else
		return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
		                  "%s: npy dtype is not little-endian float32/float64", path);
	const char *fo = dict_value(hdr, "fortran_order");
	if (!fo)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                  "%s: npy header has no fortran_order", path);
	if (!strncmp(fo, "True", 4))
		return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
		                  "%s: npy array is in Fortran order", path);
	if (strncmp(fo, "False", 5))
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: bad fortran_order", path);
	const char *s = dict_value(hdr, "shape");
	if (!s || *s != '(')
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: npy header has no shape",
		                  path);
	s++;
	int n = 0;
	for (;;) {
		while (*s == ' ' || *s == ',')
			s++;
		if (*s == ')')
			break;
		if (!isdigit((unsigned char)*s))
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: bad npy shape",
			                  path);
		if (n >= USV_NPY_MAX_DIMS)
			return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
			                  "%s: npy array has more than %d dimensions", path,
			                  USV_NPY_MAX_DIMS);
		int64_t v = 0;
		while (isdigit((unsigned char)*s)) {
			v = v * 10 + (*s - '0');
			if (v > USV_NPY_MAX_ELEMS)
				return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
				                  "%s: npy dimension too large", path);
			s++;
		}
		shape[n++] = v;
		if (*s == 'L')
			s++;
	}
	*ndim = n;
	return 0;
}

int usv_npy_read(const char *path, float **data, int *ndim, int64_t shape[USV_NPY_MAX_DIMS],
                 char *errbuf, size_t errlen)
{
	*data = NULL;
	*ndim = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	}
	int rc = 0;
	char *hdr = NULL;
	void *raw = NULL;
	unsigned char pre[12];
	if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: not a .npy file", path);
		goto out;
	}
	size_t hlen, off;
	if (pre[6] == 1) {
		hlen = pre[8] | (size_t)pre[9] << 8;
		off = 10;
	} else if (pre[6] == 2 || pre[6] == 3) {
		if (fread(pre + 10, 1, 2, f) != 2) {
			rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: truncated header",
			                path);
			goto out;
		}
		hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
		off = 12;
	} else {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED, "%s: npy version %d", path,
		                pre[6]);
		goto out;
	}
	if (hlen > NPY_HEADER_MAX) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: npy header too long", path);
		goto out;
	}
	hdr = malloc(hlen + 1);
	if (!hdr) {
		rc = -ENOMEM;
		goto out;
	}
	if (fread(hdr, 1, hlen, f) != hlen) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: truncated header", path);
		goto out;
	}
	hdr[hlen] = 0;
	int is_f8 = 0, nd = 0;
	int64_t shp[USV_NPY_MAX_DIMS];
	rc = parse_header(path, hdr, &is_f8, &nd, shp, errbuf, errlen);
	if (rc)
		goto out;
	int64_t count = 1;
	for (int i = 0; i < nd; i++) {
		count *= shp[i];
		if (count > USV_NPY_MAX_ELEMS) {
			rc = usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: npy array too large",
			                path);
			goto out;
		}
	}
	size_t esz = is_f8 ? 8 : 4;
	if (fseek(f, 0, SEEK_END) != 0) {
		rc = -errno;
		goto out;
	}
	long fsz = ftell(f);
	if (fsz < 0 || (uint64_t)fsz != off + hlen + (uint64_t)count * esz) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                "%s: file size %ld does not match shape (%lld elements)", path, fsz,
		                (long long)count);
		goto out;
	}
	if (fseek(f, (long)(off + hlen), SEEK_SET) != 0) {
		rc = -errno;
		goto out;
	}
	raw = malloc(count ? (size_t)count * esz : 1);
	if (!raw) {
		rc = usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	if (fread(raw, esz, (size_t)count, f) != (size_t)count) {
		rc = usv_seterr(errbuf, errlen, -EIO, "%s: read error", path);
		goto out;
	}
	if (is_f8) {
		float *fl = malloc(count ? (size_t)count * 4 : 1);
		if (!fl) {
			rc = -ENOMEM;
			goto out;
		}
		const double *dv = raw;
		for (int64_t i = 0; i < count; i++)
			fl[i] = (float)dv[i];
		free(raw);
		raw = fl;
	}
	*data = raw;
	raw = NULL;
	*ndim = nd;
	for (int i = 0; i < nd; i++)
		shape[i] = shp[i];
out:
	free(raw);
	free(hdr);
	fclose(f);
	return rc;
}

struct npy_wctx {
	const float *data;
	int ndim;
	const int64_t *shape;
	size_t count;
};

static int npy_fill(FILE *f, void *p)
{
	struct npy_wctx *c = p;
	char dict[1024];
	int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
	for (int i = 0; i < c->ndim; i++)
		n += snprintf(dict + n, sizeof dict - n, "%lld,%s", (long long)c->shape[i],
		              c->ndim > 1 && i < c->ndim - 1 ? " " : "");
	n += snprintf(dict + n, sizeof dict - n, "), }");
	size_t pre = 10;
	int major = 1;
	size_t total = pre + (size_t)n + 1;
	size_t padded = (total + 63) / 64 * 64;
	if (padded - pre > 65535) {
		major = 2;
		pre = 12;
		total = pre + (size_t)n + 1;
		padded = (total + 63) / 64 * 64;
	}
	size_t hlen = padded - pre;
	unsigned char p0[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0};
	p0[8] = hlen & 0xff;
	p0[9] = (hlen >> 8) & 0xff;
	p0[10] = (hlen >> 16) & 0xff;
	p0[11] = (hlen >> 24) & 0xff;
	if (fwrite(p0, 1, pre, f) != pre || fwrite(dict, 1, (size_t)n, f) != (size_t)n)
		return -EIO;
	for (size_t i = pre + (size_t)n; i < padded - 1; i++)
		if (fputc(' ', f) == EOF)
			return -EIO;
	if (fputc('\n', f) == EOF)
		return -EIO;
	if (c->count && fwrite(c->data, 4, c->count, f) != c->count)
		return -EIO;
	return 0;
}

int usv_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, char *errbuf,
                  size_t errlen)
{
	if (ndim < 0 || ndim > USV_NPY_MAX_DIMS)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: bad number of dimensions %d", path,
		                  ndim);
	int64_t count = 1;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0 || shape[i] > USV_NPY_MAX_ELEMS)
			return usv_seterr(errbuf, errlen, -EINVAL, "%s: bad dimension", path);
		count *= shape[i];
		if (count > USV_NPY_MAX_ELEMS)
			return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: array too large",
			                  path);
	}
	struct npy_wctx c = {data, ndim, shape, (size_t)count};
	return usv__write_atomic(path, npy_fill, &c, errbuf, errlen);
}
