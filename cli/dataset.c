/*
 * NAME
 *	dataset.c - loading, hashing, splitting and summarising datasets
 *
 * DESCRIPTION
 *	See dataset.h.
 */
#include "dataset.h"
#include "csv.h"

#include "usv/dcm_prepare.h"
#include "usv/err.h"
#include "usv/sha256.h"
#include "usv/train.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

void usv_dataset_free(usv_dataset *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->n; i++) {
		free(d->items[i].path);
		free(d->items[i].name);
		free(d->items[i].group);
		free(d->items[i].manufacturer);
	}
	free(d->items);
	for (int i = 0; i < d->n_labels; i++)
		free(d->labels[i]);
	free(d->labels);
	free(d);
}

/* Raw rows before labels are indexed. */
typedef struct raw {
	char *path, *name, *label, *group, *manu;
} raw;

typedef struct rawlist {
	raw *r;
	int n, cap;
} rawlist;

static int raw_add(rawlist *l, const char *path, const char *name, const char *label,
                   const char *group, const char *manu)
{
	if (l->n >= USV_DS_MAX_ITEMS)
		return -USV_ERR_LIMIT;
	if (l->n == l->cap) {
		int nc = l->cap ? l->cap * 2 : 1024;
		raw *nr = realloc(l->r, (size_t)nc * sizeof *nr);
		if (!nr)
			return -ENOMEM;
		l->r = nr;
		l->cap = nc;
	}
	raw *r = &l->r[l->n];
	r->path = strdup(path);
	r->name = strdup(name);
	r->label = strdup(label);
	r->group = group ? strdup(group) : NULL;
	r->manu = strdup(manu ? manu : "");
	if (!r->path || !r->name || !r->label || (group && !r->group) || !r->manu) {
		free(r->path);
		free(r->name);
		free(r->label);
		free(r->group);
		free(r->manu);
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

static void raw_free(rawlist *l)
{
	for (int i = 0; i < l->n; i++) {
		free(l->r[i].path);
		free(l->r[i].name);
		free(l->r[i].label);
		free(l->r[i].group);
		free(l->r[i].manu);
	}
	free(l->r);
}

static int walk(rawlist *l, const char *dir, const char *rel, const char *label, int depth,
                char *errbuf, size_t errlen)
{
	if (depth > 16)
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: folders nested too deep",
		                  dir);
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", dir, strerror(errno));
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		const char *nm = ents[i]->d_name;
		if (nm[0] == '.')
			continue;
		char p[4096], r[4096];
		if (snprintf(p, sizeof p, "%s/%s", dir, nm) >= (int)sizeof p ||
		    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", nm) >= (int)sizeof r) {
			rc = usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: path too long", dir);
			break;
		}
		struct stat st;
		if (stat(p, &st)) {
			rc = usv_seterr(errbuf, errlen, -errno, "%s: %s", p, strerror(errno));
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			if (!label)
				rc = walk(l, p, r, nm, depth + 1, errbuf, errlen);
			else
				rc = walk(l, p, r, label, depth + 1, errbuf, errlen);
		} else if (S_ISREG(st.st_mode) && label) {
			if (!strcmp(nm, "labels.csv") || !strcmp(nm, "label.csv"))
				continue;
			rc = raw_add(l, p, r, label, NULL, NULL);
		}
	}
	for (int i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	return rc;
}

static int read_csv(rawlist *l, const char *path, char *errbuf, size_t errlen)
{
	usv_csv *c;
	int rc = usv_csv_read(path, &c, errbuf, errlen);
	if (rc)
		return rc;
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		strcpy(dir, ".");
	int start = 0;
	if (c->n_rows > 0 && (!strcmp(c->rows[0].f[0], "path") || !strcmp(c->rows[0].f[0], "file")))
		start = 1;
	for (int i = start; i < c->n_rows && !rc; i++) {
		usv_csv_row *r = &c->rows[i];
		if (r->n < 2 || !r->f[0][0] || !r->f[1][0]) {
			rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                "%s: row %d: wants path,label[,group][,manufacturer]", path,
			                i + 1);
			break;
		}
		char p[4096];
		if (r->f[0][0] == '/')
			snprintf(p, sizeof p, "%s", r->f[0]);
		else if (snprintf(p, sizeof p, "%s/%s", dir, r->f[0]) >= (int)sizeof p) {
			rc = usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: row %d: path too long",
			                path, i + 1);
			break;
		}
		const char *g = r->n > 2 && r->f[2][0] ? r->f[2] : NULL;
		const char *m = r->n > 3 ? r->f[3] : NULL;
		rc = raw_add(l, p, r->f[0], r->f[1], g, m);
		if (rc == -USV_ERR_LIMIT)
			usv_seterr(errbuf, errlen, rc, "%s: more than %d rows", path,
			           USV_DS_MAX_ITEMS);
	}
	usv_csv_free(c);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 of every item's file on `threads` threads (the files of a large
 * set are gigabytes). */
