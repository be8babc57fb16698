/*
 * NAME
 *	cmd_harvest.c - usview harvest: a labelled training set from an archive
 *
 * SYNOPSIS
 *	usview harvest INPUT... -o OUT.csv [--views FILE.yaml] [--report OUT.html]
 *	               [--threads N] [--no-ocr] [--cache FILE] [--timings] [--details FILE]
 *	               [--from AE@HOST:PORT --study-date RANGE [--modality US]
 *	                [--calling-ae AE] [--retrieve-dir DIR] [--move-port N] [--move]
 *	                [--pacs-timeout S]]
 *
 * DESCRIPTION
 *	Reads every DICOM file of the inputs (files, folders walked
 *	recursively in sorted order, DICOMDIRs; with --from the studies a
 *	PACS finds for the date range, fetched by C-GET or C-MOVE) on worker
 *	threads, each with its own label reader (usv/label_read.h: the
 *	technologist's label from DICOM attributes and OCR of the annotation
 *	areas, exclusions for colour and measurements), and writes
 *	OUT.csv = path,label,group,manufacturer,source for the labelled,
 *	not excluded, first-seen instances, sorted by path, ready for
 *	`usview train --data OUT.csv`. Paths under the CSV's folder are
 *	written relative to it, others absolute. A cache (OUT.csv.cache, see
 *	harvest.h) makes a rerun read only new or changed files.
 *
 *	Exit status: 0 when every file was read, 1 when a file could not be
 *	read or a PACS step failed (one line each on stderr, the run goes on),
 *	2 for usage errors.
 */
#include "cli.h"
#include "csv.h"
#include "harvest.h"
#include "opt.h"

#include "usv/dcm_dicomdir.h"
#include "usv/dcm_qr.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/label_read.h"
#include "usv/label_text.h"
#include "usv/parse.h"
#include "usv/sha256.h"
#include "usv/version.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HV_MAX_FILES 10000000
#define HV_MAX_DEPTH 32
#define HV_MAX_THREADS 64
#define HV_QUEUE_CAP 64

typedef struct hv_opts {
	const char *out, *views, *report, *cache, *from, *date, *modality, *calling_ae;
	const char *retrieve_dir, *details;
	int threads, ocr, move_port, force_move, pacs_timeout, timings;
	char **inputs;
	int ninputs;
} hv_opts;

typedef struct hv_list {
	hv_item *it;
	size_t n, cap;
	int overflow;
} hv_list;

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: usview harvest INPUT... -o OUT.csv [--views FILE.yaml] [--report OUT.html]\n"
	       "                      [--threads N] [--no-ocr] [--cache FILE] [--timings]\n"
	       "                      [--from AE@HOST:PORT --study-date RANGE [--modality US]\n"
	       "                       [--calling-ae AE] [--retrieve-dir DIR] [--move-port N]\n"
	       "                       [--move] [--pacs-timeout S]]\n"
	       "\n"
	       "Labels the DICOM files of INPUT (files, folders, DICOMDIRs) from their\n"
	       "attributes and the burned-in annotation text (OCR), excludes colour Doppler\n"
	       "and images with measurements, and writes OUT.csv with the columns\n"
	       "path,label,group,manufacturer,source for `usview train --data OUT.csv`.\n"
	       "  --views FILE      view synonym table (YAML; default: the 11 views)\n"
	       "  --report FILE     HTML report: counts, unmapped strings, exclusions, thumbnails\n"
	       "  --threads N       worker threads (default: 2, or fewer CPUs)\n"
	       "  --no-ocr          DICOM attributes only\n"
	       "  --cache FILE      result cache (default OUT.csv.cache)\n"
	       "  --timings         print the time spent per stage\n"
	       "  --from AE@HOST:PORT  C-FIND studies of --study-date (YYYYMMDD[-YYYYMMDD])\n"
	       "                    and --modality (default US), C-GET each into --retrieve-dir\n"
	       "                    (default OUT.csv's folder/retrieved); C-MOVE to --calling-ae\n"
	       "                    (default USVIEW) on --move-port when the peer has no C-GET,\n"
	       "                    or always with --move\n");
}

/* ---- file list ---- */

static int list_add(hv_list *l, const char *path)
{
	if (l->n >= HV_MAX_FILES) {
		l->overflow = 1;
		return -USV_ERR_LIMIT;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 1024;
		hv_item *ni = realloc(l->it, nc * sizeof *ni);
		if (!ni)
			return -ENOMEM;
		l->it = ni;
		l->cap = nc;
	}
	hv_item *it = &l->it[l->n];
	memset(it, 0, sizeof *it);
	it->path = strdup(path);
	if (!it->path)
		return -ENOMEM;
	l->n++;
	return 0;
}

