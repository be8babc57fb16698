/*
 * NAME
 *	study.c - the QA study tracker (study.h)
 *
 * DESIGN
 *	One file per study, <spool>/studies/<h>.json, h = the first 32 hex
 *	digits of SHA-256 of the Study Instance UID. The file is the whole
 *	state of the study and is only ever replaced, never edited: write
 *	studies/.<h>.tmp, fsync it, rename it over <h>.json, fsync studies/
 *	(as redis writes its RDB). A crash leaves either the old or the new
 *	state; leftover .tmp files are deleted at start.
 *
 *	State (JSON object):
 *	  study_uid
 *	  seq           bumped by every instance that changes the study
 *	  last_change   wall-clock seconds of the last change: the quiet
 *	                timer, so it survives restarts
 *	  revision      last revision whose line is in results.jsonl (0: none)
 *	  written_seq   seq that revision described; dirty = seq > written_seq
 *	  written_time  when it was written (retention)
 *	  pending       0, or the revision being committed, with
 *	  pending_seq, pending_record (the line without "kind", "time" and
 *	  "outputs") and pending_outputs (the study SRs already put)
 *	  instances     [{sop, class, series, spool_id, outcome, label, ...}]
 *
 *	Commit of revision N = revision + 1 of a quiet, dirty study:
 *	  A. under the tracker lock: compute the record from the state, put
 *	     the study SRs into the outboxes (durable), store pending = N
 *	     with the record and the outputs (durable state file);
 *	  B. append the line ({"kind": "study", "time", ...record, outputs})
 *	     to results.jsonl and fdatasync it;
 *	  C. under the lock: revision = N, written_seq = pending_seq,
 *	     pending = 0 (durable state file).
 *	A SIGKILL before the end of A leaves no pending revision: the study
 *	is still dirty and A is done again later, with the same revision and
 *	so the same derived SR UIDs (the outbox may then hold the same SR
 *	twice: a re-send of one object, which the receiver recognises). A
 *	kill between A and C leaves a pending revision: on start, and after
 *	any failure of B, the line is looked for in results.jsonl and
 *	results.jsonl.1 (a rotation right after B moved it there); if it is
 *	there only C runs, else B and C. So each revision's line is in the
 *	index exactly once. The lookup accepts a record anywhere in a line
 *	(after a torn line without its '\n').
 *
 *	Instances that arrive during A wait on the lock; during B they go
 *	on. Either way their change raises seq above pending_seq, so the
 *	study is dirty again after C and the next revision follows after
 *	another quiet period.
 *	A report equal to the recorded one (the worker's at-least-once
 *	redelivery after a crash) changes nothing, so it never makes a
 *	revision; one that differs only in its spool id (the modality sent
 *	the instance again) replaces the entry, for the study SR's source
 *	file, without making a revision either.
 *
 *	In memory there is one small entry per study (times, counters); the
 *	instances are read from the file when needed. One mutex guards the
 *	entries and every state file write, so notes from several workers
 *	are serialised (one file replace each). The thread wakes at the next
 *	due time, at least once a second, and on usv_study_tracker_wake().
 *	Studies written, clean, and unchanged for spool.retention_h.done
 *	are forgotten (their file is deleted; 0 keeps them). An instance
 *	of a forgotten study starts it again at revision 1.
 *
 *	A study SR needs the patient and study modules: they are read from
 *	the first done instance of the study still in done/ when the
 *	revision is committed. Without one (retention removed them all) the
 *	record is written without SR (logged); so is a study whose data
 *	make no valid SR. Outbox and disk failures are retried.
 */
#include "study.h"

#include "usv/dcm_result.h"
#include "usv/dcm_study_sr.h"
#include "usv/err.h"
#include "usv/sha256.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define HASH_LEN 32
#define RETRY_S 10.0 /* a failed commit is tried again after this */

struct entry {
	char uid[USV_UID_MAX];
	char hash[HASH_LEN + 1];
	double last_change, written_time, retry_at;
	unsigned revision, pending;
	double seq, written_seq;
	int checked; /* a pending revision is known to be absent from the index */
};

struct usv_study_tracker {
	struct usv_study_env env;
	char model[65];
	char version[64];
	char dir[PATH_MAX];
	int dfd;
	unsigned delay_ms;  /* USV_STUDY_COMMIT_DELAY_MS (tests): pause between steps */
	pthread_mutex_t mu; /* entries, state files */
	struct entry *e;
	size_t n, cap;
	struct usv_study_settings *set; /* the tracker thread's copy */
	pthread_mutex_t run_mu;         /* one pass at a time */
	pthread_t thread;
	int started;
	pthread_mutex_t wmu; /* with wcv: stop, kick */
	pthread_cond_t wcv;
	int stop, kick;
};

/* ---- small helpers ---------------------------------------------------- */

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void tlog(struct usv_study_tracker *t, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!t->env.log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	t->env.log(t->env.ctx, level, buf);
}

static void study_hash(const char *uid, char out[HASH_LEN + 1])
{
	usv_sha256 c;
	uint8_t d[32];
	char hex[65];

	usv_sha256_init(&c);
	usv_sha256_update(&c, uid, strlen(uid));
	usv_sha256_final(&c, d);
	usv_sha256_hex(d, hex);
	memcpy(out, hex, HASH_LEN);
	out[HASH_LEN] = '\0';
}

static const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

static void jset(cJSON *o, const char *key, cJSON *v)
{
	if (!v)
		return;
	if (cJSON_GetObjectItemCaseSensitive(o, key))
		cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
	else
		cJSON_AddItemToObject(o, key, v);
}

static void jset_num(cJSON *o, const char *key, double v)
{
	jset(o, key, cJSON_CreateNumber(v));
}

/* The canonical key of a view label (usv_view_lookup), else the label. */
static const char *view_key(const char *label)
{
	const usv_view_info *v = usv_view_lookup(label);
	return v ? v->key : label;
}

