/*
 * NAME
 *	qa_web.c - incremental index of results.jsonl and the /qa pages
 *
 * DESIGN
 *	Reading. The reader remembers (dev, inode, offset) of results.jsonl.
 *	Each update opens the file, compares the inode and reads from the
 *	offset with pread() in chunks, handing every complete line to the
 *	index and advancing the offset past the last '\n' only: a line being
 *	written is read on a later update. results_index.c rotates by
 *	linking the full file as results.jsonl.1 (after shifting .1 -> .2
 *	...) and renaming a new file over results.jsonl, so the file we were
 *	reading keeps its inode under a new name: we look it up among .1 ...
 *	.N, finish it, read the newer rotated files whole, then the new
 *	current file. If it is gone (rotated past index_keep between two
 *	updates), every rotated file present is newer than it and is read
 *	whole. Duplicates that a re-read could produce are absorbed by the
 *	deduplication below.
 *
 *	Memory. 100,000 instances must stay cheap: strings live in one arena
 *	(uint32 offsets), repeated strings (labels, stations, protocols,
 *	label sources) are interned to uint32 ids, an instance is a ~56-byte
 *	record, and three open-addressing hash tables map sop_instance_uid,
 *	study_uid and interned text to their records. A re-processed
 *	instance marks its earlier record dead (its counts are taken off its
 *	study) and is appended anew, so the instance array stays in file
 *	order and "newest first" is a walk from the end.
 *
 *	Pages. Sorted views (studies by date, review list by time) are
 *	rebuilt only when lines were added since the last request; a page
 *	walks the sorted array, applies the filters and prints one page.
 *	One mutex serialises updates and rendering; libmicrohttpd calls the
 *	route from its single polling thread anyway.
 */
#include "qa_web.h"
#include "results_db.h"

#include "usv/dcm_prepare.h"
#include "usv/dcm_result.h"
#include "usv/err.h"
#include "usv/html.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QA_MAX_ROTATED 1000
#define QA_CHUNK (USV_QA_LINE_MAX + 65536)
#define QA_DAY_MS (86400LL * 1000)

/* ---------------- storage ---------------- */

struct arena {
	char *p;
	size_t len, cap;
};

struct hmap {
	uint32_t *slot; /* entry + 1; 0 = empty */
	size_t cap, n;
};

struct qa_inst {
	int64_t time_ms;
	uint32_t sop, spool;                                 /* arena */
	uint32_t study;                                      /* index into studies */
	uint32_t label, top, tech, source, station, outcome; /* interned */
	uint32_t view; /* interned key of top (usv_view_lookup) */
	float prob;
	int16_t frame;
	int8_t agrees; /* 1, 0, -1 */
	uint8_t uncertain, done, alive;
};

struct qa_view {
	uint32_t label;         /* interned */
	uint32_t n, ndis, nunc; /* from the instances (done, alive) */
	int32_t rec_count;      /* views_present of the record; -1 = not listed */
	uint8_t missing;        /* listed as missing by the record */
};

struct qa_study {
	uint32_t uid;               /* arena */
	uint32_t station, protocol; /* interned */
	int32_t date;               /* YYYYMMDD, 0 = unknown */
	char acc[17];
	int64_t first_ms, last_ms;
	uint32_t ninst, ndis, nunc, nother; /* instances: done; failed/excluded */
	int32_t revision;                   /* 0 = no study record */
	int32_t rec_inst, rec_dis, rec_unc;
	uint16_t nviews, capviews;
	struct qa_view *views;
};

#define QA_HEAD 128

/* The file being followed. Inode numbers are reused once a file is gone,
 * so identity is the inode plus the first bytes (a file only grows). */
struct qa_file {
	dev_t dev;
	ino_t ino;
	off_t off;
	size_t headlen;
	char head[QA_HEAD];
};

struct usv_qa_index {
	char path[4096]; /* .../results.jsonl */
	struct arena arena;
	struct hmap strs, studies_map, inst_map;
	uint32_t *str_off; /* interned id -> arena offset; id 0 = "" */
	size_t nstr, capstr;
	struct qa_study *studies;
	size_t nstudies, capstudies;
	struct qa_inst *inst;
	size_t ninst, capinst, nalive;
	int started;
	struct qa_file cur;
	int skipping;                     /* inside an over-long line */
	char *buf;                        /* QA_CHUNK bytes */
	uint64_t gen;                     /* bumped for every line taken in */
	struct usv_results_db_reader *db; /* lines from the results database */
	char db_err[256];                 /* its last error */
	struct usv_qa_index_stats st;
};

static int arena_put(struct arena *a, const char *s, size_t n, uint32_t *off)
{
	if (a->len + n + 1 > UINT32_MAX)
		return -ENOMEM;
	if (a->len + n + 1 > a->cap) {
		size_t nc = a->cap ? a->cap : 65536;
		while (nc < a->len + n + 1)
			nc *= 2;
		char *p = realloc(a->p, nc);
		if (!p)
			return -ENOMEM;
		a->p = p;
		a->cap = nc;
	}
	memcpy(a->p + a->len, s, n);
	a->p[a->len + n] = 0;
	*off = (uint32_t)a->len;
	a->len += n + 1;
	return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 256;
	while (nc < need)
		nc *= 2;
	void *q = realloc(*p, nc * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = nc;
	return 0;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

enum map_kind { MAP_STR, MAP_STUDY, MAP_INST };

static const char *map_key(const struct usv_qa_index *x, enum map_kind k, uint32_t e)
{
	switch (k) {
	case MAP_STR:
		return x->arena.p + x->str_off[e];
	case MAP_STUDY:
		return x->arena.p + x->studies[e].uid;
	default:
		return x->arena.p + x->inst[e].sop;
	}
}

/* The slot holding key s, or the empty slot where it belongs. */
static uint32_t *map_slot(const struct usv_qa_index *x, const struct hmap *m, enum map_kind k,
                          const char *s)
{
	size_t i = (size_t)hash_str(s) & (m->cap - 1);

	for (;; i = (i + 1) & (m->cap - 1)) {
		uint32_t *sl = &m->slot[i];
		if (!*sl || !strcmp(map_key(x, k, *sl - 1), s))
			return sl;
	}
}

/* Room for one more entry (load factor <= 1/2). */
static int map_reserve(struct usv_qa_index *x, struct hmap *m, enum map_kind k)
{
	if ((m->n + 1) * 2 <= m->cap)
		return 0;
	size_t nc = m->cap ? m->cap * 2 : 1024;
	struct hmap nm = {calloc(nc, sizeof(uint32_t)), nc, m->n};
	if (!nm.slot)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slot[i])
			*map_slot(x, &nm, k, map_key(x, k, m->slot[i] - 1)) = m->slot[i];
	free(m->slot);
	*m = nm;
	return 0;
}

/* The interned id of s (0 for NULL or ""); *id untouched on failure. */
static int intern(struct usv_qa_index *x, const char *s, uint32_t *id)
{
	if (!s || !*s) {
		*id = 0;
		return 0;
	}
	if (map_reserve(x, &x->strs, MAP_STR) < 0 ||
	    grow((void **)&x->str_off, &x->capstr, x->nstr + 1, sizeof *x->str_off) < 0)
		return -ENOMEM;
	uint32_t *sl = map_slot(x, &x->strs, MAP_STR, s);
	if (*sl) {
		*id = *sl - 1;
		return 0;
	}
	uint32_t off;
	if (arena_put(&x->arena, s, strlen(s), &off) < 0)
		return -ENOMEM;
	x->str_off[x->nstr] = off;
	*sl = (uint32_t)x->nstr + 1;
	x->strs.n++;
	*id = (uint32_t)x->nstr++;
	return 0;
}

/* The interned id of a view label under its table key (usv_view_lookup:
 * "Liver left long" and "liver_left_long" are one view), so that the
 * instances' classes and a protocol's spelling meet in one cell. */
static int intern_view(struct usv_qa_index *x, const char *label, uint32_t *id)
{
	const usv_view_info *v = label && *label ? usv_view_lookup(label) : NULL;

	return intern(x, v ? v->key : label, id);
}

/* An interned id without adding; -1 when unknown. */
static long intern_find(const struct usv_qa_index *x, const char *s)
{
	if (!s || !*s)
		return 0;
	if (!x->strs.cap)
		return -1;
	uint32_t *sl = map_slot(x, &x->strs, MAP_STR, s);
	return *sl ? (long)(*sl - 1) : -1;
}

static const char *S(const struct usv_qa_index *x, uint32_t id)
{
	return x->arena.p + x->str_off[id];
}

int usv_qa_index_new(const char *dir, struct usv_qa_index **out)
{
	struct usv_qa_index *x = calloc(1, sizeof *x);
	uint32_t off;

	if (!x)
		return -ENOMEM;
	if (snprintf(x->path, sizeof x->path, "%s/results.jsonl", dir) >= (int)sizeof x->path) {
		free(x);
		return -ENAMETOOLONG;
	}
	/* offset 0 is "", interned id 0 is "" */
	if (arena_put(&x->arena, "", 0, &off) < 0 ||
	    grow((void **)&x->str_off, &x->capstr, 1, sizeof *x->str_off) < 0) {
		usv_qa_index_free(x);
		return -ENOMEM;
	}
	x->str_off[0] = off;
	x->nstr = 1;
	*out = x;
	return 0;
}

void usv_qa_index_free(struct usv_qa_index *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->nstudies; i++)
		free(x->studies[i].views);
	free(x->studies);
	free(x->inst);
	free(x->str_off);
	free(x->strs.slot);
	free(x->studies_map.slot);
	free(x->inst_map.slot);
	free(x->arena.p);
	free(x->buf);
	usv_results_db_reader_free(x->db);
	free(x);
}