static void item_fail(hv_item *it, int rc, const char *fmt, const char *why)
{
	char line[USV_ERRBUF + 4096];
	snprintf(line, sizeof line, fmt, it->path, why);
	free(it->error);
	it->error = strdup(line);
	it->state = HV_FAILED;
	it->rc = rc;
}

static void list_free(hv_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->it[i].path);
		free(l->it[i].shown);
		free(l->it[i].error);
		hv_rec_clear(&l->it[i].rec);
	}
	free(l->it);
	memset(l, 0, sizeof *l);
}

/* 1 when the file carries the DICM preamble, 0 when not, -errno when it
 * cannot be read. */
static int has_preamble(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	unsigned char b[132];
	size_t n = fread(b, 1, sizeof b, f);
	int err = ferror(f);
	fclose(f);
	if (err)
		return -EIO;
	return n == sizeof b && !memcmp(b + 128, "DICM", 4);
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* One file found: stat it, check the preamble (folder walks only). */
static int add_file(hv_list *l, const char *path, int from_walk)
{
	int rc = list_add(l, path);
	if (rc)
		return rc;
	hv_item *it = &l->it[l->n - 1];
	struct stat st;
	if (stat(path, &st)) {
		int e = errno;
		item_fail(it, -e, "%s: %s",
		          e == ENOENT ? "no such file (dangling link?)" : strerror(e));
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		item_fail(it, -EINVAL, "%s: %s", "not a regular file");
		return 0;
	}
	it->size = (int64_t)st.st_size;
	it->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	if (from_walk) {
		int p = has_preamble(path);
		if (p < 0)
			item_fail(it, p, "%s: %s", strerror(-p));
		else if (!p)
			it->state = HV_NOT_DICOM;
	}
	return 0;
}

static int add_dicomdir(hv_list *l, const char *path)
{
	char **files = NULL;
	size_t n = 0;
	char err[USV_ERRBUF];
	int rc = usv_dcm_dicomdir_list(path, &files, &n, err, sizeof err);
	if (rc) {
		if (list_add(l, path))
			return -ENOMEM;
		hv_item *it = &l->it[l->n - 1];
		it->state = HV_FAILED;
		it->rc = rc;
		it->error = strdup(err);
		return 0;
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = add_file(l, files[i], 0);
	usv_dcm_strv_free(files, n);
	return rc;
}

static int walk(hv_list *l, const char *dir, int depth)
{
	if (depth > HV_MAX_DEPTH) {
		if (list_add(l, dir))
			return -ENOMEM;
		item_fail(&l->it[l->n - 1], -USV_ERR_LIMIT, "%s: %s", "folders nested too deep");
		return 0;
	}
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0) {
		int e = errno;
		if (list_add(l, dir))
			return -ENOMEM;
		item_fail(&l->it[l->n - 1], -e, "%s: %s", strerror(e));
		return 0;
	}
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		const char *nm = ents[i]->d_name;
		if (nm[0] == '.')
			continue;
		char p[PATH_MAX];
		if (snprintf(p, sizeof p, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/",
		             nm) >= (int)sizeof p)
			continue;
		struct stat st;
		if (!stat(p, &st) && S_ISDIR(st.st_mode)) {
			rc = walk(l, p, depth + 1);
			continue;
		}
		/* a DICOMDIR inside a walked folder: its files are walked too */
		if (!strcasecmp(nm, "DICOMDIR") && usv_dcm_is_dicomdir(p))
			continue;
		rc = add_file(l, p, 1);
	}
	for (int i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	return rc;
}

static int add_input(hv_list *l, const char *path)
{
	struct stat st;
	if (!stat(path, &st) && S_ISDIR(st.st_mode))
		return walk(l, path, 0);
	if (!stat(path, &st) && S_ISREG(st.st_mode) && usv_dcm_is_dicomdir(path))
		return add_dicomdir(l, path);
	return add_file(l, path, 0);
}

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const hv_item *)a)->path, ((const hv_item *)b)->path);
}

/* Sorts by path and drops repeated paths (an input named twice). */
static void list_sort_unique(hv_list *l)
{
	if (!l->n)
		return;
	qsort(l->it, l->n, sizeof *l->it, cmp_item);
	size_t w = 1;
	for (size_t i = 1; i < l->n; i++) {
		if (!strcmp(l->it[i].path, l->it[w - 1].path)) {
			free(l->it[i].path);
			free(l->it[i].error);
			continue;
		}
		l->it[w++] = l->it[i];
	}
	l->n = w;
}

/* ---- paths in the CSV ---- */

/* The folder of path, resolved (symbolic links of folders followed). */
static int real_dir(const char *path, char out[PATH_MAX])
{
	char d[PATH_MAX];
	snprintf(d, sizeof d, "%s", path);
	char *s = strrchr(d, '/');
	if (s == d)
		d[1] = 0;
	else if (s)
		*s = 0;
	else
		strcpy(d, ".");
	return realpath(d, out) ? 0 : -errno;
}

