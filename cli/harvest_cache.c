/*
 * NAME
 *	harvest_cache.c - per-file records of usview harvest and their cache
 *
 * DESCRIPTION
 *	See harvest.h for the file format. The cache is loaded whole
 *	(at most HV_CACHE_MAX_BYTES), its entries sorted by path and looked
 *	up by binary search.
 */
#include "harvest.h"

#include "usv/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

void hv_rec_clear(hv_rec *r)
{
	if (!r)
		return;
	free(r->label);
	free(r->source);
	free(r->reason);
	free(r->sop);
	free(r->study);
	free(r->manufacturer);
	free(r->model);
	free(r->unmapped);
	memset(r, 0, sizeof *r);
}

static int rec_complete(hv_rec *r)
{
	if (r->label && r->source && r->reason && r->sop && r->study && r->manufacturer &&
	    r->model && r->unmapped)
		return 0;
	hv_rec_clear(r);
	return -ENOMEM;
}

int hv_rec_from_result(hv_rec *r, const usv_label_result *res)
{
	memset(r, 0, sizeof *r);
	size_t len = 1;
	for (size_t i = 0; i < res->nunmapped; i++)
		len += strlen(res->unmapped[i].source) + strlen(res->unmapped[i].text) + 8;
	r->unmapped = malloc(len);
	if (r->unmapped) {
		size_t o = 0;
		r->unmapped[0] = 0;
		for (size_t i = 0; i < res->nunmapped; i++)
			o += (size_t)snprintf(r->unmapped + o, len - o, "%s%s|%d|%s", o ? "\n" : "",
			                      res->unmapped[i].source, (int)res->unmapped[i].match,
			                      res->unmapped[i].text);
	}
	r->label = dup_or_empty(res->label);
	r->source = dup_or_empty(res->source);
	r->reason = dup_or_empty(res->excluded ? res->reason : "");
	r->sop = dup_or_empty(res->sop_instance_uid);
	r->study = dup_or_empty(res->study_uid);
	r->manufacturer = dup_or_empty(res->manufacturer);
	r->model = dup_or_empty(res->model);
	r->match = (int)res->match;
	r->excl_kind = res->excluded ? (int)res->excl_kind : 0;
	if (res->excluded && !r->excl_kind)
		r->excl_kind = USV_LABEL_EXCL_POLICY;
	r->frames = res->frames;
	r->ms_decode = res->ms_decode;
	r->ms_ocr = res->ms_ocr;
	r->ms_calipers = res->ms_calipers;
	r->ms_map = res->ms_map;
	return rec_complete(r);
}

int hv_rec_copy(hv_rec *d, const hv_rec *s)
{
	*d = *s;
	d->label = dup_or_empty(s->label);
	d->source = dup_or_empty(s->source);
	d->reason = dup_or_empty(s->reason);
	d->sop = dup_or_empty(s->sop);
	d->study = dup_or_empty(s->study);
	d->manufacturer = dup_or_empty(s->manufacturer);
	d->model = dup_or_empty(s->model);
	d->unmapped = dup_or_empty(s->unmapped);
	return rec_complete(d);
}

typedef struct centry {
	char *path;
	int64_t size, mtime_ns;
	hv_rec rec;
} centry;

struct hv_cache {
	centry *e;
	size_t n;
};

void hv_cache_free(hv_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->e[i].path);
		hv_rec_clear(&c->e[i].rec);
	}
	free(c->e);
	free(c);
}

/* Unescapes a field in place (see harvest.h). */
static char *unesc(char *s)
{
	char *w = s;
	for (char *p = s; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			*w++ = *p == 't' ? '\t' : *p == 'n' ? '\n' : *p;
		} else {
			*w++ = *p;
		}
	}
	*w = 0;
	return s;
}

static void esc(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\t')
			fputs("\\t", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const centry *)a)->path, ((const centry *)b)->path);
}

#define NFIELDS 14

static int parse_line(char *line, centry *e)
{
	char *f[NFIELDS];
	int n = 0;
	for (char *p = line; n < NFIELDS;) {
		f[n++] = p;
		char *t = strchr(p, '\t');
		if (!t)
			break;
		*t = 0;
		p = t + 1;
	}
	if (n != NFIELDS)
		return -USV_ERR_FORMAT;
	char *end;
	memset(e, 0, sizeof *e);
	e->size = strtoll(f[1], &end, 10);
	if (*end)
		return -USV_ERR_FORMAT;
	e->mtime_ns = strtoll(f[2], &end, 10);
	if (*end)
		return -USV_ERR_FORMAT;
	hv_rec r = {0};
	r.label = unesc(f[3]);
	r.source = unesc(f[4]);
	r.match = (int)strtol(f[5], &end, 10);
	if (*end || r.match < 0 || r.match > 3)
		return -USV_ERR_FORMAT;
	r.excl_kind = (int)strtol(f[6], &end, 10);
	if (*end || r.excl_kind < 0 || r.excl_kind > 3)
		return -USV_ERR_FORMAT;
	r.reason = unesc(f[7]);
	r.sop = unesc(f[8]);
	r.study = unesc(f[9]);
	r.manufacturer = unesc(f[10]);
	r.model = unesc(f[11]);
	r.frames = (int)strtol(f[12], &end, 10);
	if (*end)
		return -USV_ERR_FORMAT;
	r.unmapped = unesc(f[13]);
	e->path = strdup(unesc(f[0]));
	if (!e->path || hv_rec_copy(&e->rec, &r)) {
		free(e->path);
		e->path = NULL;
		return -ENOMEM;
	}
	return 0;
}