static void iso_time(double t, char *buf, size_t len)
{
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)((t - (double)s) * 1000.0) % 1000);
}

/* ---- state files -------------------------------------------------------- */

/* Reads studies/<hash>.json. -ENOENT, -EINVAL (not a state), -errno. */
static int state_load(struct usv_study_tracker *t, const char *name, cJSON **out)
{
	int fd = openat(t->dfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t got = 0;

	if (fd == -1)
		return -errno;
	if (fstat(fd, &st) || st.st_size > (64 << 20)) {
		int e = errno ? errno : EFBIG;
		close(fd);
		return -e;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)(st.st_size - got));
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	close(fd);
	buf[got] = '\0';
	cJSON *o = cJSON_Parse(buf);
	free(buf);
	if (!o || !cJSON_IsObject(o) || !*jstr(o, "study_uid") ||
	    !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "instances"))) {
		cJSON_Delete(o);
		return -EINVAL;
	}
	*out = o;
	return 0;
}

/* Replaces studies/<hash>.json durably (tmp, fsync, rename, fsync dir). */
static int state_save(struct usv_study_tracker *t, const char *hash, const cJSON *o)
{
	char tmp[HASH_LEN + 8], name[HASH_LEN + 8];
	char *text = cJSON_PrintUnformatted(o);
	size_t len, off = 0;
	int fd, r = 0;

	if (!text)
		return -ENOMEM;
	snprintf(tmp, sizeof tmp, ".%s.tmp", hash);
	snprintf(name, sizeof name, "%s.json", hash);
	len = strlen(text);
	fd = openat(t->dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		r = -errno;
		free(text);
		return r;
	}
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			r = w == -1 ? -errno : -EIO;
			break;
		}
		off += (size_t)w;
	}
	free(text);
	if (r == 0 && fsync(fd) == -1)
		r = -errno;
	if (close(fd) == -1 && r == 0)
		r = -errno;
	if (r == 0 && renameat(t->dfd, tmp, t->dfd, name) == -1)
		r = -errno;
	if (r < 0) {
		unlinkat(t->dfd, tmp, 0);
		return r;
	}
	return fsync(t->dfd) == -1 ? -errno : 0;
}

static void entry_from_state(struct entry *e, const cJSON *o)
{
	e->seq = jnum(o, "seq");
	e->written_seq = jnum(o, "written_seq");
	e->last_change = jnum(o, "last_change");
	e->written_time = jnum(o, "written_time");
	e->revision = (unsigned)jnum(o, "revision");
	e->pending = (unsigned)jnum(o, "pending");
}

static struct entry *entry_find(struct usv_study_tracker *t, const char *hash)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->e[i].hash, hash))
			return &t->e[i];
	return NULL;
}

static struct entry *entry_add(struct usv_study_tracker *t, const char *uid, const char *hash)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct entry *e = realloc(t->e, cap * sizeof *e);
		if (!e)
			return NULL;
		t->e = e;
		t->cap = cap;
	}
	struct entry *e = &t->e[t->n++];
	memset(e, 0, sizeof *e);
	snprintf(e->uid, sizeof e->uid, "%s", uid);
	memcpy(e->hash, hash, HASH_LEN + 1);
	return e;
}

/* ---- notes -------------------------------------------------------------- */

static cJSON *instance_json(const struct usv_qa_instance *qi)
{
	cJSON *o = cJSON_CreateObject();
	int done = !strcmp(qi->outcome, "done");

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "sop", qi->sop_instance_uid);
	cJSON_AddStringToObject(o, "class", qi->sop_class_uid);
	cJSON_AddStringToObject(o, "series", qi->series_uid);
	cJSON_AddStringToObject(o, "spool_id", qi->spool_id);
	cJSON_AddStringToObject(o, "outcome", qi->outcome);
	cJSON_AddStringToObject(o, "label", done ? qi->label : "");
	cJSON_AddNumberToObject(o, "prob", done ? qi->prob : 0.0);
	cJSON_AddBoolToObject(o, "uncertain", done && qi->uncertain);
	cJSON_AddStringToObject(o, "tech", qi->technologist_label);
	cJSON_AddNumberToObject(o, "agrees", done ? qi->agrees : -1);
	cJSON_AddStringToObject(o, "sd", qi->study_description);
	cJSON_AddStringToObject(o, "rpd", qi->requested_procedure_description);
	cJSON_AddStringToObject(o, "pn", qi->protocol_name);
	cJSON_AddStringToObject(o, "station", qi->station_name);
	cJSON_AddStringToObject(o, "date", qi->study_date);
	cJSON_AddStringToObject(o, "acc", qi->accession_hash);
	return o;
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