typedef struct hash_pass {
	usv_dataset *d;
	atomic_int next, rc, bad;
} hash_pass;

static void *hash_run(void *arg)
{
	hash_pass *p = arg;
	int i;
	while (!atomic_load(&p->rc) && (i = atomic_fetch_add(&p->next, 1)) < p->d->n) {
		int rc = usv_sha256_file(p->d->items[i].path, p->d->items[i].sha256);
		if (rc) {
			atomic_store(&p->bad, i);
			atomic_store(&p->rc, rc);
		}
	}
	return NULL;
}

static int hash_items(usv_dataset *d, int threads, char *errbuf, size_t errlen)
{
	hash_pass p = {.d = d};
	atomic_init(&p.next, 0);
	atomic_init(&p.rc, 0);
	atomic_init(&p.bad, 0);
	if (threads > 16)
		threads = 16;
	pthread_t th[16];
	int started = 0;
	for (int t = 1; t < threads && t < d->n; t++) {
		if (pthread_create(&th[started], NULL, hash_run, &p))
			break;
		started++;
	}
	hash_run(&p);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	int rc = atomic_load(&p.rc);
	if (rc) {
		const char *path = d->items[atomic_load(&p.bad)].path;
		return usv_seterr(errbuf, errlen, rc, "%s: %s", path, usv_strerror(rc));
	}
	return 0;
}