static char *shown_path(const char *path, const char *csvdir)
{
	char d[PATH_MAX], full[PATH_MAX + 256];
	if (real_dir(path, d))
		return strdup(path);
	snprintf(full, sizeof full, "%s%s%s", d, strcmp(d, "/") ? "/" : "", base_name(path));
	size_t cl = strlen(csvdir);
	if (!strncmp(full, csvdir, cl) && full[cl] == '/' && strcmp(csvdir, "/"))
		return strdup(full + cl + 1);
	return strdup(full);
}

/* ---- workers ---- */

typedef struct hv_queue {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	size_t buf[HV_QUEUE_CAP];
	size_t head, count;
	int closed;
} hv_queue;

typedef struct hv_run {
	hv_list *l;
	hv_queue q;
	atomic_size_t done;
} hv_run;

typedef struct hv_worker {
	hv_run *run;
	usv_label_reader *reader;
	pthread_t th;
	int started;
} hv_worker;

static void queue_push(hv_queue *q, size_t v)
{
	pthread_mutex_lock(&q->mu);
	while (q->count == HV_QUEUE_CAP)
		pthread_cond_wait(&q->not_full, &q->mu);
	q->buf[(q->head + q->count) % HV_QUEUE_CAP] = v;
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
}

static void queue_close(hv_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = 1;
	pthread_cond_broadcast(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
}

/* 1 and *v, or 0 when closed and drained. */
static int queue_pop(hv_queue *q, size_t *v)
{
	pthread_mutex_lock(&q->mu);
	while (!q->count && !q->closed)
		pthread_cond_wait(&q->not_empty, &q->mu);
	int got = 0;
	if (q->count) {
		*v = q->buf[q->head];
		q->head = (q->head + 1) % HV_QUEUE_CAP;
		q->count--;
		got = 1;
		pthread_cond_signal(&q->not_full);
	}
	pthread_mutex_unlock(&q->mu);
	return got;
}

static void read_one(usv_label_reader *rd, hv_item *it)
{
	usv_label_result res;
	char err[USV_ERRBUF];
	err[0] = 0;
	int rc = usv_label_read(rd, it->path, &res, err, sizeof err);
	if (!rc && res.excluded && res.excl_kind == USV_LABEL_EXCL_POLICY &&
	    strstr(res.reason, "no pixel data")) {
		/* an image file without pixels is broken, not a policy case */
		rc = -USV_ERR_FORMAT;
		snprintf(err, sizeof err, "%s: %s", it->path, res.reason);
	}
	if (rc) {
		it->state = HV_FAILED;
		it->rc = rc;
		it->error = strdup(err[0] ? err : usv_strerror(rc));
	} else if (hv_rec_from_result(&it->rec, &res)) {
		it->state = HV_FAILED;
		it->rc = -ENOMEM;
		it->error = strdup("out of memory");
	} else {
		it->state = HV_READ;
	}
	usv_label_result_clear(&res);
}

static void *worker_main(void *arg)
{
	hv_worker *w = arg;
	size_t i;
	while (queue_pop(&w->run->q, &i)) {
		read_one(w->reader, &w->run->l->it[i]);
		atomic_fetch_add(&w->run->done, 1);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(size_t done, size_t total, double t0)
{
	int width = 30, fill = total ? (int)((double)done * width / (double)total) : width;
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : ' ';
	bar[width] = 0;
	double dt = now_s() - t0;
	fprintf(stderr, "\r[%s] %zu/%zu %.1f img/s", bar, done, total,
	        dt > 0 ? (double)done / dt : 0.0);
	fflush(stderr);
}

/* ---- PACS ---- */

static int mkdirs(const char *path)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
		return -ENAMETOOLONG;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0777) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0777) && errno != EEXIST)
		return -errno;
	return 0;
}

/* "AE@HOST:PORT" into its parts (ae and host point into buf). */
static int parse_peer(const char *s, char *buf, size_t len, const char **ae, const char **host,
                      int *port)
{
	if (snprintf(buf, len, "%s", s) >= (int)len)
		return -EINVAL;
	char *at = strchr(buf, '@'), *colon = strrchr(buf, ':');
	if (!at || !colon || colon < at || at == buf || colon == at + 1)
		return -EINVAL;
	*at = 0;
	*colon = 0;
	long v;
	if (usv_parse_int(colon + 1, 1, 65535, &v))
		return -EINVAL;
	*ae = buf;
	*host = at + 1;
	*port = (int)v;
	return 0;
}