/* ---------------- ingestion ---------------- */

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k, double def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* true 1, false 0, anything else def */
static int jbool(const cJSON *o, const char *k, int def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsTrue(v) ? 1 : cJSON_IsFalse(v) ? 0 : def;
}

/* "2026-11-25T18:40:00.123Z" -> ms since the epoch; 0 when malformed. */
static int64_t parse_time(const char *s)
{
	struct tm tm;
	int ms = 0, n = 0;

	if (!s)
		return 0;
	memset(&tm, 0, sizeof tm);
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return 0;
	if (s[n] == '.') {
		int d = 0;
		for (n++; s[n] >= '0' && s[n] <= '9'; n++, d++)
			if (d < 3)
				ms = ms * 10 + (s[n] - '0');
		for (; d < 3; d++)
			ms *= 10;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return t == (time_t)-1 ? 0 : (int64_t)t * 1000 + ms;
}

/* "YYYYMMDD" (or "YYYY-MM-DD" when dashes) -> YYYYMMDD; 0 when not a date. */
static int32_t parse_date(const char *s, int dashes)
{
	int y, m, d;
	char tail;

	if (!s)
		return 0;
	if (dashes) {
		if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
		    sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
			return 0;
	} else {
		if (strlen(s) != 8 || strspn(s, "0123456789") != 8 ||
		    sscanf(s, "%4d%2d%2d", &y, &m, &d) != 3)
			return 0;
	}
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1900 || y > 9999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return 0;
	if (m == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400)))
		return 0;
	return y * 10000 + m * 100 + d;
}

static int32_t date_of_ms(int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!ms || !gmtime_r(&t, &tm))
		return 0;
	return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

static int study_get(struct usv_qa_index *x, const char *uid, uint32_t *out)
{
	if (map_reserve(x, &x->studies_map, MAP_STUDY) < 0 ||
	    grow((void **)&x->studies, &x->capstudies, x->nstudies + 1, sizeof *x->studies) < 0)
		return -ENOMEM;
	uint32_t *sl = map_slot(x, &x->studies_map, MAP_STUDY, uid);
	if (*sl) {
		*out = *sl - 1;
		return 0;
	}
	struct qa_study *s = &x->studies[x->nstudies];
	memset(s, 0, sizeof *s);
	if (arena_put(&x->arena, uid, strlen(uid), &s->uid) < 0)
		return -ENOMEM;
	*sl = (uint32_t)x->nstudies + 1;
	x->studies_map.n++;
	*out = (uint32_t)x->nstudies++;
	return 0;
}

static struct qa_view *view_get(struct qa_study *s, uint32_t label)
{
	for (uint16_t i = 0; i < s->nviews; i++)
		if (s->views[i].label == label)
			return &s->views[i];
	if (s->nviews == s->capviews) {
		if (s->capviews >= 1024)
			return NULL; /* a cap on what one study line can add */
		uint16_t nc = s->capviews ? (uint16_t)(s->capviews * 2) : 8;
		struct qa_view *v = realloc(s->views, nc * sizeof *v);
		if (!v)
			return NULL;
		s->views = v;
		s->capviews = nc;
	}
	struct qa_view *v = &s->views[s->nviews++];
	memset(v, 0, sizeof *v);
	v->label = label;
	v->rec_count = -1;
	return v;
}

/* Adds (sign 1) or removes (sign -1) an instance's counts in its study. */
static void study_count(struct usv_qa_index *x, const struct qa_inst *in, int sign)
{
	struct qa_study *s = &x->studies[in->study];

	if (!in->done) {
		s->nother += (uint32_t)sign;
		return;
	}
	s->ninst += (uint32_t)sign;
	if (in->agrees == 0)
		s->ndis += (uint32_t)sign;
	if (in->uncertain)
		s->nunc += (uint32_t)sign;
	if (!in->view)
		return;
	struct qa_view *v = view_get(s, in->view);
	if (!v)
		return;
	v->n += (uint32_t)sign;
	if (in->agrees == 0)
		v->ndis += (uint32_t)sign;
	if (in->uncertain)
		v->nunc += (uint32_t)sign;
}

static void study_meta(struct usv_qa_index *x, struct qa_study *s, const cJSON *o, int force)
{
	uint32_t id;
	const char *acc = jstr(o, "accession_hash");
	int32_t date = parse_date(jstr(o, "study_date"), 0);

	if ((force || !s->station) && intern(x, jstr(o, "station_name"), &id) == 0 && id)
		s->station = id;
	if ((force || !s->date) && date)
		s->date = date;
	/* only what looks like the documented hash is ever shown */
	if ((force || !s->acc[0]) && acc && strlen(acc) == 16 &&
	    strspn(acc, "0123456789abcdefABCDEF") == 16)
		memcpy(s->acc, acc, 17);
}

static void take_instance(struct usv_qa_index *x, const cJSON *o, int64_t t)
{
	const char *sop = jstr(o, "sop_instance_uid"), *study = jstr(o, "study_uid");
	const char *outcome = jstr(o, "outcome"), *label = jstr(o, "label");
	const char *top = NULL, *spool = jstr(o, "spool_id");
	struct qa_inst in;
	uint32_t sid;

	if (!sop || !*sop || !outcome) {
		x->st.bad++;
		return;
	}
	const cJSON *tk = cJSON_GetObjectItemCaseSensitive(o, "topk");
	if (cJSON_IsArray(tk) && cJSON_GetArraySize(tk) > 0)
		top = jstr(cJSON_GetArrayItem(tk, 0), "label");
	if (!top && label && strcmp(label, "uncertain"))
		top = label;
	memset(&in, 0, sizeof in);
	in.time_ms = t;
	in.prob = (float)jnum(o, "prob", 0);
	double fr = jnum(o, "frame", 0);
	in.frame = (int16_t)(fr >= 0 && fr < 32767 ? fr : 0);
	in.done = !strcmp(outcome, "done");
	in.alive = 1;
	in.uncertain = (uint8_t)(jbool(o, "uncertain", 0) == 1);
	in.agrees = (int8_t)jbool(o, "agrees", -1);
	if (study_get(x, study ? study : "", &sid) < 0 ||
	    map_reserve(x, &x->inst_map, MAP_INST) < 0 ||
	    grow((void **)&x->inst, &x->capinst, x->ninst + 1, sizeof *x->inst) < 0 ||
	    intern(x, outcome, &in.outcome) < 0 || intern(x, label, &in.label) < 0 ||
	    intern(x, top, &in.top) < 0 || intern_view(x, top, &in.view) < 0 ||
	    intern(x, jstr(o, "technologist_label"), &in.tech) < 0 ||
	    intern(x, jstr(o, "label_source"), &in.source) < 0 ||
	    intern(x, jstr(o, "station_name"), &in.station) < 0 ||
	    arena_put(&x->arena, spool ? spool : "", spool ? strlen(spool) : 0, &in.spool) < 0) {
		x->st.bad++; /* out of memory: the line is lost, the index stays usable */
		return;
	}
	in.study = sid;
	if (!in.tech)
		in.agrees = -1;
	uint32_t *sl = map_slot(x, &x->inst_map, MAP_INST, sop);
	if (*sl) {
		struct qa_inst *old = &x->inst[*sl - 1];
		study_count(x, old, -1);
		old->alive = 0;
		in.sop = old->sop;
		x->st.duplicates++;
		*sl = (uint32_t)x->ninst + 1;
	} else {
		if (arena_put(&x->arena, sop, strlen(sop), &in.sop) < 0) {
			x->st.bad++;
			return;
		}
		*sl = (uint32_t)x->ninst + 1;
		x->inst_map.n++;
		x->nalive++;
	}
	x->inst[x->ninst++] = in;
	struct qa_study *s = &x->studies[sid];
	if (!s->first_ms || (t && t < s->first_ms))
		s->first_ms = t;
	if (t > s->last_ms)
		s->last_ms = t;
	if (!s->revision)
		study_meta(x, s, o, 0);
	study_count(x, &x->inst[x->ninst - 1], 1);
}