int usv_dataset_load(const char *spec, const usv_ds_opts *o, usv_dataset **out, char *errbuf,
                     size_t errlen)
{
	usv_ds_opts def = {0};
	if (!o)
		o = &def;
	struct stat st;
	if (stat(spec, &st))
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", spec, strerror(errno));
	rawlist l = {0};
	int rc = S_ISDIR(st.st_mode) ? walk(&l, spec, "", NULL, 0, errbuf, errlen)
	                             : read_csv(&l, spec, errbuf, errlen);
	usv_dataset *d = NULL;
	if (rc)
		goto out;
	if (l.n == 0) {
		rc = usv_seterr(errbuf, errlen, -EINVAL, "%s: no images", spec);
		goto out;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		rc = -ENOMEM;
		goto out;
	}
	/* label list */
	if (o->labels) {
		d->labels = calloc((size_t)o->n_labels, sizeof(char *));
		if (!d->labels) {
			rc = -ENOMEM;
			goto out;
		}
		for (int i = 0; i < o->n_labels; i++) {
			d->labels[i] = strdup(o->labels[i]);
			if (!d->labels[i]) {
				rc = -ENOMEM;
				goto out;
			}
			d->n_labels++;
		}
	} else {
		char **all = malloc((size_t)l.n * sizeof(char *));
		if (!all) {
			rc = -ENOMEM;
			goto out;
		}
		for (int i = 0; i < l.n; i++)
			all[i] = l.r[i].label;
		qsort(all, (size_t)l.n, sizeof *all, cmp_str);
		d->labels = calloc((size_t)l.n, sizeof(char *));
		for (int i = 0; d->labels && i < l.n; i++) {
			if (i > 0 && !strcmp(all[i], all[i - 1]))
				continue;
			d->labels[d->n_labels] = strdup(all[i]);
			if (!d->labels[d->n_labels])
				break;
			d->n_labels++;
		}
		free(all);
		if (!d->labels || d->n_labels > 4096) {
			rc = d->labels ? usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
			                            "%s: more than 4096 labels", spec)
			               : -ENOMEM;
			goto out;
		}
	}
	d->items = calloc((size_t)l.n, sizeof *d->items);
	if (!d->items) {
		rc = -ENOMEM;
		goto out;
	}
	usv_sha256 all;
	usv_sha256_init(&all);
	for (int i = 0; i < l.n; i++) {
		raw *r = &l.r[i];
		usv_ds_item *it = &d->items[i];
		it->label = -1;
		for (int k = 0; k < d->n_labels; k++)
			if (!strcmp(d->labels[k], r->label))
				it->label = k;
		if (it->label < 0) {
			rc = usv_seterr(errbuf, errlen, -EINVAL,
			                "%s: %s: label '%s' is not one of the model's labels", spec,
			                r->name, r->label);
			goto out;
		}
		it->path = r->path;
		it->name = r->name;
		it->manufacturer = r->manu;
		r->path = r->name = r->manu = NULL;
		if (r->group) {
			it->group = r->group;
			r->group = NULL;
		} else {
			const char *base = strrchr(it->name, '/');
			base = base ? base + 1 : it->name;
			const char *sep = o->group_sep ? strchr(base, o->group_sep) : NULL;
			it->group = sep ? strndup(base, (size_t)(sep - base)) : strdup(it->name);
			if (!it->group) {
				rc = -ENOMEM;
				d->n = i + 1;
				goto out;
			}
		}
		d->n = i + 1;
	}
	if ((rc = hash_items(d, o->threads, errbuf, errlen)))
		goto out;
	for (int i = 0; i < d->n; i++) {
		usv_ds_item *it = &d->items[i];
		char line[256];
		int ln = snprintf(line, sizeof line, "%s,%s\n", it->sha256, d->labels[it->label]);
		usv_sha256_update(&all, line,
		                  (size_t)(ln < (int)sizeof line ? ln : (int)sizeof line - 1));
	}
	uint8_t dg[32];
	usv_sha256_final(&all, dg);
	usv_sha256_hex(dg, d->hash);
	*out = d;
	d = NULL;
out:
	raw_free(&l);
	usv_dataset_free(d);
	return rc;
}

static int copy_item(usv_ds_item *dst, const usv_ds_item *src)
{
	*dst = *src;
	dst->path = strdup(src->path);
	dst->name = strdup(src->name);
	dst->group = strdup(src->group);
	dst->manufacturer = strdup(src->manufacturer);
	if (!dst->path || !dst->name || !dst->group || !dst->manufacturer)
		return -ENOMEM;
	return 0;
}

static int new_like(const usv_dataset *d, int cap, usv_dataset **out)
{
	usv_dataset *n = calloc(1, sizeof *n);
	if (!n)
		return -ENOMEM;
	n->items = calloc(cap > 0 ? (size_t)cap : 1, sizeof *n->items);
	n->labels = calloc((size_t)d->n_labels, sizeof(char *));
	if (!n->items || !n->labels) {
		usv_dataset_free(n);
		return -ENOMEM;
	}
	for (int i = 0; i < d->n_labels; i++) {
		n->labels[i] = strdup(d->labels[i]);
		if (!n->labels[i]) {
			usv_dataset_free(n);
			return -ENOMEM;
		}
		n->n_labels++;
	}
	*out = n;
	return 0;
}