static int retrieve_dir_default(const hv_opts *o, char *out, size_t len)
{
	if (o->retrieve_dir)
		return snprintf(out, len, "%s", o->retrieve_dir) >= (int)len ? -ENAMETOOLONG : 0;
	char d[PATH_MAX];
	snprintf(d, sizeof d, "%s", o->out);
	char *s = strrchr(d, '/');
	if (s == d)
		d[1] = 0;
	else if (s)
		*s = 0;
	else
		strcpy(d, ".");
	return snprintf(out, len, "%s/retrieved", d) >= (int)len ? -ENAMETOOLONG : 0;
}

/* C-FIND, then C-GET (or C-MOVE) of every study into its own folder,
 * which joins the inputs; 0, or 1 when a PACS step failed (a line each). */
static int harvest_from(const hv_opts *o, hv_list *l)
{
	char buf[512], err[USV_ERRBUF], dir[PATH_MAX];
	const char *ae, *host;
	int port, failed = 0;
	parse_peer(o->from, buf, sizeof buf, &ae, &host, &port);
	usv_qr_peer peer = {host, port, ae, o->calling_ae, o->pacs_timeout};
	if (retrieve_dir_default(o, dir, sizeof dir) || mkdirs(dir)) {
		fprintf(stderr, "usview harvest: %s: cannot create the retrieve folder: %s\n", dir,
		        strerror(errno));
		return 1;
	}
	usv_qr_study *st = NULL;
	size_t n = 0;
	int rc = usv_qr_find_studies(&peer, o->date, o->modality, USV_QR_MAX_STUDIES, &st, &n, err,
	                             sizeof err);
	if (rc) {
		fprintf(stderr, "usview harvest: C-FIND: %s\n", err);
		return 1;
	}
	fprintf(stderr, "harvest: %s found %zu stud%s (date %s, modality %s)\n", o->from, n,
	        n == 1 ? "y" : "ies", o->date, o->modality && o->modality[0] ? o->modality : "any");
	for (size_t i = 0; i < n; i++) {
		char sd[PATH_MAX];
		if (snprintf(sd, sizeof sd, "%s/%s", dir, st[i].study_uid) >= (int)sizeof sd ||
		    mkdirs(sd)) {
			fprintf(stderr, "usview harvest: %s: cannot create folder\n", sd);
			failed = 1;
			continue;
		}
		size_t ok = 0, bad = 0;
		err[0] = 0;
		const char *how = "C-GET";
		if (o->force_move) {
			how = "C-MOVE";
			rc = usv_qr_move_study(&peer, st[i].study_uid, o->calling_ae, o->move_port,
			                       sd, NULL, NULL, &ok, &bad, err, sizeof err);
		} else {
			rc = usv_qr_get_study(&peer, st[i].study_uid, sd, NULL, NULL, &ok, &bad,
			                      err, sizeof err);
			if (rc == -USV_ERR_UNSUPPORTED && o->move_port > 0) {
				how = "C-MOVE";
				err[0] = 0;
				rc = usv_qr_move_study(&peer, st[i].study_uid, o->calling_ae,
				                       o->move_port, sd, NULL, NULL, &ok, &bad, err,
				                       sizeof err);
			}
		}
		if (rc) {
			fprintf(stderr, "usview harvest: %s of study %s: %s\n", how,
			        st[i].study_uid, err[0] ? err : usv_strerror(rc));
			failed = 1;
		} else if (bad) {
			fprintf(stderr, "usview harvest: %s of study %s: %zu instance%s failed\n",
			        how, st[i].study_uid, bad, bad == 1 ? "" : "s");
			failed = 1;
		}
		/* what arrived is harvested whatever the outcome */
		if (walk(l, sd, 0) == -ENOMEM) {
			failed = 1;
			break;
		}
		if (rc == -ECONNREFUSED && i + 1 < n) {
			/* the peer is gone: one line for the rest, not one each */
			fprintf(stderr,
			        "usview harvest: %s: not reachable, %zu more stud%s not fetched\n",
			        o->from, n - i - 1, n - i - 1 == 1 ? "y" : "ies");
			break;
		}
	}
	free(st);
	return failed;
}

/* ---- options ---- */