int usv_study_note(struct usv_study_tracker *t, const struct usv_qa_instance *qi_in)
{
	struct usv_qa_instance qi;
	char hash[HASH_LEN + 1], name[HASH_LEN + 8];
	cJSON *st = NULL, *inst, *insts;
	int r = 0;

	if (!t || !qi_in)
		return -EINVAL;
	/* an instance whose file named no study (or no instance) belongs to
	 * no study: nothing to track */
	if (!qi_in->study_uid || !*qi_in->study_uid || !qi_in->sop_instance_uid ||
	    !*qi_in->sop_instance_uid)
		return 0;
	if (strlen(qi_in->study_uid) >= USV_UID_MAX)
		return -EINVAL;
	qi = *qi_in;
	qi.spool_id = nz(qi.spool_id);
	qi.outcome = nz(qi.outcome);
	qi.series_uid = nz(qi.series_uid);
	qi.sop_class_uid = nz(qi.sop_class_uid);
	qi.study_description = nz(qi.study_description);
	qi.requested_procedure_description = nz(qi.requested_procedure_description);
	qi.protocol_name = nz(qi.protocol_name);
	qi.station_name = nz(qi.station_name);
	qi.study_date = nz(qi.study_date);
	qi.accession_hash = nz(qi.accession_hash);
	qi.label = nz(qi.label);
	qi.technologist_label = nz(qi.technologist_label);
	qi.label_source = nz(qi.label_source);
	inst = instance_json(&qi);
	if (!inst)
		return -ENOMEM;
	study_hash(qi.study_uid, hash);
	snprintf(name, sizeof name, "%s.json", hash);

	pthread_mutex_lock(&t->mu);
	struct entry *e = entry_find(t, hash);
	if (e) {
		r = state_load(t, name, &st);
		if (r == 0 && strcmp(jstr(st, "study_uid"), qi.study_uid) != 0)
			r = -EEXIST; /* a hash collision: refuse rather than mix */
		if (r < 0)
			goto out;
	} else {
		st = cJSON_CreateObject();
		if (!st || !cJSON_AddStringToObject(st, "study_uid", qi.study_uid) ||
		    !cJSON_AddArrayToObject(st, "instances")) {
			r = -ENOMEM;
			goto out;
		}
	}
	insts = cJSON_GetObjectItemCaseSensitive(st, "instances");
	int found = -1, i = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, insts)
	{
		if (!strcmp(jstr(it, "sop"), qi.sop_instance_uid)) {
			found = i;
			break;
		}
		i++;
	}
	int change = 1;
	if (found >= 0) {
		cJSON *old = cJSON_GetArrayItem(insts, found);
		if (cJSON_Compare(old, inst, 1))
			goto out; /* the same report again: nothing changes */
		/* the same result from another copy of the instance (sent
		 * again: a new spool id): keep the newer file for the SR,
		 * no new revision */
		cJSON *same = cJSON_Duplicate(old, 1);
		if (same) {
			jset(same, "spool_id", cJSON_CreateString(qi.spool_id));
			change = !cJSON_Compare(same, inst, 1);
			cJSON_Delete(same);
		}
		cJSON_ReplaceItemInArray(insts, found, inst);
	} else {
		cJSON_AddItemToArray(insts, inst);
	}
	inst = NULL;
	if (change) {
		jset_num(st, "seq", jnum(st, "seq") + 1);
		jset_num(st, "last_change", wall_now());
	}
	r = state_save(t, hash, st);
	if (r < 0)
		goto out;
	if (!e && !(e = entry_add(t, qi.study_uid, hash))) {
		r = -ENOMEM; /* the file is there: found again at the next start */
		goto out;
	}
	entry_from_state(e, st);
out:
	pthread_mutex_unlock(&t->mu);
	cJSON_Delete(inst);
	cJSON_Delete(st);
	return r;
}

/* ---- the record --------------------------------------------------------- */

static int ci_contains(const char *hay, const char *needle)
{
	size_t n = strlen(needle), h = strlen(hay);

	if (!n)
		return 0;
	for (size_t i = 0; i + n <= h; i++)
		if (!strncasecmp(hay + i, needle, n))
			return 1;
	return 0;
}

int usv_study_protocol_index(const struct usv_study_settings *set, const char *sd, const char *rpd,
                             const char *pn)
{
	const char *const texts[] = {sd, rpd, pn};

	for (int p = 0; set && p < set->n_protocols && p < USV_CFG_MAX_PROTOCOLS; p++) {
		const struct usv_config_protocol *pr = &set->protocols[p];
		for (int m = 0; m < pr->n_match && m < USV_CFG_MAX_MATCH; m++)
			for (size_t k = 0; k < 3; k++)
				if (texts[k] && ci_contains(texts[k], pr->match[m]))
					return p;
	}
	return -1;
}

/* The protocol of one instance of a state: its "proto" name when it has
 * one (instances from the results database), else its texts. */
static int instance_protocol(const struct usv_study_settings *set, const cJSON *it)
{
	const cJSON *proto = cJSON_GetObjectItemCaseSensitive(it, "proto");

	if (cJSON_IsString(proto)) {
		for (int p = 0; p < set->n_protocols && p < USV_CFG_MAX_PROTOCOLS; p++)
			if (!strcmp(set->protocols[p].name, proto->valuestring))
				return p;
		return -1;
	}
	return usv_study_protocol_index(set, jstr(it, "sd"), jstr(it, "rpd"), jstr(it, "pn"));
}

/* The study's protocol: index into set->protocols, or -1 for "default":
 * the first configured protocol that one of its instances matches. */
static int study_protocol(const struct usv_study_settings *set, const cJSON *insts)
{
	const cJSON *it;
	int best = -1;

	cJSON_ArrayForEach(it, insts)
	{
		int p = instance_protocol(set, it);
		if (p >= 0 && (best < 0 || p < best))
			best = p;
	}
	return best;
}