static void rehash(usv_dataset *d)
{
	usv_sha256 c;
	usv_sha256_init(&c);
	for (int i = 0; i < d->n; i++) {
		usv_sha256_update(&c, d->items[i].sha256, 64);
		usv_sha256_update(&c, ",", 1);
		const char *lb = d->labels[d->items[i].label];
		usv_sha256_update(&c, lb, strlen(lb));
		usv_sha256_update(&c, "\n", 1);
	}
	uint8_t dg[32];
	usv_sha256_final(&c, dg);
	usv_sha256_hex(dg, d->hash);
}

int usv_dataset_split(const usv_dataset *d, double fraction, uint64_t seed, usv_dataset **a,
                      usv_dataset **b)
{
	if (!d || fraction < 0 || fraction > 1)
		return -EINVAL;
	/* distinct groups, sorted, then a seeded Fisher-Yates shuffle */
	char **g = malloc((size_t)d->n * sizeof(char *));
	if (!g)
		return -ENOMEM;
	for (int i = 0; i < d->n; i++)
		g[i] = d->items[i].group;
	qsort(g, (size_t)d->n, sizeof *g, cmp_str);
	int ng = 0;
	for (int i = 0; i < d->n; i++)
		if (i == 0 || strcmp(g[i], g[i - 1]))
			g[ng++] = g[i];
	usv_rng rng;
	usv_rng_seed(&rng, seed ^ 0x73706c6974ULL);
	for (int k = ng - 1; k > 0; k--) {
		int j = (int)usv_rng_below(&rng, (uint32_t)k + 1);
		char *t = g[k];
		g[k] = g[j];
		g[j] = t;
	}
	/* take groups for b until the share is reached */
	char *inb = calloc((size_t)ng, 1);
	int *cnt = calloc((size_t)ng, sizeof(int));
	usv_dataset *da = NULL, *db = NULL;
	int rc = -ENOMEM;
	if (!inb || !cnt)
		goto out;
	/* counts per group: binary search in the shuffled list is not possible,
	 * so sort a copy of indices by name */
	for (int i = 0; i < d->n; i++)
		for (int k = 0; k < ng; k++)
			if (!strcmp(g[k], d->items[i].group)) {
				cnt[k]++;
				break;
			}
	long want = (long)(fraction * d->n + 0.5), have = 0;
	for (int k = 0; k < ng && have < want; k++) {
		inb[k] = 1;
		have += cnt[k];
	}
	if ((rc = new_like(d, d->n, &da)) || (rc = new_like(d, d->n, &db)))
		goto out;
	for (int i = 0; i < d->n; i++) {
		int k = 0;
		while (k < ng && strcmp(g[k], d->items[i].group))
			k++;
		usv_dataset *t = inb[k] ? db : da;
		if ((rc = copy_item(&t->items[t->n++], &d->items[i])))
			goto out;
	}
	rehash(da);
	rehash(db);
	*a = da;
	*b = db;
	da = db = NULL;
	rc = 0;
out:
	usv_dataset_free(da);
	usv_dataset_free(db);
	free(inb);
	free(cnt);
	free(g);
	return rc;
}

void usv_dataset_keep(usv_dataset *d, const char *keep)
{
	int k = 0;
	for (int i = 0; i < d->n; i++) {
		if (keep[i]) {
			d->items[k++] = d->items[i];
			continue;
		}
		free(d->items[i].path);
		free(d->items[i].name);
		free(d->items[i].group);
		free(d->items[i].manufacturer);
	}
	d->n = k;
	rehash(d);
}