static int parse_args(int argc, char **argv, hv_opts *o)
{
	enum {
		OPT_VIEWS = 256,
		OPT_REPORT,
		OPT_THREADS,
		OPT_NO_OCR,
		OPT_CACHE,
		OPT_TIMINGS,
		OPT_FROM,
		OPT_DATE,
		OPT_MODALITY,
		OPT_CALLING,
		OPT_RDIR,
		OPT_MOVE_PORT,
		OPT_MOVE,
		OPT_PACS_TIMEOUT,
		OPT_DETAILS
	};
	static const struct option opts[] = {
	    {"out", required_argument, NULL, 'o'},
	    {"views", required_argument, NULL, OPT_VIEWS},
	    {"report", required_argument, NULL, OPT_REPORT},
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {"no-ocr", no_argument, NULL, OPT_NO_OCR},
	    {"cache", required_argument, NULL, OPT_CACHE},
	    {"timings", no_argument, NULL, OPT_TIMINGS},
	    {"from", required_argument, NULL, OPT_FROM},
	    {"study-date", required_argument, NULL, OPT_DATE},
	    {"modality", required_argument, NULL, OPT_MODALITY},
	    {"calling-ae", required_argument, NULL, OPT_CALLING},
	    {"retrieve-dir", required_argument, NULL, OPT_RDIR},
	    {"move-port", required_argument, NULL, OPT_MOVE_PORT},
	    {"move", no_argument, NULL, OPT_MOVE},
	    {"pacs-timeout", required_argument, NULL, OPT_PACS_TIMEOUT},
	    {"details", required_argument, NULL, OPT_DETAILS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	*o = (hv_opts){.threads = ncpu >= 2 ? 2 : 1,
	               .ocr = 1,
	               .modality = "US",
	               .calling_ae = "USVIEW",
	               .pacs_timeout = 30};
	int c, bad = 0;
	optind = 1;
	while (!bad && (c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->out = optarg;
			break;
		case OPT_VIEWS:
			o->views = optarg;
			break;
		case OPT_REPORT:
			o->report = optarg;
			break;
		case OPT_THREADS:
			bad = usv_opt_int("harvest", "--threads", optarg, 1, HV_MAX_THREADS,
			                  &o->threads);
			break;
		case OPT_NO_OCR:
			o->ocr = 0;
			break;
		case OPT_CACHE:
			o->cache = optarg;
			break;
		case OPT_TIMINGS:
			o->timings = 1;
			break;
		case OPT_DETAILS:
			o->details = optarg;
			break;
		case OPT_FROM:
			o->from = optarg;
			break;
		case OPT_DATE:
			o->date = optarg;
			break;
		case OPT_MODALITY:
			o->modality = optarg;
			break;
		case OPT_CALLING:
			o->calling_ae = optarg;
			break;
		case OPT_RDIR:
			o->retrieve_dir = optarg;
			break;
		case OPT_MOVE_PORT:
			bad =
			    usv_opt_int("harvest", "--move-port", optarg, 1, 65535, &o->move_port);
			break;
		case OPT_MOVE:
			o->force_move = 1;
			break;
		case OPT_PACS_TIMEOUT:
			bad = usv_opt_int("harvest", "--pacs-timeout", optarg, 1, 3600,
			                  &o->pacs_timeout);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("harvest", c, argv);
		}
	}
	if (bad)
		return 2;
	if (!o->out) {
		fprintf(stderr, "usview harvest: --out: required\n");
		return 2;
	}
	o->inputs = argv + optind;
	o->ninputs = argc - optind;
	if (!o->from && (o->date || o->retrieve_dir || o->move_port || o->force_move)) {
		fprintf(stderr, "usview harvest: --study-date, --retrieve-dir, --move-port and "
		                "--move go with --from\n");
		return 2;
	}
	if (o->from) {
		char buf[512];
		const char *ae, *host;
		int port;
		if (parse_peer(o->from, buf, sizeof buf, &ae, &host, &port)) {
			fprintf(stderr, "usview harvest: --from: '%s' is not AE@HOST:PORT\n",
			        o->from);
			return 2;
		}
		if (!o->date) {
			fprintf(stderr, "usview harvest: --study-date: required with --from\n");
			return 2;
		}
		if (o->force_move && !o->move_port) {
			fprintf(stderr, "usview harvest: --move: needs --move-port\n");
			return 2;
		}
	} else if (!o->ninputs) {
		fprintf(stderr, "usview harvest: no INPUT (files, folders or a DICOMDIR)\n");
		return 2;
	}
	return -1;
}

/* SHA-256 of the version, the view table file and the OCR setting. */
static int cache_key(const hv_opts *o, char key[65])
{
	usv_sha256 h;
	usv_sha256_init(&h);
	usv_sha256_update(&h, USV_VERSION_STRING, strlen(USV_VERSION_STRING));
	usv_sha256_update(&h, o->ocr ? "|ocr|" : "|no-ocr|", o->ocr ? 5 : 8);
	if (o->views) {
		FILE *f = fopen(o->views, "rb");
		if (!f)
			return -errno;
		char b[8192];
		size_t n;
		while ((n = fread(b, 1, sizeof b, f)) > 0)
			usv_sha256_update(&h, b, n);
		fclose(f);
	} else {
		usv_sha256_update(&h, "default", 7);
	}
	uint8_t d[32];
	usv_sha256_final(&h, d);
	usv_sha256_hex(d, key);
	return 0;
}

/* ---- results ---- */

typedef struct hv_counts {
	size_t files, labelled, ocr, dicom, excluded, measurement, colour, policy, unlabelled,
	    duplicates, failed, not_dicom, cached, read;
	double ms_decode, ms_ocr, ms_calipers, ms_map;
} hv_counts;

int hv_source_is_ocr(const char *source)
{
	return source && !strcmp(source, "ocr");
}

static int cmp_sop(const void *a, const void *b, void *arg)
{
	const hv_item *it = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = strcmp(it[i].rec.sop, it[j].rec.sop);
	return c ? c : (i < j ? -1 : i > j);
}

/* Marks every read item whose SOP Instance UID an earlier path has. */
static int mark_duplicates(hv_list *l)
{
	size_t *ix = malloc((l->n + 1) * sizeof *ix), m = 0;
	if (!ix)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++)
		if (l->it[i].state == HV_READ && l->it[i].rec.sop[0])
			ix[m++] = i;
	qsort_r(ix, m, sizeof *ix, cmp_sop, l->it);
	for (size_t k = 1; k < m; k++)
		if (!strcmp(l->it[ix[k]].rec.sop, l->it[ix[k - 1]].rec.sop))
			l->it[ix[k]].duplicate = 1;
	free(ix);
	return 0;
}

static void count(const hv_list *l, hv_counts *c)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < l->n; i++) {
		const hv_item *it = &l->it[i];
		c->files++;
		if (it->state == HV_NOT_DICOM) {
			c->not_dicom++;
			continue;
		}
		if (it->state != HV_READ) {
			c->failed++;
			continue;
		}
		c->read++;
		c->cached += it->cached;
		c->ms_decode += it->rec.ms_decode;
		c->ms_ocr += it->rec.ms_ocr;
		c->ms_calipers += it->rec.ms_calipers;
		c->ms_map += it->rec.ms_map;
		if (it->duplicate) {
			c->duplicates++;
		} else if (it->rec.excl_kind) {
			c->excluded++;
			if (it->rec.excl_kind == USV_LABEL_EXCL_MEASUREMENT)
				c->measurement++;
			else if (it->rec.excl_kind == USV_LABEL_EXCL_COLOUR)
				c->colour++;
			else
				c->policy++;
		} else if (it->rec.label[0]) {
			c->labelled++;
			if (hv_source_is_ocr(it->rec.source))
				c->ocr++;
			else
				c->dicom++;
		} else {
			c->unlabelled++;
		}
	}
}