/* The record (the line without kind, time, outputs) of a state. */
static cJSON *make_record(const struct usv_study_settings *set, const cJSON *st, unsigned rev)
{
	const cJSON *insts = cJSON_GetObjectItemCaseSensitive(st, "instances"), *it;
	int p = study_protocol(set, insts);
	cJSON *rec = cJSON_CreateObject(), *views, *missing;
	unsigned dis = 0, unc = 0, n = 0;
	const char *station = "", *date = "", *acc = "";

	if (!rec)
		return NULL;
	cJSON_AddStringToObject(rec, "study_uid", jstr(st, "study_uid"));
	cJSON_AddNumberToObject(rec, "revision", rev);
	cJSON_AddStringToObject(rec, "protocol", p >= 0 ? set->protocols[p].name : "default");
	views = cJSON_AddObjectToObject(rec, "views_present");
	missing = cJSON_AddArrayToObject(rec, "missing");
	if (!views || !missing) {
		cJSON_Delete(rec);
		return NULL;
	}
	cJSON_ArrayForEach(it, insts)
	{
		n++;
		if (*jstr(it, "station"))
			station = jstr(it, "station");
		if (*jstr(it, "date"))
			date = jstr(it, "date");
		if (*jstr(it, "acc"))
			acc = jstr(it, "acc");
		if (strcmp(jstr(it, "outcome"), "done") != 0)
			continue;
		int uncertain = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "uncertain"));
		const char *label = uncertain ? USV_LABEL_UNCERTAIN : jstr(it, "label");
		if (!*label)
			continue;
		unc += (unsigned)uncertain;
		dis += jnum(it, "agrees") == 0.0;
		cJSON *c = cJSON_GetObjectItemCaseSensitive(views, label);
		if (c)
			cJSON_SetNumberValue(c, c->valuedouble + 1);
		else
			cJSON_AddNumberToObject(views, label, 1);
	}
	/* required views, in the protocol's order */
	size_t nreq = p >= 0 ? (size_t)set->protocols[p].n_required_views : usv_view_count();
	for (size_t i = 0; i < nreq; i++) {
		const char *req =
		    p >= 0 ? set->protocols[p].required_views[i] : usv_view_at(i)->key;
		int have = 0;
		const cJSON *v;
		cJSON_ArrayForEach(v, views)
		{
			if (strcmp(v->string, USV_LABEL_UNCERTAIN) != 0 &&
			    !strcasecmp(view_key(v->string), view_key(req)))
				have = 1;
		}
		if (!have)
			cJSON_AddItemToArray(missing, cJSON_CreateString(req));
	}
	cJSON_AddNumberToObject(rec, "disagreements", dis);
	cJSON_AddNumberToObject(rec, "uncertain", unc);
	cJSON_AddNumberToObject(rec, "instances", n);
	cJSON_AddStringToObject(rec, "station_name", station);
	cJSON_AddStringToObject(rec, "study_date", date);
	cJSON_AddStringToObject(rec, "accession_hash", acc);
	return rec;
}

/* ---- the study SR --------------------------------------------------------- */

struct sr_job {
	usv_study_sr sr;
	usv_study_sr_view *views;
	usv_study_sr_ref *refs;
	const char **missing;
	char source[PATH_MAX];
	char sop[USV_UID_MAX];
};

static void sr_job_done(struct sr_job *j)
{
	free(j->views);
	free(j->refs);
	free((void *)j->missing);
}

/* The SR of a record from the state's instances. 0, -ENOENT (no source
 * instance left in done/), -ENOMEM. */
static int sr_job_init(struct usv_study_tracker *t, const cJSON *st, const cJSON *rec, unsigned rev,
                       struct sr_job *j)
{
	const cJSON *insts = cJSON_GetObjectItemCaseSensitive(st, "instances"), *it, *v;
	const cJSON *views = cJSON_GetObjectItemCaseSensitive(rec, "views_present");
	const cJSON *missing = cJSON_GetObjectItemCaseSensitive(rec, "missing");
	size_t ninst = (size_t)cJSON_GetArraySize(insts), nv = 0, nr = 0;

	memset(j, 0, sizeof *j);
	j->views = calloc((size_t)cJSON_GetArraySize(views) + 1, sizeof *j->views);
	j->refs = calloc(ninst + 1, sizeof *j->refs);
	j->missing = calloc((size_t)cJSON_GetArraySize(missing) + 1, sizeof *j->missing);
	if (!j->views || !j->refs || !j->missing) {
		sr_job_done(j);
		return -ENOMEM;
	}
	/* a readable source instance: the first done one still in done/ */
	cJSON_ArrayForEach(it, insts)
	{
		if (strcmp(jstr(it, "outcome"), "done") != 0 ||
		    !usv_spool_id_ok(jstr(it, "spool_id")))
			continue;
		if (usv_spool_path(t->env.spool, USV_SPOOL_DONE, jstr(it, "spool_id"), j->source,
		                   sizeof j->source) == 0 &&
		    access(j->source, R_OK) == 0)
			break;
		j->source[0] = '\0';
	}
	if (!j->source[0]) {
		sr_job_done(j);
		return -ENOENT;
	}
	cJSON_ArrayForEach(v, views)
	{
		if (!strcmp(v->string, USV_LABEL_UNCERTAIN))
			continue;
		usv_study_sr_view *sv = &j->views[nv++];
		sv->label = v->string;
		sv->refs = &j->refs[nr];
		cJSON_ArrayForEach(it, insts)
		{
			if (strcmp(jstr(it, "outcome"), "done") != 0 ||
			    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "uncertain")) ||
			    strcmp(jstr(it, "label"), v->string) != 0 || nr >= ninst)
				continue;
			j->refs[nr].sop_class_uid = jstr(it, "class");
			j->refs[nr].sop_instance_uid = jstr(it, "sop");
			j->refs[nr].series_uid = jstr(it, "series");
			nr++;
			sv->nrefs++;
		}
	}
	size_t nm = 0;
	cJSON_ArrayForEach(v, missing)
	{
		if (cJSON_IsString(v))
			j->missing[nm++] = v->valuestring;
	}
	j->sr.source_path = j->source;
	j->sr.study_uid = jstr(st, "study_uid");
	j->sr.revision = rev;
	j->sr.model_sha256 = t->model;
	j->sr.protocol = jstr(rec, "protocol");
	j->sr.nviews = nv;
	j->sr.views = j->views;
	j->sr.nmissing = nm;
	j->sr.missing = j->missing;
	j->sr.instances = (unsigned)jnum(rec, "instances");
	j->sr.disagreements = (unsigned)jnum(rec, "disagreements");
	j->sr.uncertain = (unsigned)jnum(rec, "uncertain");
	j->sr.software_version = t->version;
	j->sr.device_name = "usview";
	return 0;
}

static int sr_write(void *ctx, const usv_dest *dest, size_t i, size_t k, const char *tmp_path,
                    char *err, size_t errlen)
{
	struct sr_job *j = ctx;
	usv_result_ids ids;

	(void)dest;
	(void)i;
	(void)k;
	int r = usv_study_sr_write(&j->sr, tmp_path, &ids, err, errlen);
	if (r == 0)
		snprintf(j->sop, sizeof j->sop, "%s", ids.sop_instance_uid);
	return r;
}

