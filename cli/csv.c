/*
 * NAME
 *	csv.c - CSV reading for datasets and prediction files
 *
 * DESCRIPTION
 *	See csv.h. The file is read once into a buffer; fields are unquoted
 *	in place and rows point into it.
 */
#include "csv.h"

#include "usv/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void usv_csv_free(usv_csv *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n_rows; i++)
		free(c->rows[i].f);
	free(c->rows);
	free(c->buf);
	free(c);
}

static int add_row(usv_csv *c, int *cap, char **fields, int nf)
{
	if (c->n_rows == *cap) {
		int nc = *cap ? *cap * 2 : 256;
		usv_csv_row *r = realloc(c->rows, (size_t)nc * sizeof *r);
		if (!r)
			return -ENOMEM;
		c->rows = r;
		*cap = nc;
	}
	char **f = malloc((size_t)nf * sizeof *f);
	if (!f)
		return -ENOMEM;
	memcpy(f, fields, (size_t)nf * sizeof *f);
	c->rows[c->n_rows].n = nf;
	c->rows[c->n_rows].f = f;
	c->n_rows++;
	return 0;
}

int usv_csv_read(const char *path, usv_csv **out, char *errbuf, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
	usv_csv *c = calloc(1, sizeof *c);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	int rc = 0;
	if (!c || !buf) {
		rc = -ENOMEM;
		goto fail;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= USV_CSV_MAX_BYTES) {
				rc =
				    usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
				               "%s: larger than %u bytes", path, USV_CSV_MAX_BYTES);
				goto fail;
			}
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				rc = -ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		size_t r = fread(buf + len, 1, cap - len, fp);
		len += r;
		if (r == 0)
			break;
	}
	if (ferror(fp)) {
		rc = usv_seterr(errbuf, errlen, -EIO, "%s: read error", path);
		goto fail;
	}
	buf[len] = 0;
	c->buf = buf;
	buf = NULL;
	int rcap = 0, line = 1;
	char *p = c->buf, *end = c->buf + len;
	char *fields[USV_CSV_MAX_FIELDS];
	while (p < end) {
		if (*p == '\n' || *p == '\r' || *p == '#') {
			while (p < end && *p != '\n')
				p++;
			p++;
			line++;
			continue;
		}
		int nf = 0;
		for (;;) {
			if (nf == USV_CSV_MAX_FIELDS) {
				rc = usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
				                "%s:%d: more than %d fields", path, line,
				                USV_CSV_MAX_FIELDS);
				goto fail;
			}
			char *w = p;
			fields[nf++] = w;
			if (p < end && *p == '"') {
				p++;
				for (;;) {
					if (p >= end) {
						rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
						                "%s:%d: unterminated quote", path,
						                line);
						goto fail;
					}
					if (*p == '"') {
						if (p + 1 < end && p[1] == '"') {
							*w++ = '"';
							p += 2;
							continue;
						}
						p++;
						break;
					}
					*w++ = *p++;
				}
				while (p < end && *p != ',' && *p != '\n')
					p++;
			} else {
				while (p < end && *p != ',' && *p != '\n')
					p++;
				w = p;
			}
			char sep = p < end ? *p : '\n';
			if (w > fields[nf - 1] && w[-1] == '\r' && sep == '\n')
				w--;
			*w = 0;
			if (p < end)
				p++;
			if (sep == '\n')
				break;
		}
		line++;
		rc = add_row(c, &rcap, fields, nf);
		if (rc)
			goto fail;
	}
	fclose(fp);
	*out = c;
	return 0;
fail:
	fclose(fp);
	free(buf);
	usv_csv_free(c);
	return rc;
}

int usv_csv_col(const usv_csv *c, const char *name)
{
	if (c->n_rows < 1)
		return -1;
	for (int i = 0; i < c->rows[0].n; i++)
		if (!strcmp(c->rows[0].f[i], name))
			return i;
	return -1;
}

void usv_csv_put(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\n\r")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}