static int write_csv(const char *out, const hv_list *l, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid()) >= (int)sizeof tmp)
		return usv_seterr(err, errlen, -ENAMETOOLONG, "%s: path too long", out);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return usv_seterr(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
	fputs("path,label,group,manufacturer,source\n", f);
	for (size_t i = 0; i < l->n; i++) {
		const hv_item *it = &l->it[i];
		if (it->state != HV_READ || it->duplicate || it->rec.excl_kind || !it->rec.label[0])
			continue;
		usv_csv_put(f, it->shown ? it->shown : it->path);
		fputc(',', f);
		usv_csv_put(f, it->rec.label);
		fputc(',', f);
		usv_csv_put(f, it->rec.study);
		fputc(',', f);
		usv_csv_put(f, it->rec.manufacturer);
		fputc(',', f);
		usv_csv_put(f, it->rec.source);
		fputc('\n', f);
	}
	int bad = ferror(f);
	if (fclose(f) || bad) {
		unlink(tmp);
		return usv_seterr(err, errlen, -EIO, "%s: write error", tmp);
	}
	if (rename(tmp, out)) {
		int e = errno;
		unlink(tmp);
		return usv_seterr(err, errlen, -e, "%s: %s", out, strerror(e));
	}
	return 0;
}

/* Every file with what happened to it (--details). */
static int write_details(const char *out, const hv_list *l, char *err, size_t errlen)
{
	FILE *f = fopen(out, "w");
	if (!f)
		return usv_seterr(err, errlen, -errno, "%s: %s", out, strerror(errno));
	fputs("path,status,label,source,exclusion,reason,duplicate,cached\n", f);
	for (size_t i = 0; i < l->n; i++) {
		const hv_item *it = &l->it[i];
		const char *st = it->state == HV_READ        ? "read"
		                 : it->state == HV_NOT_DICOM ? "not-dicom"
		                                             : "failed";
		usv_csv_put(f, it->shown ? it->shown : it->path);
		fprintf(f, ",%s,", st);
		usv_csv_put(f, it->state == HV_READ ? it->rec.label : "");
		fputc(',', f);
		usv_csv_put(f, it->state == HV_READ ? it->rec.source : "");
		fputc(',', f);
		usv_csv_put(f, it->state == HV_READ ? usv_label_excl_name(it->rec.excl_kind) : "");
		fputc(',', f);
		usv_csv_put(f, it->state == HV_READ ? it->rec.reason : it->error ? it->error : "");
		fprintf(f, ",%d,%d\n", it->duplicate, it->cached);
	}
	int bad = ferror(f);
	if (fclose(f) || bad)
		return usv_seterr(err, errlen, -EIO, "%s: write error", out);
	return 0;
}