/* Puts the study SRs of a record; *outputs gets their list. 0, or a
 * failure worth retrying (outbox, disk). A study without a readable
 * source instance, or whose SR cannot be built from its data, gets no SR
 * (logged). */
static int put_study_srs(struct usv_study_tracker *t, const cJSON *st, const cJSON *rec,
                         unsigned rev, cJSON *outputs)
{
	const struct usv_routes *routes = &t->set->routes;
	struct usv_route_object obj = {USV_DEST_STUDY_SR, USV_ROUTE_SR_SOP_CLASS};
	struct usv_route_report rep;
	struct sr_job j;
	char err[512];
	size_t i;
	int r;

	for (i = 0; i < routes->n; i++)
		if (usv_route_wants(&routes->dests[i], obj.kind, obj.sop_class))
			break;
	if (i == routes->n)
		return 0; /* nobody takes study SRs */
	r = sr_job_init(t, st, rec, rev, &j);
	if (r == -ENOENT) {
		tlog(t, LOG_WARNING, "study %s revision %u: no instance left in done/, no study SR",
		     jstr(st, "study_uid"), rev);
		return 0;
	}
	if (r < 0)
		return r;
	r = usv_route_put(t->env.spool, routes, &obj, 1, 0, sr_write, &j, &rep, err, sizeof err);
	if (r < 0 && rep.nput == 0 &&
	    (r == -EINVAL || r == -USV_ERR_FORMAT || r == -USV_ERR_DICOM)) {
		/* the data, not the disk: retrying does not help */
		tlog(t, LOG_ERR, "study %s revision %u: no study SR: %s", jstr(st, "study_uid"),
		     rev, err);
		r = 0;
	} else if (r < 0) {
		tlog(t, LOG_ERR, "study %s revision %u: study SR: %s", jstr(st, "study_uid"), rev,
		     err);
	} else {
		for (i = 0; i < routes->n && i < 32; i++) {
			if (!(rep.used & (UINT32_C(1) << i)))
				continue;
			cJSON *o = cJSON_CreateObject();
			if (!o)
				break;
			cJSON_AddStringToObject(o, "destination", routes->dests[i].name);
			cJSON_AddStringToObject(o, "kind", "study_sr");
			cJSON_AddStringToObject(o, "sop_instance_uid", j.sop);
			cJSON_AddItemToArray(outputs, o);
		}
		if (rep.nput && t->env.on_output)
			t->env.on_output(t->env.ctx);
	}
	sr_job_done(&j);
	return r;
}

/* ---- the index ------------------------------------------------------------ */

/* 1 when a line of path holds the study record (uid, rev). */
static int file_has_record(const char *path, const char *uid, unsigned rev)
{
	static const char tag[] = "{\"kind\":\"study\"";
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int found = 0;

	if (!f)
		return 0;
	while (!found && (len = getline(&line, &cap, f)) > 0) {
		if (!strstr(line, uid))
			continue;
		for (char *p = strstr(line, tag); p && !found; p = strstr(p + 1, tag)) {
			cJSON *o = cJSON_ParseWithOpts(p, NULL, 0);
			if (o && !strcmp(jstr(o, "study_uid"), uid) && jnum(o, "revision") == rev)
				found = 1;
			cJSON_Delete(o);
		}
	}
	free(line);
	fclose(f);
	return found;
}

static int index_has_record(struct usv_study_tracker *t, const char *uid, unsigned rev)
{
	char p[PATH_MAX];
	const char *root = usv_spool_root(t->env.spool);

	snprintf(p, sizeof p, "%s/results.jsonl", root);
	if (file_has_record(p, uid, rev))
		return 1;
	snprintf(p, sizeof p, "%s/results.jsonl.1", root);
	return file_has_record(p, uid, rev);
}

/* ---- commit ----------------------------------------------------------------- */

/* Step C: the pending revision is in the index. Under t->mu. */
static int mark_written(struct usv_study_tracker *t, const char *hash, double now)
{
	char name[HASH_LEN + 8];
	cJSON *st = NULL;
	struct entry *e;
	int r;

	snprintf(name, sizeof name, "%s.json", hash);
	r = state_load(t, name, &st);
	if (r < 0)
		return r;
	unsigned rev = (unsigned)jnum(st, "pending");
	if (rev) {
		jset_num(st, "revision", rev);
		jset_num(st, "written_seq", jnum(st, "pending_seq"));
		jset_num(st, "written_time", now);
		jset_num(st, "pending", 0);
		cJSON_DeleteItemFromObjectCaseSensitive(st, "pending_seq");
		cJSON_DeleteItemFromObjectCaseSensitive(st, "pending_record");
		cJSON_DeleteItemFromObjectCaseSensitive(st, "pending_outputs");
		r = state_save(t, hash, st);
	}
	if (r == 0 && (e = entry_find(t, hash)))
		entry_from_state(e, st);
	cJSON_Delete(st);
	return r;
}

/* Sets the in-memory "checked" flag of a study. Under t->mu. */
static void set_checked(struct usv_study_tracker *t, const char *hash, int v)
{
	struct entry *e = entry_find(t, hash);
	if (e)
		e->checked = v;
}

static char *record_line(const cJSON *rec, const cJSON *outs, double now);

/* Step B: the line of the pending revision. */
static int append_line(struct usv_study_tracker *t, const cJSON *st, double now)
{
	const cJSON *rec = cJSON_GetObjectItemCaseSensitive(st, "pending_record");
	const cJSON *outs = cJSON_GetObjectItemCaseSensitive(st, "pending_outputs");
	int r = -ENOMEM;

	if (!cJSON_IsObject(rec))
		return -EINVAL;
	char *line = record_line(rec, outs, now);
	if (line) {
		r = t->env.index ? usv_results_index_append_line(t->env.index, line) : -EINVAL;
		free(line);
	}
	return r;
}