static void take_study(struct usv_qa_index *x, const cJSON *o, int64_t t)
{
	const char *uid = jstr(o, "study_uid");
	double rev = jnum(o, "revision", 1);
	uint32_t sid, id;

	x->st.study_records++;
	if (!uid || !*uid || rev < 1 || rev > 1e9 || study_get(x, uid, &sid) < 0) {
		x->st.bad++;
		return;
	}
	struct qa_study *s = &x->studies[sid];
	if (s->revision > (int32_t)rev)
		return; /* an older revision read after a newer one */
	for (uint16_t i = 0; i < s->nviews; i++) {
		s->views[i].rec_count = -1;
		s->views[i].missing = 0;
	}
	s->revision = (int32_t)rev;
	s->protocol = intern(x, jstr(o, "protocol"), &id) == 0 ? id : 0;
	s->rec_inst = (int32_t)jnum(o, "instances", 0);
	s->rec_dis = (int32_t)jnum(o, "disagreements", 0);
	s->rec_unc = (int32_t)jnum(o, "uncertain", 0);
	const cJSON *vp = cJSON_GetObjectItemCaseSensitive(o, "views_present"), *e;
	if (cJSON_IsObject(vp))
		cJSON_ArrayForEach(e, vp)
		{
			struct qa_view *v;
			/* uncertain images count under "uncertain" there; the
			 * instances place them under their most probable class */
			if (e->string && *e->string && strcmp(e->string, "uncertain") &&
			    cJSON_IsNumber(e) && intern_view(x, e->string, &id) == 0 &&
			    (v = view_get(s, id)))
				v->rec_count = e->valuedouble > 0 ? (int32_t)e->valuedouble : 0;
		}
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "missing");
	if (cJSON_IsArray(ms))
		cJSON_ArrayForEach(e, ms)
		{
			struct qa_view *v;
			if (cJSON_IsString(e) && e->valuestring && *e->valuestring &&
			    intern_view(x, e->valuestring, &id) == 0 && (v = view_get(s, id)))
				v->missing = 1;
		}
	study_meta(x, s, o, 1);
	if (!s->first_ms || (t && t < s->first_ms))
		s->first_ms = t;
	if (t > s->last_ms)
		s->last_ms = t;
}

static void take_line(struct usv_qa_index *x, const char *line, size_t len)
{
	cJSON *o;

	x->st.lines++;
	x->gen++;
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return; /* an empty line is nothing */
	o = cJSON_ParseWithLength(line, len);
	if (!cJSON_IsObject(o)) {
		x->st.bad++;
		cJSON_Delete(o);
		return;
	}
	const char *kind = jstr(o, "kind");
	int64_t t = parse_time(jstr(o, "time"));
	if (kind && !strcmp(kind, "study"))
		take_study(x, o, t);
	else if (!kind || !strcmp(kind, "instance"))
		take_instance(x, o, t);
	/* other kinds: future records, ignored */
	cJSON_Delete(o);
}

/* Reads fd from *off up to the last complete line; *off advances. */
static int read_lines(struct usv_qa_index *x, int fd, off_t *off)
{
	size_t have = 0;

	if (!x->buf && !(x->buf = malloc(QA_CHUNK)))
		return -ENOMEM;
	for (;;) {
		ssize_t n = pread(fd, x->buf + have, QA_CHUNK - have, *off + (off_t)have);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		have += (size_t)n;
		size_t start = 0;
		for (;;) {
			char *nl = memchr(x->buf + start, '\n', have - start);
			if (!nl)
				break;
			size_t len = (size_t)(nl - (x->buf + start));
			if (x->skipping) {
				x->skipping = 0;
				x->st.too_long++;
			} else if (len > USV_QA_LINE_MAX) {
				x->st.too_long++;
			} else {
				take_line(x, x->buf + start, len);
			}
			start += len + 1;
		}
		*off += (off_t)start;
		x->st.bytes += start;
		memmove(x->buf, x->buf + start, have - start);
		have -= start;
		if (have > USV_QA_LINE_MAX) {
			/* no '\n' in more than a line's worth: skip to the next one */
			x->skipping = 1;
			*off += (off_t)have;
			x->st.bytes += have;
			have = 0;
		}
	}
}

static int rotated_path(const struct usv_qa_index *x, int k, char *p, size_t len)
{
	return snprintf(p, len, "%s.%d", x->path, k) >= (int)len ? -ENAMETOOLONG : 0;
}

/* Reads rotated file .k from off (whole file: 0); ENOENT is not an error. */
static int read_rotated(struct usv_qa_index *x, int k, off_t off)
{
	char p[4200];
	int fd, r;

	if ((r = rotated_path(x, k, p, sizeof p)) < 0)
		return r;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -errno;
	x->skipping = 0;
	r = read_lines(x, fd, &off);
	x->skipping = 0;
	close(fd);
	return r;
}

/* 1 when fd (with *st) is the file f was taken from. */
static int same_file(int fd, const struct stat *st, const struct qa_file *f)
{
	char b[QA_HEAD];

	if (st->st_dev != f->dev || st->st_ino != f->ino)
		return 0;
	if (!f->headlen)
		return 1;
	return pread(fd, b, f->headlen, 0) == (ssize_t)f->headlen &&
	       !memcmp(b, f->head, f->headlen);
}

/* Number of consecutive rotated files .1 ... present, and in *found the k
 * that is the file f (0 if none, or f NULL). */
static int scan_rotated(const struct usv_qa_index *x, const struct qa_file *f, int *found)
{
	char p[4200];
	struct stat st;
	int k;

	*found = 0;
	for (k = 1; k <= QA_MAX_ROTATED; k++) {
		if (rotated_path(x, k, p, sizeof p) < 0 || stat(p, &st) == -1)
			break;
		if (!*found && f && st.st_dev == f->dev && st.st_ino == f->ino) {
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd != -1) {
				if (fstat(fd, &st) == 0 && same_file(fd, &st, f))
					*found = k;
				close(fd);
			}
		}
	}
	return k - 1;
}

static void take_db_line(void *ctx, const char *line, size_t len)
{
	struct usv_qa_index *x = ctx;

	x->st.bytes += len + 1;
	take_line(x, line, len);
}

int usv_qa_index_use_db(struct usv_qa_index *x, const char *dsn)
{
	if (!x || !dsn || !*dsn)
		return -EINVAL;
	usv_results_db_reader_free(x->db);
	x->db = NULL;
	return usv_results_db_reader_new(dsn, &x->db);
}

const char *usv_qa_index_error(const struct usv_qa_index *x)
{
	return x->db_err;
}

/* From the results database: what was committed since the last call. */
static int update_from_db(struct usv_qa_index *x)
{
	uint64_t before = x->st.lines;
	int n;

	do {
		n = usv_results_db_reader_next(x->db, 5000, take_db_line, x, x->db_err,
		                               sizeof x->db_err);
	} while (n == 5000);
	if (n < 0)
		return n;
	x->db_err[0] = '\0';
	return (int)(x->st.lines - before > INT32_MAX ? INT32_MAX : x->st.lines - before);
}

int usv_qa_index_update(struct usv_qa_index *x)
{
	uint64_t before = x->st.lines;
	struct stat st;
	int fd, r = 0, found;

	if (x->db)
		return update_from_db(x);

	fd = open(x->path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) == -1) {
		r = -errno;
		goto out;
	}
	if (!x->started) {
		int n = scan_rotated(x, NULL, &found);
		for (int k = n; k >= 1 && r == 0; k--)
			r = read_rotated(x, k, 0);
		if (r < 0)
			goto out;
		x->started = 1;
		memset(&x->cur, 0, sizeof x->cur);
		x->cur.dev = st.st_dev;
		x->cur.ino = st.st_ino;
	} else if (!same_file(fd, &st, &x->cur)) {
		int n = scan_rotated(x, &x->cur, &found);
		if (found) { /* rotated: finish it, then the newer rotated files */
			r = read_rotated(x, found, x->cur.off);
			for (int k = found - 1; k >= 1 && r == 0; k--)
				r = read_rotated(x, k, 0);
			x->st.rotations++;
		} else if (st.st_dev != x->cur.dev || st.st_ino != x->cur.ino) {
			/* rotated out of reach: every rotated file is newer */
			for (int k = n; k >= 1 && r == 0; k--)
				r = read_rotated(x, k, 0);
			x->st.rotations++;
		} /* else rewritten in place: only the new content */
		if (r < 0)
			goto out;
		x->skipping = 0;
		memset(&x->cur, 0, sizeof x->cur);
		x->cur.dev = st.st_dev;
		x->cur.ino = st.st_ino;
	} else if (st.st_size < x->cur.off) {
		x->cur.off = 0; /* truncated: read again (duplicates are absorbed) */
		x->skipping = 0;
	}
	if (st.st_size > x->cur.off)
		r = read_lines(x, fd, &x->cur.off);
	if (r == 0 && x->cur.headlen < QA_HEAD && x->cur.off > 0) {
		/* identity: the first bytes read (only whole lines count) */
		size_t want = x->cur.off < QA_HEAD ? (size_t)x->cur.off : QA_HEAD;
		ssize_t got = pread(fd, x->cur.head, want, 0);
		x->cur.headlen = got == (ssize_t)want ? want : 0;
	}