int usv_dataset_drop_unloadable(usv_dataset *d, int size, FILE *warn, int *dropped)
{
	char *keep = malloc(d->n > 0 ? (size_t)d->n : 1);
	if (!keep)
		return -ENOMEM;
	int nd = 0;
	for (int i = 0; i < d->n; i++) {
		usv_image *im = NULL;
		char err[USV_ERRBUF];
		int rc = usv_ds_load_image(d->items[i].path, size, &im, err, sizeof err);
		usv_image_free(im);
		keep[i] = rc == 0;
		if (rc == -ENOMEM) {
			free(keep);
			return rc;
		}
		if (rc) {
			nd++;
			if (warn)
				fprintf(warn, "skipped: %s\n", err);
		}
	}
	usv_dataset_keep(d, keep);
	free(keep);
	*dropped = nd;
	return 0;
}

void usv_dataset_table(FILE *f, const usv_dataset *const *sets, const char *const *names, int n)
{
	const usv_dataset *d0 = sets[0];
	int w = 5;
	for (int k = 0; k < d0->n_labels; k++)
		if ((int)strlen(d0->labels[k]) > w)
			w = (int)strlen(d0->labels[k]);
	fprintf(f, "%-*s", w, "class");
	for (int s = 0; s < n; s++)
		fprintf(f, "  %15s", names[s]);
	fprintf(f, "\n");
	for (int k = 0; k <= d0->n_labels; k++) {
		fprintf(f, "%-*s", w, k < d0->n_labels ? d0->labels[k] : "total");
		for (int s = 0; s < n; s++) {
			int c = 0;
			for (int i = 0; i < sets[s]->n; i++)
				c += k == d0->n_labels || sets[s]->items[i].label == k;
			fprintf(f, "  %6d (%5.1f%%)", c, sets[s]->n ? 100.0 * c / sets[s]->n : 0.0);
		}
		fprintf(f, "\n");
	}
}

char *usv_dataset_table_json(const usv_dataset *const *sets, const char *const *names, int n)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *lb = cJSON_AddArrayToObject(o, "labels");
	for (int k = 0; k < sets[0]->n_labels; k++)
		cJSON_AddItemToArray(lb, cJSON_CreateString(sets[0]->labels[k]));
	cJSON *sp = cJSON_AddObjectToObject(o, "splits");
	for (int s = 0; s < n; s++) {
		cJSON *a = cJSON_AddArrayToObject(sp, names[s]);
		for (int k = 0; k < sets[0]->n_labels; k++) {
			int c = 0;
			for (int i = 0; i < sets[s]->n; i++)
				c += sets[s]->items[i].label == k;
			cJSON_AddItemToArray(a, cJSON_CreateNumber(c));
		}
	}
	char *txt = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return txt;
}

static int is_dicom(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	char b[132];
	size_t r = fread(b, 1, sizeof b, f);
	fclose(f);
	if (r == sizeof b && !memcmp(b + 128, "DICM", 4))
		return 1;
	size_t n = strlen(path);
	return n > 4 && !strcasecmp(path + n - 4, ".dcm");
}

int usv_ds_load_image(const char *path, int size, usv_image **out, char *errbuf, size_t errlen)
{
	if (is_dicom(path)) {
		usv_prepare_opts o;
		usv_prepare_opts_init(&o);
		o.out_size = size;
		usv_prepared *p = NULL;
		int rc = usv_dcm_prepare(path, &o, &p, errbuf, errlen);
		if (rc)
			return rc;
		if (p->nframes < 1) {
			usv_prepared_free(p);
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no frame", path);
		}
		usv_image *im = p->frames[0].img;
		rc = usv_image_crop(im, 0, 0, im->w, im->h, out);
		usv_prepared_free(p);
		return rc;
	}
	usv_image *im = NULL;
	int rc = usv_image_load(path, &im, errbuf, errlen);
	if (rc)
		return rc;
	if (im->w == size && im->h == size) {
		*out = im;
		return 0;
	}
	rc = usv_image_resize_area(im, size, size, out);
	usv_image_free(im);
	if (rc)
		usv_seterr(errbuf, errlen, rc, "%s: resize failed", path);
	return rc;
}