/* The line of a record and its outputs ("kind", "time" first). */
static char *record_line(const cJSON *rec, const cJSON *outs, double now)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *it;
	char ts[96];

	if (!o)
		return NULL;
	iso_time(now, ts, sizeof ts);
	cJSON_AddStringToObject(o, "kind", "study");
	cJSON_AddStringToObject(o, "time", ts);
	cJSON_ArrayForEach(it, rec)
	{
		cJSON_AddItemToObject(o, it->string, cJSON_Duplicate(it, 1));
	}
	cJSON_AddItemToObject(o, "outputs",
	                      cJSON_IsArray(outs) ? cJSON_Duplicate(outs, 1) : cJSON_CreateArray());
	char *line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return line;
}

cJSON *usv_study_instance_from_line(const cJSON *l)
{
	const cJSON *topk = cJSON_GetObjectItemCaseSensitive(l, "topk");
	const cJSON *agrees = cJSON_GetObjectItemCaseSensitive(l, "agrees");
	const cJSON *proto = cJSON_GetObjectItemCaseSensitive(l, "protocol");
	const char *outcome = jstr(l, "outcome");
	int done = !strcmp(outcome, "done");
	/* the most probable class: "label" is "uncertain" below the threshold */
	const char *top = jstr(cJSON_GetArrayItem(topk, 0), "label");
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	if (!*top)
		top = jstr(l, "label");
	cJSON_AddStringToObject(o, "sop", jstr(l, "sop_instance_uid"));
	cJSON_AddStringToObject(o, "class", jstr(l, "sop_class_uid"));
	cJSON_AddStringToObject(o, "series", jstr(l, "series_uid"));
	cJSON_AddStringToObject(o, "spool_id", jstr(l, "spool_id"));
	cJSON_AddStringToObject(o, "outcome", outcome);
	cJSON_AddStringToObject(o, "label", done ? top : "");
	cJSON_AddNumberToObject(o, "prob", done ? jnum(l, "prob") : 0.0);
	cJSON_AddBoolToObject(
	    o, "uncertain", done && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "uncertain")));
	cJSON_AddStringToObject(o, "tech", jstr(l, "technologist_label"));
	cJSON_AddNumberToObject(o, "agrees",
	                        !done || !cJSON_IsBool(agrees) ? -1
	                        : cJSON_IsTrue(agrees)         ? 1
	                                                       : 0);
	cJSON_AddStringToObject(o, "proto", cJSON_IsString(proto) ? proto->valuestring : "");
	cJSON_AddStringToObject(o, "station", jstr(l, "station_name"));
	cJSON_AddStringToObject(o, "date", jstr(l, "study_date"));
	cJSON_AddStringToObject(o, "acc", jstr(l, "accession_hash"));
	return o;
}

int usv_study_build_line(struct usv_study_tracker *t, const cJSON *state, unsigned rev, double now,
                         char **line)
{
	cJSON *rec = NULL, *outs = NULL;
	int r = -ENOMEM;

	if (!t || !state || !line || rev == 0)
		return -EINVAL;
	*line = NULL;
	pthread_mutex_lock(&t->run_mu);
	t->env.get_settings(t->env.ctx, t->set);
	rec = make_record(t->set, state, rev);
	outs = cJSON_CreateArray();
	if (rec && outs) {
		r = put_study_srs(t, state, rec, rev, outs);
		if (r == 0) {
			*line = record_line(rec, outs, now);
			r = *line ? 0 : -ENOMEM;
		}
	}
	pthread_mutex_unlock(&t->run_mu);
	if (r == 0)
		tlog(t, LOG_INFO, "study %s revision %u: protocol %s, %d views missing",
		     jstr(state, "study_uid"), rev, jstr(rec, "protocol"),
		     cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rec, "missing")));
	cJSON_Delete(rec);
	cJSON_Delete(outs);
	return r;
}

/* Commits the next revision of a due study (or finishes its pending one). */
static int commit(struct usv_study_tracker *t, const char *hash, int checked, double now,
                  unsigned *written)
{
	char name[HASH_LEN + 8], uid[USV_UID_MAX] = "";
	cJSON *st = NULL;
	struct entry *e;
	int r;

	snprintf(name, sizeof name, "%s.json", hash);
	pthread_mutex_lock(&t->mu);
	r = state_load(t, name, &st);
	if (r < 0)
		goto unlock;
	snprintf(uid, sizeof uid, "%s", jstr(st, "study_uid"));
	unsigned rev = (unsigned)jnum(st, "pending");
	if (rev && !checked) {
		/* left by a crash or a failed append: is the line there? */
		if (index_has_record(t, uid, rev)) {
			r = mark_written(t, hash, now);
			goto unlock;
		}
		set_checked(t, hash, 1);
	}
	if (!rev) {
		/* A: record, study SRs, pending state */
		rev = (unsigned)jnum(st, "revision") + 1;
		cJSON *rec = make_record(t->set, st, rev);
		cJSON *outs = cJSON_CreateArray();
		if (!rec || !outs) {
			cJSON_Delete(rec);
			cJSON_Delete(outs);
			r = -ENOMEM;
			goto unlock;
		}
		r = put_study_srs(t, st, rec, rev, outs);
		if (r < 0) {
			cJSON_Delete(rec);
			cJSON_Delete(outs);
			goto unlock;
		}
		jset_num(st, "pending", rev);
		jset_num(st, "pending_seq", jnum(st, "seq"));
		jset(st, "pending_record", rec);
		jset(st, "pending_outputs", outs);
		r = state_save(t, hash, st);
		if (r < 0)
			goto unlock;
		if ((e = entry_find(t, hash))) {
			entry_from_state(e, st);
			e->checked = 1; /* we know the line is not there yet */
		}
	}
	pthread_mutex_unlock(&t->mu);
	if (t->env.crash_test == USV_STUDY_CRASH_AFTER_PENDING)
		goto out;
	if (t->delay_ms)
		usleep(t->delay_ms * 1000u);

	/* B: the line (outside the lock: notes go on) */
	r = append_line(t, st, now);
	if (r < 0) {
		pthread_mutex_lock(&t->mu);
		set_checked(t, hash, 0); /* a short write may have left it: look again */
		pthread_mutex_unlock(&t->mu);
		goto out;
	}
	if (written)
		(*written)++;
	if (t->env.crash_test == USV_STUDY_CRASH_AFTER_LINE)
		goto out;
	if (t->delay_ms)
		usleep(t->delay_ms * 1000u);

	/* C */
	pthread_mutex_lock(&t->mu);
	r = mark_written(t, hash, now);
	if (r == 0) {
		const cJSON *rec = cJSON_GetObjectItemCaseSensitive(st, "pending_record");
		tlog(t, LOG_INFO, "study %s revision %u: protocol %s, %d views missing", uid,
		     (unsigned)jnum(rec, "revision"), jstr(rec, "protocol"),
		     cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rec, "missing")));
	}