/* Reads the items not found in the cache on o->threads workers. */
static int run_workers(const hv_opts *o, const usv_label_table *table, hv_list *l,
                       const hv_cache *cache, double t0)
{
	usv_prepare_opts prep;
	usv_prepare_opts_init(&prep);
	usv_label_reader_opts ro;
	usv_label_reader_opts_init(&ro);
	ro.table = table;
	ro.ocr = o->ocr;
	ro.prep = &prep;
	size_t todo = 0;
	for (size_t i = 0; i < l->n; i++) {
		hv_item *it = &l->it[i];
		if (it->state != HV_PENDING)
			continue;
		const hv_rec *r =
		    hv_cache_find(cache, it->shown ? it->shown : it->path, it->size, it->mtime_ns);
		if (r && !hv_rec_copy(&it->rec, r)) {
			it->state = HV_READ;
			it->cached = 1;
			it->rec.ms_decode = it->rec.ms_ocr = it->rec.ms_calipers = it->rec.ms_map =
			    0;
		} else {
			todo++;
		}
	}
	int nth = o->threads;
	if ((size_t)nth > todo)
		nth = todo ? (int)todo : 0;
	hv_worker *w = calloc((size_t)(nth ? nth : 1), sizeof *w);
	hv_run run = {.l = l};
	if (!w)
		return -ENOMEM;
	char err[USV_ERRBUF];
	int rc = 0;
	for (int t = 0; t < nth && !rc; t++) {
		rc = usv_label_reader_new(&ro, &w[t].reader, err, sizeof err);
		if (rc)
			fprintf(stderr, "usview harvest: %s\n", err);
	}
	if (rc) {
		for (int t = 0; t < nth; t++)
			usv_label_reader_free(w[t].reader);
		free(w);
		return rc;
	}
	pthread_mutex_init(&run.q.mu, NULL);
	pthread_cond_init(&run.q.not_empty, NULL);
	pthread_cond_init(&run.q.not_full, NULL);
	atomic_init(&run.done, 0);
	for (int t = 0; t < nth; t++) {
		w[t].run = &run;
		if (pthread_create(&w[t].th, NULL, worker_main, &w[t]) == 0)
			w[t].started = 1;
	}
	int started = 0;
	for (int t = 0; t < nth; t++)
		started += w[t].started;
	int tty = isatty(STDERR_FILENO);
	double last = 0;
	for (size_t i = 0; i < l->n; i++) {
		hv_item *it = &l->it[i];
		if (it->state != HV_PENDING || it->cached)
			continue;
		if (!started) { /* no thread could start: read here */
			read_one(w[0].reader ? w[0].reader : NULL, it);
			atomic_fetch_add(&run.done, 1);
		} else {
			queue_push(&run.q, i);
		}
		if (tty && now_s() - last > 0.2) {
			last = now_s();
			progress(atomic_load(&run.done), todo, t0);
		}
	}
	queue_close(&run.q);
	while (tty && atomic_load(&run.done) < todo) {
		struct timespec ts = {0, 200000000};
		nanosleep(&ts, NULL);
		progress(atomic_load(&run.done), todo, t0);
	}
	for (int t = 0; t < nth; t++)
		if (w[t].started)
			pthread_join(w[t].th, NULL);
	if (tty && todo) {
		progress(todo, todo, t0);
		fputc('\n', stderr);
	}
	for (int t = 0; t < nth; t++)
		usv_label_reader_free(w[t].reader);
	free(w);
	pthread_mutex_destroy(&run.q.mu);
	pthread_cond_destroy(&run.q.not_empty);
	pthread_cond_destroy(&run.q.not_full);
	return 0;
}

static void print_summary(const hv_counts *c, double dt, int from_cache_note)
{
	size_t read_now = c->read - c->cached;
	printf("harvest: %zu files, %zu labelled (ocr %zu, dicom %zu), %zu excluded "
	       "(measurement %zu, colour %zu, other %zu), %zu unlabelled, %zu duplicates, "
	       "%zu unreadable",
	       c->files - c->not_dicom, c->labelled, c->ocr, c->dicom, c->excluded, c->measurement,
	       c->colour, c->policy, c->unlabelled, c->duplicates, c->failed);
	if (c->not_dicom)
		printf(", %zu not DICOM (skipped)", c->not_dicom);
	printf("; %.1f img/s", dt > 0 ? (double)read_now / dt : 0.0);
	if (from_cache_note)
		printf("; %zu from cache, %zu read", c->cached, read_now);
	putchar('\n');
}