int hv_cache_load(const char *path, const char *key, hv_cache **out, int *stale, char *errbuf,
                  size_t errlen)
{
	*stale = 0;
	hv_cache *c = calloc(1, sizeof *c);
	if (!c)
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	*out = c;
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	char *line = NULL;
	size_t cap = 0, total = 0, ncap = 0;
	ssize_t len;
	int rc = 0, first = 1;
	while ((len = getline(&line, &cap, f)) > 0) {
		total += (size_t)len;
		if (total > HV_CACHE_MAX_BYTES) {
			rc = usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: larger than %u MiB",
			                path, HV_CACHE_MAX_BYTES >> 20);
			break;
		}
		if (line[len - 1] == '\n')
			line[--len] = 0;
		if (first) {
			char want[256];
			snprintf(want, sizeof want, "usview-harvest-cache\t1\t%s", key);
			first = 0;
			if (strcmp(line, want)) {
				*stale = 1;
				break;
			}
			continue;
		}
		if (c->n == ncap) {
			size_t nc = ncap ? 2 * ncap : 1024;
			centry *ne = realloc(c->e, nc * sizeof *ne);
			if (!ne) {
				rc = usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
				break;
			}
			c->e = ne;
			ncap = nc;
		}
		int prc = parse_line(line, &c->e[c->n]);
		if (prc == -ENOMEM) {
			rc = usv_seterr(errbuf, errlen, prc, "%s: out of memory", path);
			break;
		}
		if (!prc)
			c->n++;
	}
	free(line);
	fclose(f);
	if (rc) {
		hv_cache_free(c);
		*out = NULL;
		return rc;
	}
	if (c->n)
		qsort(c->e, c->n, sizeof *c->e, cmp_entry);
	/* keep the last of repeated paths out of the way: after sorting, a
	 * lookup finds one of them; all carry the same key fields */
	return 0;
}

static const centry *find(const hv_cache *c, const char *path)
{
	if (!c || !c->n)
		return NULL;
	centry k = {.path = (char *)path};
	return bsearch(&k, c->e, c->n, sizeof *c->e, cmp_entry);
}

const hv_rec *hv_cache_find(const hv_cache *c, const char *path, int64_t size, int64_t mtime_ns)
{
	const centry *e = find(c, path);
	if (!e || e->size != size || e->mtime_ns != mtime_ns)
		return NULL;
	return &e->rec;
}

static void put_entry(FILE *f, const char *path, int64_t size, int64_t mtime, const hv_rec *r)
{
	esc(f, path);
	fprintf(f, "\t%lld\t%lld\t", (long long)size, (long long)mtime);
	esc(f, r->label);
	fputc('\t', f);
	esc(f, r->source);
	fprintf(f, "\t%d\t%d\t", r->match, r->excl_kind);
	esc(f, r->reason);
	fputc('\t', f);
	esc(f, r->sop);
	fputc('\t', f);
	esc(f, r->study);
	fputc('\t', f);
	esc(f, r->manufacturer);
	fputc('\t', f);
	esc(f, r->model);
	fprintf(f, "\t%d\t", r->frames);
	esc(f, r->unmapped);
	fputc('\n', f);
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *key_of(const hv_item *it)
{
	return it->shown ? it->shown : it->path;
}

int hv_cache_save(const hv_cache *c, const char *path, const char *key, const hv_item *items,
                  size_t n, char *errbuf, size_t errlen)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
		return usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: path too long", path);
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", tmp, strerror(errno));
	const char **seen = malloc((n + 1) * sizeof *seen);
	if (!seen) {
		fclose(f);
		unlink(tmp);
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	}
	fprintf(f, "usview-harvest-cache\t1\t%s\n", key);
	for (size_t i = 0; i < n; i++) {
		seen[i] = key_of(&items[i]);
		if (items[i].state == HV_READ)
			put_entry(f, key_of(&items[i]), items[i].size, items[i].mtime_ns,
			          &items[i].rec);
	}
	qsort(seen, n, sizeof *seen, cmp_strp);
	/* entries of files this run did not look at stay */
	for (size_t i = 0; c && i < c->n; i++) {
		if (i && !strcmp(c->e[i].path, c->e[i - 1].path))
			continue;
		const char *k = c->e[i].path;
		if (n && bsearch(&k, seen, n, sizeof *seen, cmp_strp))
			continue;
		put_entry(f, c->e[i].path, c->e[i].size, c->e[i].mtime_ns, &c->e[i].rec);
	}
	free(seen);
	int bad = ferror(f);
	if (fclose(f) || bad) {
		unlink(tmp);
		return usv_seterr(errbuf, errlen, -EIO, "%s: write error", tmp);
	}
	if (rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	}
	return 0;
}