unlock:
	pthread_mutex_unlock(&t->mu);
out:
	if (r < 0)
		tlog(t, LOG_ERR, "study %s: record not written, retrying in %.0f s: %s",
		     uid[0] ? uid : hash, RETRY_S, usv_strerror(r));
	cJSON_Delete(st);
	return r;
}

/* ---- passes ----------------------------------------------------------------- */

static int forget(struct usv_study_tracker *t, size_t i)
{
	char name[HASH_LEN + 8];

	snprintf(name, sizeof name, "%s.json", t->e[i].hash);
	if (unlinkat(t->dfd, name, 0) == -1 && errno != ENOENT)
		return -errno;
	t->e[i] = t->e[--t->n];
	return 0;
}

int usv_study_tracker_run(struct usv_study_tracker *t, double now, unsigned *written)
{
	int rc = 0;

	if (written)
		*written = 0;
	if (!t)
		return -EINVAL;
	pthread_mutex_lock(&t->run_mu);
	t->env.get_settings(t->env.ctx, t->set);
	double quiet = t->set->quiet_s > 0 ? t->set->quiet_s : 0;
	for (size_t i = 0;; i++) {
		char hash[HASH_LEN + 1];
		int due, checked;

		pthread_mutex_lock(&t->mu);
		if (i >= t->n) {
			pthread_mutex_unlock(&t->mu);
			break;
		}
		struct entry *e = &t->e[i];
		due = (e->pending || (e->seq > e->written_seq && now >= e->last_change + quiet)) &&
		      now >= e->retry_at;
		memcpy(hash, e->hash, sizeof hash);
		checked = e->checked;
		pthread_mutex_unlock(&t->mu);
		if (!due)
			continue;
		/* notes only append entries (realloc): look it up again after */
		int r = commit(t, hash, checked, now, written);
		if (r < 0) {
			rc = r;
			pthread_mutex_lock(&t->mu);
			if ((e = entry_find(t, hash)))
				e->retry_at = now + RETRY_S;
			pthread_mutex_unlock(&t->mu);
		}
	}
	if (t->set->retention_h > 0) {
		double before = now - t->set->retention_h * 3600.0;
		pthread_mutex_lock(&t->mu);
		for (size_t i = 0; i < t->n;) {
			struct entry *e = &t->e[i];
			if (!e->pending && e->revision && e->seq <= e->written_seq &&
			    e->written_time < before && e->last_change < before) {
				int r = forget(t, i);
				if (r == 0)
					continue;
				rc = r;
			}
			i++;
		}
		pthread_mutex_unlock(&t->mu);
	}
	pthread_mutex_unlock(&t->run_mu);
	return rc;
}

/* Seconds until the next study is due (at most 1). */
static double next_due(struct usv_study_tracker *t, double now)
{
	double wait = 1.0;

	pthread_mutex_lock(&t->mu);
	double quiet = t->set->quiet_s > 0 ? t->set->quiet_s : 0;
	for (size_t i = 0; i < t->n; i++) {
		const struct entry *e = &t->e[i];
		double at;
		if (e->pending)
			at = e->retry_at;
		else if (e->seq > e->written_seq)
			at = fmax(e->last_change + quiet, e->retry_at);
		else
			continue;
		if (at - now < wait)
			wait = at - now;
	}
	pthread_mutex_unlock(&t->mu);
	return wait < 0.01 ? 0.01 : wait;
}

static void *tracker_main(void *arg)
{
	struct usv_study_tracker *t = arg;

	for (;;) {
		double now = wall_now();
		usv_study_tracker_run(t, now, NULL);
		double wait = next_due(t, wall_now());
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		long ns = until.tv_nsec + (long)(wait * 1e9);
		until.tv_sec += ns / 1000000000L;
		until.tv_nsec = ns % 1000000000L;
		pthread_mutex_lock(&t->wmu);
		while (!t->stop && !t->kick)
			if (pthread_cond_timedwait(&t->wcv, &t->wmu, &until) == ETIMEDOUT)
				break;
		int stop = t->stop;
		t->kick = 0;
		pthread_mutex_unlock(&t->wmu);
		if (stop)
			break;
	}
	return NULL;
}

/* ---- open, free ------------------------------------------------------------- */

void usv_study_settings_from_config(const struct usv_config *cfg, const struct usv_routes *routes,
                                    struct usv_study_settings *out)
{
	memset(out, 0, sizeof *out);
	out->quiet_s = cfg->qa.study_quiet_s;
	out->retention_h = cfg->spool.retention_h.done;
	out->n_protocols = cfg->n_protocols;
	if (out->n_protocols < 0 || out->n_protocols > USV_CFG_MAX_PROTOCOLS)
		out->n_protocols = 0;
	memcpy(out->protocols, cfg->protocols, sizeof out->protocols);
	if (routes)
		out->routes = *routes;
}