out:
	close(fd);
	if (r < 0)
		return r;
	return (int)(x->st.lines - before > INT32_MAX ? INT32_MAX : x->st.lines - before);
}

void usv_qa_index_stats(const struct usv_qa_index *x, struct usv_qa_index_stats *st)
{
	*st = x->st;
}

size_t usv_qa_index_ninstances(const struct usv_qa_index *x)
{
	return x->nalive;
}

size_t usv_qa_index_nstudies(const struct usv_qa_index *x)
{
	return x->nstudies;
}

int usv_qa_index_instance(const struct usv_qa_index *x, const char *sop_uid,
                          struct usv_qa_instance_info *ii)
{
	if (!x->inst_map.cap || !sop_uid)
		return -ENOENT;
	uint32_t *sl = map_slot(x, &x->inst_map, MAP_INST, sop_uid);
	if (!*sl)
		return -ENOENT;
	const struct qa_inst *in = &x->inst[*sl - 1];
	ii->sop_instance_uid = x->arena.p + in->sop;
	ii->spool_id = x->arena.p + in->spool;
	ii->study_uid = x->arena.p + x->studies[in->study].uid;
	ii->station_name = S(x, in->station);
	ii->outcome = S(x, in->outcome);
	ii->label = S(x, in->label);
	ii->top_label = S(x, in->top);
	ii->technologist_label = S(x, in->tech);
	ii->label_source = S(x, in->source);
	ii->prob = in->prob;
	ii->agrees = in->agrees;
	ii->uncertain = in->uncertain;
	ii->frame = in->frame;
	ii->time_ms = in->time_ms;
	return 0;
}

static const struct qa_study *find_study(const struct usv_qa_index *x, const char *uid)
{
	if (!x->studies_map.cap || !uid)
		return NULL;
	uint32_t *sl = map_slot(x, &x->studies_map, MAP_STUDY, uid);
	return *sl ? &x->studies[*sl - 1] : NULL;
}

int usv_qa_index_study(const struct usv_qa_index *x, const char *study_uid,
                       struct usv_qa_study_info *si)
{
	const struct qa_study *s = find_study(x, study_uid);

	if (!s)
		return -ENOENT;
	memset(si, 0, sizeof *si);
	si->study_uid = x->arena.p + s->uid;
	si->station_name = S(x, s->station);
	si->protocol = S(x, s->protocol);
	if (s->date)
		snprintf(si->study_date, sizeof si->study_date, "%08d", (int)s->date);
	memcpy(si->accession_hash, s->acc, sizeof si->accession_hash);
	si->revision = s->revision;
	si->instances = s->ninst;
	si->disagreements = s->ndis;
	si->uncertain = s->nunc;
	si->rec_instances = s->rec_inst;
	si->rec_disagreements = s->rec_dis;
	si->rec_uncertain = s->rec_unc;
	for (uint16_t i = 0; i < s->nviews; i++)
		si->nmissing += s->views[i].missing;
	return 0;
}

/* A view's cell: an image of it (most probable class) that the
 * technologist labelled otherwise, then an uncertain one (the study
 * record counts those under "uncertain" and may call the view missing:
 * the image may still be it), then missing per the record, then present
 * (instances or the record's count). */
static enum usv_qa_cell view_cell(const struct qa_study *s, const struct qa_view *v)
{
	if (v->ndis)
		return USV_QA_CELL_DISAGREEMENT;
	if (v->nunc)
		return USV_QA_CELL_UNCERTAIN;
	if (s->revision && v->missing)
		return USV_QA_CELL_MISSING;
	if (v->n || (s->revision && v->rec_count > 0))
		return USV_QA_CELL_PRESENT;
	return USV_QA_CELL_NONE;
}

enum usv_qa_cell usv_qa_index_cell(const struct usv_qa_index *x, const char *study_uid,
                                   const char *label)
{
	const struct qa_study *s = find_study(x, study_uid);
	const usv_view_info *vi = label && *label ? usv_view_lookup(label) : NULL;
	long id = intern_find(x, vi ? vi->key : label);

	if (!s || id <= 0)
		return USV_QA_CELL_NONE;
	for (uint16_t i = 0; i < s->nviews; i++)
		if (s->views[i].label == (uint32_t)id)
			return view_cell(s, &s->views[i]);
	return USV_QA_CELL_NONE;
}

/* ---------------- web ---------------- */

struct usv_qa_web {
	pthread_mutex_t mu;
	struct usv_qa_index *x;
	usv_spool *spool;
	char token_file[4096];
	char token[512];
	size_t token_len;
	void (*get_settings)(void *ctx, struct usv_worker_settings *out);
	void *ctx;
	/* sorted views, valid while their gen equals the index's */
	uint32_t *study_order;
	size_t nstudy_order;
	uint64_t study_gen;
	uint32_t *review; /* instance indices: disagreements and uncertain */
	size_t nreview, capreview;
	uint64_t review_gen;
	int last_update_err;
	pthread_t loader; /* the first read, off the request path */
	int loader_started;
};

static int read_token(const char *path, char *tok, size_t toklen, size_t *len, char *errbuf,
                      size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char buf[1024];
	ssize_t n;
	size_t a, b;

	if (fd == -1)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof buf);
	int e = errno;
	close(fd);
	if (n == -1)
		return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	if ((size_t)n == sizeof buf)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: token longer than %zu bytes", path,
		                  sizeof buf - 1);
	for (a = 0; a < (size_t)n && strchr(" \t\r\n", buf[a]); a++)
		;
	for (b = (size_t)n; b > a && strchr(" \t\r\n", buf[b - 1]); b--)
		;
	if (b == a)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: the token file is empty", path);
	if (b - a >= toklen)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: token longer than %zu bytes", path,
		                  toklen - 1);
	for (size_t i = a; i < b; i++)
		if ((unsigned char)buf[i] <= ' ' || (unsigned char)buf[i] >= 127)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "%s: the token holds a space or a non-printable byte",
			                  path);
	memcpy(tok, buf + a, b - a);
	tok[b - a] = 0;
	*len = b - a;
	return 0;
}