int usv_cmd_harvest(int argc, char **argv)
{
	hv_opts o;
	int rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	char err[USV_ERRBUF];
	usv_label_table *table = NULL;
	rc = o.views ? usv_label_table_load(o.views, &table, err, sizeof err)
	             : usv_label_table_default(&table);
	if (rc) {
		fprintf(stderr, "usview harvest: %s\n", o.views ? err : usv_strerror(rc));
		return o.views && rc == -EINVAL ? 2 : 1;
	}
	char csvdir[PATH_MAX];
	if (real_dir(o.out, csvdir)) {
		fprintf(stderr, "usview harvest: %s: the folder does not exist\n", o.out);
		usv_label_table_free(table);
		return 2;
	}
	if (usv_dcm_global_init(err, sizeof err) ||
	    (o.from && usv_scu_global_init(o.pacs_timeout < 600 ? o.pacs_timeout : 600))) {
		fprintf(stderr, "usview harvest: %s\n", err);
		usv_label_table_free(table);
		return 1;
	}
	/* Tesseract's own threads would compete with the workers */
	setenv("OMP_THREAD_LIMIT", "1", 0);

	double t0 = now_s();
	int status = 0;
	hv_list l = {0};
	hv_cache *cache = NULL;
	char cpath[PATH_MAX], key[65];
	if (o.cache)
		snprintf(cpath, sizeof cpath, "%s", o.cache);
	else
		snprintf(cpath, sizeof cpath, "%s.cache", o.out);

	for (int i = 0; i < o.ninputs && !rc; i++)
		rc = add_input(&l, o.inputs[i]);
	if (!rc && o.from)
		status |= harvest_from(&o, &l);
	if (rc || l.overflow) {
		fprintf(stderr, "usview harvest: %s\n",
		        l.overflow ? "more than 10000000 files" : usv_strerror(rc));
		status = 1;
		goto out;
	}
	list_sort_unique(&l);
	for (size_t i = 0; i < l.n; i++)
		l.it[i].shown = shown_path(l.it[i].path, csvdir);

	int stale = 0;
	if (cache_key(&o, key)) {
		fprintf(stderr, "usview harvest: %s: %s\n", o.views, strerror(errno));
		status = 1;
		goto out;
	}
	if (hv_cache_load(cpath, key, &cache, &stale, err, sizeof err)) {
		fprintf(stderr, "usview harvest: %s (ignored)\n", err);
		cache = NULL;
	}
	if (stale)
		fprintf(stderr,
		        "harvest: %s: written by another version or view table, "
		        "reading every file again\n",
		        cpath);
	double t1 = now_s();
	if (run_workers(&o, table, &l, cache, t1)) {
		status = 1;
		goto out;
	}
	double dt = now_s() - t1;
	for (size_t i = 0; i < l.n; i++) {
		hv_item *it = &l.it[i];
		if (it->state == HV_FAILED) {
			fprintf(stderr, "usview harvest: %s\n", it->error ? it->error : it->path);
			status = 1;
		} else if (it->state == HV_NOT_DICOM) {
			fprintf(stderr,
			        "harvest: %s: not a DICOM file (no DICM preamble), skipped\n",
			        it->path);
		}
	}
	if (mark_duplicates(&l)) {
		fprintf(stderr, "usview harvest: out of memory\n");
		status = 1;
		goto out;
	}
	if (write_csv(o.out, &l, err, sizeof err)) {
		fprintf(stderr, "usview harvest: %s\n", err);
		status = 1;
		goto out;
	}
	if (hv_cache_save(cache, cpath, key, l.it, l.n, err, sizeof err))
		fprintf(stderr, "usview harvest: cache not saved: %s\n", err);
	if (o.details && write_details(o.details, &l, err, sizeof err)) {
		fprintf(stderr, "usview harvest: %s\n", err);
		status = 1;
	}
	hv_counts c;
	count(&l, &c);
	if (o.report) {
		hv_report_in in = {.items = l.it,
		                   .n = l.n,
		                   .table = table,
		                   .csv = o.out,
		                   .views = o.views,
		                   .ocr = o.ocr,
		                   .seconds = now_s() - t0,
		                   .thumbs_per_class = 4};
		if (hv_report_write(o.report, &in, err, sizeof err)) {
			fprintf(stderr, "usview harvest: %s\n", err);
			status = 1;
		}
	}
	print_summary(&c, dt, 1);
	if (o.timings) {
		double tot = c.ms_decode + c.ms_ocr + c.ms_calipers + c.ms_map;
		printf("harvest: time per stage (ms, all threads): decode %.0f, ocr %.0f, calipers "
		       "%.0f, mapping %.0f; total %.0f over %zu images read\n",
		       c.ms_decode, c.ms_ocr, c.ms_calipers, c.ms_map, tot, c.read - c.cached);
	}
out:
	fflush(stdout);
	hv_cache_free(cache);
	list_free(&l);
	usv_label_table_free(table);
	usv_dcm_global_cleanup();
	return status;
}