/* Loads every state file of studies/. */
static int load_all(struct usv_study_tracker *t)
{
	int fd = dup(t->dfd);
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		if (fd != -1)
			close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		size_t len = strlen(n);
		if (n[0] == '.') {
			if (len > 4 && !strcmp(n + len - 4, ".tmp"))
				unlinkat(t->dfd, n, 0); /* a save that did not finish */
			continue;
		}
		if (len != HASH_LEN + 5 || strcmp(n + HASH_LEN, ".json") != 0)
			continue;
		cJSON *st = NULL;
		int r = state_load(t, n, &st);
		char hash[HASH_LEN + 1];
		if (r == 0) {
			study_hash(jstr(st, "study_uid"), hash);
			if (strncmp(hash, n, HASH_LEN) != 0)
				r = -EINVAL;
		}
		if (r < 0) {
			char bad[HASH_LEN + 16];
			snprintf(bad, sizeof bad, "%s.bad", n);
			renameat(t->dfd, n, t->dfd, bad);
			tlog(t, LOG_ERR, "%s/%s: %s, moved aside as %s", t->dir, n,
			     r == -EINVAL ? "not a study state" : usv_strerror(r), bad);
			cJSON_Delete(st);
			continue;
		}
		struct entry *e = entry_add(t, jstr(st, "study_uid"), hash);
		if (!e) {
			cJSON_Delete(st);
			rc = -ENOMEM;
			break;
		}
		entry_from_state(e, st);
		cJSON_Delete(st);
	}
	closedir(d);
	return rc;
}

int usv_study_tracker_open(const struct usv_study_env *env, struct usv_study_tracker **out,
                           char *errbuf, size_t errlen)
{
	struct usv_study_tracker *t;
	int r;

	if (!env || !env->spool || !env->get_settings || !out)
		return usv_seterr(errbuf, errlen, -EINVAL, "study tracker: invalid arguments");
	t = calloc(1, sizeof *t);
	if (!t || !(t->set = calloc(1, sizeof *t->set))) {
		free(t);
		return usv_seterr(errbuf, errlen, -ENOMEM, "study tracker: out of memory");
	}
	t->env = *env;
	t->dfd = -1;
	/* crash tests widen the windows between the commit steps */
	const char *delay = getenv("USV_STUDY_COMMIT_DELAY_MS");
	if (delay && *delay) {
		char *end;
		unsigned long v = strtoul(delay, &end, 10);
		if (!*end && v <= 10000)
			t->delay_ms = (unsigned)v;
	}
	snprintf(t->model, sizeof t->model, "%s", env->model_sha256 ? env->model_sha256 : "");
	snprintf(t->version, sizeof t->version, "%s",
	         env->software_version ? env->software_version : "");
	pthread_mutex_init(&t->mu, NULL);
	pthread_mutex_init(&t->run_mu, NULL);
	pthread_mutex_init(&t->wmu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&t->wcv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (snprintf(t->dir, sizeof t->dir, "%s/studies", usv_spool_root(env->spool)) >=
	    (int)sizeof t->dir) {
		r = usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s/studies: path too long",
		               usv_spool_root(env->spool));
		goto fail;
	}
	if (mkdir(t->dir, 0700) == 0) {
		/* the new directory entry is durable before any state in it */
		int rfd = open(usv_spool_root(env->spool), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (rfd == -1 || fsync(rfd) == -1) {
			r = usv_seterr(errbuf, errlen, -errno, "%s: %s", usv_spool_root(env->spool),
			               strerror(errno));
			if (rfd != -1)
				close(rfd);
			goto fail;
		}
		close(rfd);
	} else if (errno != EEXIST) {
		r = usv_seterr(errbuf, errlen, -errno, "%s: %s", t->dir, strerror(errno));
		goto fail;
	}
	t->dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dfd == -1) {
		r = usv_seterr(errbuf, errlen, -errno, "%s: %s", t->dir, strerror(errno));
		goto fail;
	}
	r = load_all(t);
	if (r < 0) {
		usv_seterr(errbuf, errlen, r, "%s: %s", t->dir, usv_strerror(r));
		goto fail;
	}
	size_t npending = 0;
	for (size_t i = 0; i < t->n; i++)
		npending += t->e[i].pending != 0;
	if (npending)
		tlog(t, LOG_INFO,
		     "%zu of %zu studies have a revision pending from before the start", npending,
		     t->n);
	env->get_settings(env->ctx, t->set);
	if (!env->no_thread) {
		r = -pthread_create(&t->thread, NULL, tracker_main, t);
		if (r < 0) {
			usv_seterr(errbuf, errlen, r, "study tracker: %s", usv_strerror(r));
			goto fail;
		}
		t->started = 1;
	}
	*out = t;
	return 0;
fail:
	usv_study_tracker_free(t);
	return r;
}

void usv_study_tracker_wake(struct usv_study_tracker *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->wmu);
	t->kick = 1;
	pthread_cond_signal(&t->wcv);
	pthread_mutex_unlock(&t->wmu);
}

void usv_study_tracker_count(struct usv_study_tracker *t, size_t *studies, size_t *pending)
{
	size_t n = 0, p = 0;

	if (t) {
		pthread_mutex_lock(&t->mu);
		n = t->n;
		for (size_t i = 0; i < t->n; i++)
			p += t->e[i].pending || t->e[i].seq > t->e[i].written_seq;
		pthread_mutex_unlock(&t->mu);
	}
	if (studies)
		*studies = n;
	if (pending)
		*pending = p;
}

void usv_study_tracker_free(struct usv_study_tracker *t)
{
	if (!t)
		return;
	if (t->started) {
		pthread_mutex_lock(&t->wmu);
		t->stop = 1;
		pthread_cond_signal(&t->wcv);
		pthread_mutex_unlock(&t->wmu);
		pthread_join(t->thread, NULL);
	}
	if (t->dfd != -1)
		close(t->dfd);
	pthread_mutex_destroy(&t->mu);
	pthread_mutex_destroy(&t->run_mu);
	pthread_mutex_destroy(&t->wmu);
	pthread_cond_destroy(&t->wcv);
	free(t->e);
	free(t->set);
	free(t);
}