static void *preload(void *arg)
{
	struct usv_qa_web *w = arg;

	pthread_mutex_lock(&w->mu);
	w->last_update_err = usv_qa_index_update(w->x) < 0;
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int usv_qa_web_new(const struct usv_qa_web_opts *o, struct usv_qa_web **out, char *errbuf,
                   size_t errlen)
{
	struct usv_qa_web *w = calloc(1, sizeof *w);
	int r;

	if (!w)
		return usv_seterr(errbuf, errlen, -ENOMEM, "qa: out of memory");
	r = usv_qa_index_new(o->spool_dir, &w->x);
	if (r == 0 && o->dsn && *o->dsn)
		r = usv_qa_index_use_db(w->x, o->dsn);
	if (r < 0) {
		usv_qa_index_free(w->x);
		free(w);
		return usv_seterr(errbuf, errlen, r, "%s: %s", o->spool_dir, usv_strerror(r));
	}
	w->spool = o->spool;
	w->get_settings = o->get_settings;
	w->ctx = o->ctx;
	snprintf(w->token_file, sizeof w->token_file, "%s", o->token_file ? o->token_file : "");
	if (w->token_file[0]) {
		r = read_token(w->token_file, w->token, sizeof w->token, &w->token_len, errbuf,
		               errlen);
		if (r < 0) {
			usv_qa_index_free(w->x);
			free(w);
			return r;
		}
	}
	pthread_mutex_init(&w->mu, NULL);
	/* Without it the first visitor after a start would wait for the
	 * whole file (about a second per 100,000 instances); a request that
	 * comes earlier waits on the lock instead. */
	w->loader_started = o->preload && pthread_create(&w->loader, NULL, preload, w) == 0;
	*out = w;
	return 0;
}

void usv_qa_web_free(struct usv_qa_web *w)
{
	if (!w)
		return;
	if (w->loader_started)
		pthread_join(w->loader, NULL);
	pthread_mutex_destroy(&w->mu);
	usv_qa_index_free(w->x);
	free(w->study_order);
	free(w->review);
	explicit_bzero(w->token, sizeof w->token);
	free(w);
}

int usv_qa_web_reload_token(struct usv_qa_web *w, char *errbuf, size_t errlen)
{
	char tok[512];
	size_t len = 0;
	int r;

	if (!w || !w->token_file[0])
		return 0;
	r = read_token(w->token_file, tok, sizeof tok, &len, errbuf, errlen);
	if (r < 0)
		return r;
	pthread_mutex_lock(&w->mu);
	memcpy(w->token, tok, len + 1);
	w->token_len = len;
	pthread_mutex_unlock(&w->mu);
	explicit_bzero(tok, sizeof tok);
	return 0;
}

/* Constant time in the token's length, whatever the candidate. */
static int token_ok(const struct usv_qa_web *w, const char *hdr)
{
	const char *p;
	size_t n;
	unsigned char diff;

	if (!hdr || strncasecmp(hdr, "Bearer ", 7))
		return 0;
	for (p = hdr + 7; *p == ' '; p++)
		;
	n = strlen(p);
	diff = n != w->token_len;
	for (size_t i = 0; i < w->token_len; i++)
		diff |= (unsigned char)(w->token[i] ^ (i < n ? p[i] : 0));
	return diff == 0;
}

/* ---------------- HTML helpers ---------------- */

/* For a query value inside an href (then HTML-escaped by the caller's
 * quoting: %XX never needs escaping). */
static void url_esc(FILE *f, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr("-_.~", c))
			fputc(c, f);
		else
			fprintf(f, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
}

static void put_date(FILE *f, int32_t d)
{
	if (d)
		fprintf(f, "%04d-%02d-%02d", d / 10000, d / 100 % 100, d % 100);
	else
		fputs("&ndash;", f);
}

static void put_time(FILE *f, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!ms || !gmtime_r(&t, &tm)) {
		fputs("&ndash;", f);
		return;
	}
	fprintf(f, "%04d-%02d-%02d %02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	        tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static const char CSS[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fff}"
    "h1{font-size:20px;margin:.3em 0}nav a{margin-right:1.2em}"
    "table{border-collapse:collapse}th,td{padding:3px 6px;text-align:left}"
    "table.list>tbody>tr:nth-child(even){background:#f4f6f8}"
    "table.list>thead th{border-bottom:2px solid #888;vertical-align:bottom}"
    "th.v{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;"
    "font-size:12px;padding:2px;white-space:nowrap}"
    "td.cell{width:20px;height:20px;padding:0;text-align:center;font:bold 12px monospace;"
    "border:1px solid #fff}"
    "td.present{background:#3a9d4f;color:#fff}td.missing{background:#d23c3c;color:#fff}"
    "td.disagreement{background:#e58b1d;color:#fff}td.uncertain{background:#e9d23a;color:#333}"
    "td.none{background:#eceff1;color:#bbb}"
    ".legend span{display:inline-block;padding:0 6px;margin-right:6px}"
    ".hash{font-family:monospace}.num{text-align:right}.muted{color:#777}"
    "form{margin:.6em 0}form label{margin-right:1em}"
    ".pages a,.pages span{margin-right:1em}img.thumb{width:128px;height:128px;"
    "background:#000;display:block}"
    ".err{color:#b00}footer{margin-top:1.5em;color:#777;font-size:12px}";

static void page_head(FILE *f, const char *title, const char *active)
{
	static const char *const nav[][2] = {{"/qa", "Studies"},
	                                     {"/qa/agreement", "Agreement"},
	                                     {"/qa/review", "Disagreements &amp; uncertain"}};

	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	      "<meta name=\"robots\" content=\"noindex\"><title>",
	      f);
	usv_html_esc(f, title);
	fprintf(f, " &ndash; usview QA</title><style>%s</style></head><body>\n<nav>", CSS);
	for (size_t i = 0; i < sizeof nav / sizeof nav[0]; i++)
		fprintf(f, "<a href=\"%s\"%s>%s</a>", nav[i][0],
		        !strcmp(active, nav[i][0]) ? " aria-current=\"page\"" : "", nav[i][1]);
	fputs("</nav>\n<h1>", f);
	usv_html_esc(f, title);
	fputs("</h1>\n", f);
}

static void page_foot(FILE *f, const struct usv_qa_web *w, double t0)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	fprintf(f,
	        "<footer>%zu instances in %zu studies indexed from %s "
	        "(%llu lines, %llu skipped)%s",
	        usv_qa_index_ninstances(w->x), usv_qa_index_nstudies(w->x),
	        w->x->db ? "the results database" : "results.jsonl",
	        (unsigned long long)w->x->st.lines,
	        (unsigned long long)(w->x->st.bad + w->x->st.too_long),
	        w->last_update_err ? "; <span class=\"err\">the last read failed" : "");
	if (w->last_update_err && w->x->db_err[0]) {
		fputs(": ", f);
		usv_html_esc(f, w->x->db_err);
	}
	fprintf(f, "%s; page built in %.1f ms</footer>\n</body></html>\n",
	        w->last_update_err ? "</span>" : "",
	        (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6 - t0);
}

/* ---------------- filters ---------------- */

enum review_kind { REVIEW_ALL, REVIEW_DISAGREEMENT, REVIEW_UNCERTAIN };

struct filter {
	int32_t from, to;      /* 0 = open */
	long station;          /* interned id; 0 = any; -1 = unknown name (nothing matches) */
	const char *station_s; /* as given */
	const char *from_s, *to_s;
	long page; /* 1-based */
	enum review_kind kind;
};

static int parse_filter(const struct usv_qa_web *w, const struct usv_http_request *rq,
                        struct filter *fl, char *err, size_t errlen)
{
	const char *v;

	memset(fl, 0, sizeof *fl);
	fl->page = 1;
	if ((v = usv_http_arg(rq, "page")) && *v) {
		char *end;
		errno = 0;
		fl->page = strtol(v, &end, 10);
		if (errno || *end || fl->page < 1 || fl->page > 10000000)
			return usv_seterr(err, errlen, -EINVAL, "page: not a page number");
	}
	if ((v = usv_http_arg(rq, "from")) && *v) {
		if (!(fl->from = parse_date(v, 1)))
			return usv_seterr(err, errlen, -EINVAL, "from: not a date (YYYY-MM-DD)");
		fl->from_s = v;
	}
	if ((v = usv_http_arg(rq, "to")) && *v) {
		if (!(fl->to = parse_date(v, 1)))
			return usv_seterr(err, errlen, -EINVAL, "to: not a date (YYYY-MM-DD)");
		fl->to_s = v;
	}
	if ((v = usv_http_arg(rq, "station")) && *v) {
		fl->station_s = v;
		fl->station = intern_find(w->x, v);
	}
	if ((v = usv_http_arg(rq, "kind")) && *v) {
		if (!strcmp(v, "disagreement"))
			fl->kind = REVIEW_DISAGREEMENT;
		else if (!strcmp(v, "uncertain"))
			fl->kind = REVIEW_UNCERTAIN;
		else if (strcmp(v, "all"))
			return usv_seterr(err, errlen, -EINVAL,
			                  "kind: one of all, disagreement, uncertain");
	}
	return 0;
}

static int32_t study_date_key(const struct qa_study *s)
{
	return s->date ? s->date : date_of_ms(s->first_ms);
}

static int study_match(const struct qa_study *s, const struct filter *fl)
{
	int32_t d = study_date_key(s);

	if (fl->station < 0 || (fl->station && s->station != (uint32_t)fl->station))
		return 0;
	if (fl->from && d < fl->from)
		return 0;
	if (fl->to && d > fl->to)
		return 0;
	return 1;
}

/* The query string of fl with page p, for links. */
static void query(FILE *f, const char *base, const struct filter *fl, long p)
{
	fputs(base, f);
	fprintf(f, "?page=%ld", p);
	if (fl->from_s) {
		fputs("&amp;from=", f);
		url_esc(f, fl->from_s);
	}
	if (fl->to_s) {
		fputs("&amp;to=", f);
		url_esc(f, fl->to_s);
	}
	if (fl->station_s) {
		fputs("&amp;station=", f);
		url_esc(f, fl->station_s);
	}
	if (fl->kind)
		fprintf(f, "&amp;kind=%s",
		        fl->kind == REVIEW_DISAGREEMENT ? "disagreement" : "uncertain");
}

static void pages(FILE *f, const char *base, const struct filter *fl, size_t total)
{
	long last = total ? (long)((total + USV_QA_PAGE_SIZE - 1) / USV_QA_PAGE_SIZE) : 1;

	fputs("<p class=\"pages\">", f);
	if (fl->page > 1) {
		fputs("<a rel=\"prev\" href=\"", f);
		query(f, base, fl, fl->page - 1 > last ? last : fl->page - 1);
		fputs("\">&larr; newer</a>", f);
	}
	fprintf(f, "<span>page %ld of %ld</span>", fl->page, last);
	if (fl->page < last) {
		fputs("<a rel=\"next\" href=\"", f);
		query(f, base, fl, fl->page + 1);
		fputs("\">older &rarr;</a>", f);
	}
	fputs("</p>\n", f);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static void filter_form(FILE *f, const struct usv_qa_web *w, const char *action,
                        const struct filter *fl, int with_kind)
{
	const struct usv_qa_index *x = w->x;
	uint32_t *st = NULL;
	size_t n = 0;

	fprintf(f,
	        "<form method=\"get\" action=\"%s\"><label>from <input type=\"date\" name=\"from\" "
	        "value=\"",
	        action);
	usv_html_esc(f, fl->from_s);
	fputs("\"></label><label>to <input type=\"date\" name=\"to\" value=\"", f);
	usv_html_esc(f, fl->to_s);
	fputs("\"></label><label>station <select name=\"station\"><option value=\"\">all</option>",
	      f);
	/* the stations of the studies, sorted by name */
	if (x->nstudies && (st = malloc(x->nstudies * sizeof *st))) {
		for (size_t i = 0; i < x->nstudies; i++)
			if (x->studies[i].station)
				st[n++] = x->studies[i].station;
		qsort(st, n, sizeof *st, cmp_u32);
		for (size_t i = 0; i < n; i++) {
			if (i && st[i] == st[i - 1])
				continue;
			fputs("<option", f);
			if (fl->station > 0 && st[i] == (uint32_t)fl->station)
				fputs(" selected", f);
			fputs(" value=\"", f);
			usv_html_esc(f, S(x, st[i]));
			fputs("\">", f);
			usv_html_esc(f, S(x, st[i]));
			fputs("</option>", f);
		}
	}
	free(st);
	fputs("</select></label>", f);
	if (with_kind)
		fprintf(f,
		        "<label>show <select name=\"kind\"><option value=\"all\"%s>both</option>"
		        "<option value=\"disagreement\"%s>disagreements</option>"
		        "<option value=\"uncertain\"%s>uncertain</option></select></label>",
		        fl->kind == REVIEW_ALL ? " selected" : "",
		        fl->kind == REVIEW_DISAGREEMENT ? " selected" : "",
		        fl->kind == REVIEW_UNCERTAIN ? " selected" : "");
	fputs("<button type=\"submit\">Filter</button></form>\n", f);
}

/* ---------------- studies ---------------- */

static int cmp_study(const void *a, const void *b, void *ctx)
{
	const struct usv_qa_index *x = ctx;
	const struct qa_study *s = &x->studies[*(const uint32_t *)a];
	const struct qa_study *t = &x->studies[*(const uint32_t *)b];
	int32_t ds = study_date_key(s), dt = study_date_key(t);

	if (ds != dt)
		return ds < dt ? 1 : -1;
	if (s->last_ms != t->last_ms)
		return s->last_ms < t->last_ms ? 1 : -1;
	return strcmp(x->arena.p + s->uid, x->arena.p + t->uid);
}

static int sort_studies(struct usv_qa_web *w)
{
	struct usv_qa_index *x = w->x;

	if (w->study_order && w->study_gen == x->gen && w->nstudy_order == x->nstudies)
		return 0;
	uint32_t *o = realloc(w->study_order, (x->nstudies ? x->nstudies : 1) * sizeof *o);
	if (!o)
		return -ENOMEM;
	w->study_order = o;
	for (size_t i = 0; i < x->nstudies; i++)
		o[i] = (uint32_t)i;
	qsort_r(o, x->nstudies, sizeof *o, cmp_study, x);
	w->nstudy_order = x->nstudies;
	w->study_gen = x->gen;
	return 0;
}

static const char *const cell_name[] = {"none", "present", "missing", "disagreement", "uncertain"};
static const char cell_letter[] = {'.', 'P', 'M', 'D', 'U'};

static int cmp_label(const void *a, const void *b, void *ctx)
{
	const struct usv_qa_index *x = ctx;
	return strcmp(S(x, *(const uint32_t *)a), S(x, *(const uint32_t *)b));
}

/* The paper's views in their table order, then the other labels by name. */
static int cmp_view(const void *a, const void *b, void *ctx)
{
	const struct usv_qa_index *x = ctx;
	const char *p = S(x, *(const uint32_t *)a), *q = S(x, *(const uint32_t *)b);
	const usv_view_info *vp = usv_view_lookup(p), *vq = usv_view_lookup(q);
	size_t rp = SIZE_MAX, rq = SIZE_MAX;

	for (size_t i = 0; i < usv_view_count(); i++) {
		if (vp && usv_view_at(i) == vp)
			rp = i;
		if (vq && usv_view_at(i) == vq)
			rq = i;
	}
	if (rp != rq)
		return rp < rq ? -1 : 1;
	return strcmp(p, q);
}

static void study_row(FILE *f, const struct usv_qa_index *x, const struct qa_study *s,
                      const uint32_t *cols, size_t ncols)
{
	fputs("<tr class=\"study\" data-study=\"", f);
	usv_html_esc(f, x->arena.p + s->uid);
	fputs("\"><td>", f);
	put_date(f, study_date_key(s));
	fputs("</td><td>", f);
	if (s->station)
		usv_html_esc(f, S(x, s->station));
	else
		fputs("<span class=\"muted\">unknown</span>", f);
	fputs("</td><td class=\"hash\">", f);
	if (s->acc[0])
		usv_html_esc(f, s->acc);
	else
		fputs("&ndash;", f);
	fputs("</td><td>", f);
	if (s->revision) {
		usv_html_esc(f, s->protocol ? S(x, s->protocol) : "(none)");
		fprintf(f, " <span class=\"muted\">r%d</span>", (int)s->revision);
	} else {
		fputs("<span class=\"muted\">pending</span>", f);
	}
	fprintf(f,
	        "</td><td class=\"num\">%u</td><td class=\"num\">%u</td><td class=\"num\">%u</td>",
	        s->ninst, s->ndis, s->nunc);
	for (size_t c = 0; c < ncols; c++) {
		enum usv_qa_cell st = USV_QA_CELL_NONE;
		const struct qa_view *v = NULL;
		for (uint16_t i = 0; i < s->nviews; i++)
			if (s->views[i].label == cols[c]) {
				v = &s->views[i];
				st = view_cell(s, v);
				break;
			}
		fprintf(f, "<td class=\"cell %s\" data-view=\"", cell_name[st]);
		usv_html_esc(f, S(x, cols[c]));
		fputs("\" title=\"", f);
		usv_html_esc(f, S(x, cols[c]));
		fprintf(f, ": %s", cell_name[st]);
		if (v && (v->n || v->ndis || v->nunc))
			fprintf(f, " (%u image%s, %u disagreeing, %u uncertain)", v->n,
			        v->n == 1 ? "" : "s", v->ndis, v->nunc);
		if (v && s->revision && v->missing && v->n)
			fputs("; the study record is older than these images", f);
		fprintf(f, "\">%c</td>", cell_letter[st]);
	}
	fputs("</tr>\n", f);
}

/* A view shows as a column when a study on the page has it as a state. */
static int view_shown(const struct qa_study *s, const struct qa_view *v)
{
	return view_cell(s, v) != USV_QA_CELL_NONE;
}

static int render_studies(struct usv_qa_web *w, const struct filter *fl, FILE *f)
{
	struct usv_qa_index *x = w->x;
	size_t total = 0, skip = (size_t)(fl->page - 1) * USV_QA_PAGE_SIZE;
	uint32_t rows[USV_QA_PAGE_SIZE];
	size_t nrows = 0;

	if (sort_studies(w) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < w->nstudy_order; i++) {
		const struct qa_study *s = &x->studies[w->study_order[i]];
		if (!study_match(s, fl))
			continue;
		if (total >= skip && nrows < USV_QA_PAGE_SIZE)
			rows[nrows++] = w->study_order[i];
		total++;
	}
	/* columns: every view with a state in a study of this page, by name */
	uint32_t *cols = NULL;
	size_t ncols = 0, capcols = 0;
	for (size_t r = 0; r < nrows; r++) {
		const struct qa_study *s = &x->studies[rows[r]];
		for (uint16_t i = 0; i < s->nviews; i++) {
			if (!view_shown(s, &s->views[i]))
				continue;
			size_t c = 0;
			while (c < ncols && cols[c] != s->views[i].label)
				c++;
			if (c < ncols)
				continue;
			if (grow((void **)&cols, &capcols, ncols + 1, sizeof *cols) < 0) {
				free(cols);
				return -ENOMEM;
			}
			cols[ncols++] = s->views[i].label;
		}
	}
	qsort_r(cols, ncols, sizeof *cols, cmp_view, x);

	page_head(f, "Studies", "/qa");
	filter_form(f, w, "/qa", fl, 0);
	fputs("<p class=\"legend\"><span style=\"background:#3a9d4f;color:#fff\">P present</span>"
	      "<span style=\"background:#d23c3c;color:#fff\">M missing</span>"
	      "<span style=\"background:#e58b1d;color:#fff\">D disagreement</span>"
	      "<span style=\"background:#e9d23a\">U uncertain</span>"
	      "<span style=\"background:#eceff1\">. not in this study</span></p>\n",
	      f);
	fprintf(f, "<p class=\"summary\"><span id=\"total\">%zu</span> stud%s</p>\n", total,
	        total == 1 ? "y" : "ies");
	pages(f, "/qa", fl, total);
	fputs("<table class=\"list studies\"><thead><tr><th>Study date</th><th>Station</th>"
	      "<th>Accession (hash)</th><th>Protocol</th><th class=\"num\">Images</th>"
	      "<th class=\"num\">Disagree</th><th class=\"num\">Uncertain</th>",
	      f);
	for (size_t c = 0; c < ncols; c++) {
		fputs("<th class=\"v\">", f);
		usv_html_esc(f, S(x, cols[c]));
		fputs("</th>", f);
	}
	fputs("</tr></thead><tbody>\n", f);
	for (size_t r = 0; r < nrows; r++)
		study_row(f, x, &x->studies[rows[r]], cols, ncols);
	fputs("</tbody></table>\n", f);
	if (!nrows)
		fputs("<p class=\"muted\">No study matches.</p>\n", f);
	pages(f, "/qa", fl, total);
	free(cols);
	return 0;
}

/* ---------------- agreement ---------------- */

struct agree {
	uint64_t a[2], d[2]; /* [0] 7 days, [1] 30 days */
};

static void rate_cells(FILE *f, const struct agree *g, int k)
{
	uint64_t n = g->a[k] + g->d[k];

	if (n)
		fprintf(f, "<td class=\"num rate\">%.1f%%</td>",
		        100.0 * (double)g->a[k] / (double)n);
	else
		fputs("<td class=\"num rate muted\">&ndash;</td>", f);
	fprintf(f, "<td class=\"num\">%llu</td><td class=\"num\">%llu</td>",
	        (unsigned long long)g->a[k], (unsigned long long)g->d[k]);
}

static void agree_table(FILE *f, const struct usv_qa_index *x, const char *what, const char *id,
                        const struct agree *g, const struct agree *total)
{
	uint32_t *ids = malloc(x->nstr * sizeof *ids);
	size_t n = 0;

	fprintf(f,
	        "<h2>By %s</h2>\n<table class=\"list agreement\" id=\"%s\"><thead><tr><th>%s</th>"
	        "<th class=\"num\">7 days</th><th class=\"num\">agree</th>"
	        "<th class=\"num\">disagree</th><th class=\"num\">30 days</th>"
	        "<th class=\"num\">agree</th><th class=\"num\">disagree</th></tr></thead><tbody>\n",
	        what, id, what);
	for (size_t i = 0; ids && i < x->nstr; i++)
		if (g[i].a[1] + g[i].d[1])
			ids[n++] = (uint32_t)i;
	if (ids)
		qsort_r(ids, n, sizeof *ids, cmp_label, (void *)x);
	for (size_t k = 0; k < n; k++) {
		fputs("<tr data-key=\"", f);
		usv_html_esc(f, S(x, ids[k]));
		fputs("\"><td>", f);
		if (ids[k])
			usv_html_esc(f, S(x, ids[k]));
		else
			fputs("<span class=\"muted\">unknown</span>", f);
		fputs("</td>", f);
		rate_cells(f, &g[ids[k]], 0);
		rate_cells(f, &g[ids[k]], 1);
		fputs("</tr>\n", f);
	}
	fputs("<tr class=\"total\"><th>all</th>", f);
	rate_cells(f, total, 0);
	rate_cells(f, total, 1);
	fputs("</tr>\n</tbody></table>\n", f);
	free(ids);
}

static int render_agreement(struct usv_qa_web *w, FILE *f)
{
	struct usv_qa_index *x = w->x;
	struct agree *by_station = calloc(x->nstr, sizeof *by_station);
	struct agree *by_class = calloc(x->nstr, sizeof *by_class);
	struct agree total = {{0, 0}, {0, 0}};
	struct timespec ts;
	uint64_t unc[2] = {0, 0};

	if (!by_station || !by_class) {
		free(by_station);
		free(by_class);
		return -ENOMEM;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	for (size_t i = 0; i < x->ninst; i++) {
		const struct qa_inst *in = &x->inst[i];
		if (!in->alive || !in->done || in->time_ms < now - 30 * QA_DAY_MS)
			continue;
		int recent = in->time_ms >= now - 7 * QA_DAY_MS;
		if (in->uncertain) {
			unc[1]++;
			unc[0] += (uint64_t)recent;
		}
		if (in->agrees < 0)
			continue;
		uint32_t st =
		    x->studies[in->study].station ? x->studies[in->study].station : in->station;
		struct agree *g[3] = {&by_station[st], &by_class[in->tech], &total};
		for (int k = 0; k < 3; k++) {
			if (in->agrees) {
				g[k]->a[1]++;
				g[k]->a[0] += (uint64_t)recent;
			} else {
				g[k]->d[1]++;
				g[k]->d[0] += (uint64_t)recent;
			}
		}
	}
	page_head(f, "Agreement with the technologists' labels", "/qa/agreement");
	fputs("<p>Agreement = agree / (agree + disagree) over the images that carry a "
	      "technologist's label, by the time they were classified. The class is the "
	      "technologist's label.</p>\n",
	      f);
	fprintf(f, "<p>Uncertain images: %llu in 7 days, %llu in 30 days.</p>\n",
	        (unsigned long long)unc[0], (unsigned long long)unc[1]);
	agree_table(f, x, "station", "by-station", by_station, &total);
	agree_table(f, x, "class", "by-class", by_class, &total);
	free(by_station);
	free(by_class);
	return 0;
}

/* ---------------- review list ---------------- */

static int cmp_inst_time(const void *a, const void *b, void *ctx)
{
	const struct usv_qa_index *x = ctx;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	int64_t ti = x->inst[i].time_ms, tj = x->inst[j].time_ms;

	if (ti != tj)
		return ti < tj ? 1 : -1;
	return (i < j) - (i > j); /* later in the file first */
}

static int sort_review(struct usv_qa_web *w)
{
	struct usv_qa_index *x = w->x;

	if (w->review && w->review_gen == x->gen)
		return 0;
	w->nreview = 0;
	for (size_t i = 0; i < x->ninst; i++) {
		const struct qa_inst *in = &x->inst[i];
		if (!in->alive || !in->done || (in->agrees != 0 && !in->uncertain))
			continue;
		if (grow((void **)&w->review, &w->capreview, w->nreview + 1, sizeof *w->review) < 0)
			return -ENOMEM;
		w->review[w->nreview++] = (uint32_t)i;
	}
	if (!w->review && grow((void **)&w->review, &w->capreview, 1, sizeof *w->review) < 0)
		return -ENOMEM;
	qsort_r(w->review, w->nreview, sizeof *w->review, cmp_inst_time, x);
	w->review_gen = x->gen;
	return 0;
}

static int render_review(struct usv_qa_web *w, const struct filter *fl, FILE *f)
{
	struct usv_qa_index *x = w->x;
	size_t total = 0, skip = (size_t)(fl->page - 1) * USV_QA_PAGE_SIZE, shown = 0;

	if (sort_review(w) < 0)
		return -ENOMEM;
	page_head(f, "Disagreements and uncertain images", "/qa/review");
	filter_form(f, w, "/qa/review", fl, 1);
	for (size_t i = 0; i < w->nreview; i++) {
		const struct qa_inst *in = &x->inst[w->review[i]];
		if (!study_match(&x->studies[in->study], fl) ||
		    (fl->kind == REVIEW_DISAGREEMENT && in->agrees != 0) ||
		    (fl->kind == REVIEW_UNCERTAIN && !in->uncertain))
			continue;
		total++;
	}
	fprintf(f, "<p class=\"summary\"><span id=\"total\">%zu</span> image%s</p>\n", total,
	        total == 1 ? "" : "s");
	pages(f, "/qa/review", fl, total);
	fputs("<table class=\"list review\"><thead><tr><th>Image</th><th>Classified</th>"
	      "<th>Study date</th><th>Station</th><th>Accession (hash)</th><th>Model</th>"
	      "<th>Technologist</th><th>Finding</th></tr></thead><tbody>\n",
	      f);
	for (size_t i = 0, k = 0; i < w->nreview && shown < USV_QA_PAGE_SIZE; i++) {
		const struct qa_inst *in = &x->inst[w->review[i]];
		const struct qa_study *s = &x->studies[in->study];
		if (!study_match(s, fl) || (fl->kind == REVIEW_DISAGREEMENT && in->agrees != 0) ||
		    (fl->kind == REVIEW_UNCERTAIN && !in->uncertain))
			continue;
		if (k++ < skip)
			continue;
		shown++;
		const char *spool = x->arena.p + in->spool;
		int has_id = usv_spool_id_ok(spool);
		fprintf(f, "<tr class=\"finding%s%s\" data-spool-id=\"",
		        in->agrees == 0 ? " disagreement" : "", in->uncertain ? " uncertain" : "");
		usv_html_esc(f, spool);
		fputs("\"><td>", f);
		if (has_id)
			fprintf(f,
			        "<img class=\"thumb\" loading=\"lazy\" width=\"%d\" height=\"%d\" "
			        "alt=\"crop of %s\" src=\"/qa/thumb/%s.png\">",
			        USV_QA_THUMB_SIZE, USV_QA_THUMB_SIZE, spool, spool);
		else
			fputs("<span class=\"muted\">no spool id</span>", f);
		fputs("</td><td>", f);
		put_time(f, in->time_ms);
		fputs("</td><td>", f);
		put_date(f, study_date_key(s));
		fputs("</td><td>", f);
		usv_html_esc(f, S(x, s->station ? s->station : in->station));
		fputs("</td><td class=\"hash\">", f);
		if (s->acc[0])
			usv_html_esc(f, s->acc);
		else
			fputs("&ndash;", f);
		fputs("</td><td class=\"model\">", f);
		usv_html_esc(f, in->top ? S(x, in->top) : S(x, in->label));
		fprintf(f, " <span class=\"muted\">%.0f%%</span></td><td class=\"tech\">",
		        100.0 * in->prob);
		if (in->tech) {
			usv_html_esc(f, S(x, in->tech));
			if (in->source) {
				fputs(" <span class=\"muted\">(", f);
				usv_html_esc(f, S(x, in->source));
				fputs(")</span>", f);
			}
		} else {
			fputs("<span class=\"muted\">none</span>", f);
		}
		fprintf(f, "</td><td>%s%s%s</td></tr>\n", in->agrees == 0 ? "disagreement" : "",
		        in->agrees == 0 && in->uncertain ? ", " : "",
		        in->uncertain ? "uncertain" : "");
	}
	fputs("</tbody></table>\n", f);
	if (!shown)
		fputs("<p class=\"muted\">Nothing to review.</p>\n", f);
	pages(f, "/qa/review", fl, total);
	return 0;
}

/* ---------------- thumbnails ---------------- */

static int thumb(struct usv_qa_web *w, const char *id, struct usv_http_reply *rep, char *err,
                 size_t errlen)
{
	struct usv_qa_index *x = w->x;
	char path[4200], reason[512] = "";
	struct stat st;
	usv_prepare_opts o;
	usv_prepared *p = NULL;
	usv_crop_rule rules[USV_WORKER_MAX_CROPS];
	struct usv_worker_settings *set = NULL;
	int frame = 0, r;

	if (!w->spool || usv_spool_path(w->spool, USV_SPOOL_DONE, id, path, sizeof path) < 0) {
		rep->status = 404;
		return usv_seterr(err, errlen, -ENOENT, "no spool to take thumbnails from");
	}
	if (stat(path, &st) == -1) {
		rep->status = 404;
		return usv_seterr(err, errlen, -ENOENT,
		                  "instance %s is no longer in the spool (done/; removed by "
		                  "retention, or never classified)",
		                  id);
	}
	/* the frame its first result was computed on */
	for (size_t i = x->ninst; i-- > 0;)
		if (x->inst[i].alive && !strcmp(x->arena.p + x->inst[i].spool, id)) {
			frame = x->inst[i].frame;
			break;
		}
	usv_prepare_opts_init(&o);
	if (w->get_settings && (set = malloc(sizeof *set))) {
		w->get_settings(w->ctx, set);
		size_t n = set->ncrops < USV_WORKER_MAX_CROPS ? set->ncrops : USV_WORKER_MAX_CROPS;
		for (size_t i = 0; i < n; i++)
			rules[i] = (usv_crop_rule){.manufacturer = set->crops[i].manufacturer,
			                           .model = set->crops[i].model,
			                           .rows = set->crops[i].rows,
			                           .cols = set->crops[i].cols,
			                           .centred = set->crops[i].centred,
			                           .box = set->crops[i].box};
		o.rules = rules;
		o.nrules = n;
	}
	o.frame = frame;
	o.max_frames = 1;
	o.colour_threshold = -1; /* show Doppler images too */
	o.out_size = USV_QA_THUMB_SIZE;
	r = usv_dcm_prepare(path, &o, &p, reason, sizeof reason);
	if (r < 0 && frame > 0) { /* the frame may be gone from a re-sent file */
		o.frame = 0;
		r = usv_dcm_prepare(path, &o, &p, reason, sizeof reason);
	}
	free(set);
	if (r < 0 || !p || !p->nframes || !p->frames[0].img) {
		usv_prepared_free(p);
		rep->status = 500;
		return usv_seterr(err, errlen, r < 0 ? r : -EIO, "%s: cannot render: %s", id,
		                  reason[0] ? reason : usv_strerror(r < 0 ? r : -EIO));
	}
	const usv_image *img = p->frames[0].img;
	png_image pi;
	png_alloc_size_t size = 0;
	memset(&pi, 0, sizeof pi);
	pi.version = PNG_IMAGE_VERSION;
	pi.width = (png_uint_32)img->w;
	pi.height = (png_uint_32)img->h;
	pi.format = img->c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
	if (!png_image_write_to_memory(&pi, NULL, &size, 0, img->px, 0, NULL) ||
	    !(rep->body = malloc(size)) ||
	    !png_image_write_to_memory(&pi, rep->body, &size, 0, img->px, 0, NULL)) {
		png_image_free(&pi);
		usv_prepared_free(p);
		free(rep->body);
		rep->body = NULL;
		rep->status = 500;
		return usv_seterr(err, errlen, -ENOMEM, "%s: PNG encoding failed", id);
	}
	usv_prepared_free(p);
	rep->len = size;
	rep->status = 200;
	rep->type = "image/png";
	return 0;
}

/* ---------------- route ---------------- */

static void add_header(struct usv_http_reply *rep, const char *name, const char *value)
{
	if (rep->nheaders >= USV_HTTP_MAX_HEADERS)
		return;
	rep->header_name[rep->nheaders] = name;
	snprintf(rep->header_value[rep->nheaders], sizeof rep->header_value[0], "%s", value);
	rep->nheaders++;
}

static int text_reply(struct usv_http_reply *rep, unsigned status, const char *msg)
{
	size_t n = strlen(msg);

	rep->body = malloc(n + 2);
	if (!rep->body)
		return -ENOMEM;
	memcpy(rep->body, msg, n);
	rep->body[n] = '\n';
	rep->body[n + 1] = 0;
	rep->len = n + 1;
	rep->status = status;
	rep->type = "text/plain; charset=utf-8";
	return 0;
}

/* "/qa/thumb/<id>.png" -> id, strictly [0-9a-f]{16}-[0-9a-f]{8}. */
static int thumb_id(const char *url, char *id, size_t idlen)
{
	static const char pre[] = "/qa/thumb/";
	size_t n;

	if (strncmp(url, pre, sizeof pre - 1))
		return -EINVAL;
	url += sizeof pre - 1;
	n = strlen(url);
	if (n < 5 || strcmp(url + n - 4, ".png") || n - 4 >= idlen)
		return -EINVAL;
	memcpy(id, url, n - 4);
	id[n - 4] = 0;
	return usv_spool_id_ok(id) ? 0 : -EINVAL;
}

int usv_qa_web_route(void *ctx, const struct usv_http_request *rq, struct usv_http_reply *rep)
{
	struct usv_qa_web *w = ctx;
	const char *url = rq->url;
	char err[512] = "";
	struct timespec ts;
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	double t0 = (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
	add_header(rep, "Cache-Control", "no-store");
	add_header(rep, "X-Content-Type-Options", "nosniff");
	add_header(rep, "Content-Security-Policy",
	           "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
	           "form-action 'self'; frame-ancestors 'none'");
	add_header(rep, "Referrer-Policy", "no-referrer");
	pthread_mutex_lock(&w->mu);
	if (w->token_len && !token_ok(w, usv_http_header(rq, "Authorization"))) {
		pthread_mutex_unlock(&w->mu);
		add_header(rep, "WWW-Authenticate", "Bearer realm=\"usview QA\"");
		return text_reply(rep, 401, "401 unauthorized: send Authorization: Bearer <token>");
	}
	int u = usv_qa_index_update(w->x);
	w->last_update_err = u < 0;

	if (!strncmp(url, "/qa/thumb/", 10)) {
		char id[USV_SPOOL_ID_LEN + 8];
		if (thumb_id(url, id, sizeof id) < 0)
			r = text_reply(rep, 404,
			               "404 not found: not a thumbnail name "
			               "(/qa/thumb/<spool id>.png)");
		else if (thumb(w, id, rep, err, sizeof err) < 0)
			r = text_reply(rep, rep->status ? rep->status : 500, err);
		pthread_mutex_unlock(&w->mu);
		return r;
	}
	int which = !strcmp(url, "/qa") || !strcmp(url, "/qa/") ? 1
	            : !strcmp(url, "/qa/agreement")             ? 2
	            : !strcmp(url, "/qa/review")                ? 3
	                                                        : 0;
	if (!which) {
		pthread_mutex_unlock(&w->mu);
		return text_reply(rep, 404, "404 not found");
	}
	struct filter fl;
	if (parse_filter(w, rq, &fl, err, sizeof err) < 0) {
		pthread_mutex_unlock(&w->mu);
		return text_reply(rep, 400, err);
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		pthread_mutex_unlock(&w->mu);
		return -ENOMEM;
	}
	r = which == 1   ? render_studies(w, &fl, f)
	    : which == 2 ? render_agreement(w, f)
	                 : render_review(w, &fl, f);
	if (r == 0)
		page_foot(f, w, t0);
	pthread_mutex_unlock(&w->mu);
	if (fclose(f) != 0 && r == 0)
		r = -ENOMEM;
	if (r < 0) {
		free(buf);
		return r;
	}
	rep->body = buf;
	rep->len = len;
	rep->status = 200;
	rep->type = "text/html; charset=utf-8";
	return 0;
}
