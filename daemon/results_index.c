/*
 * NAME
 *	results_index.c - append-only JSON lines index of classified instances
 *
 * DESCRIPTION
 *	See results_index.h. cJSON builds each line; the line plus '\n' goes
 *	out in one write() on an O_APPEND descriptor (atomic with respect to
 *	other appenders of a regular file), followed by fdatasync() (or, for
 *	the _nosync variant, by the caller's later usv_results_index_sync()).
 *
 *	Rotation by size: appends and syncs hold a read lock (they run
 *	concurrently, the kernel orders O_APPEND writes), a rotation holds
 *	the write lock. Once the file has reached max_bytes, the appender
 *	that noticed it rotates: fdatasync the full file, shift .1 -> .2 ...
 *	(.keep is overwritten, dropping the oldest), link results.jsonl as
 *	.1, rename a new empty file over results.jsonl, fsync the directory.
 *	results.jsonl never goes missing and always holds whole lines, so a
 *	reader that opens it (or .1 ...) finds only whole lines. A failed
 *	rotation leaves the current file in use; the next try is after
 *	another max_bytes/16 bytes.
 */
#include "results_index.h"

#include "usv/err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct usv_results_index {
	pthread_rwlock_t lk; /* read: append, sync; write: rotate, limits */
	int fd;
	char path[4096];
	pthread_mutex_t size_mu; /* guards the three below */
	uint64_t size;           /* bytes in the current file */
	uint64_t next_check;     /* rotate once size >= this (UINT64_MAX: never) */
	uint64_t max_bytes;      /* 0 = never rotate */
	int keep;
	unsigned long rotations;
};

static int fsync_dir_of(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* With the write lock held. */
static int rotate_locked(struct usv_results_index *idx)
{
	char from[4200], to[4200], fresh[4200];
	int rc = 0, nfd;

	if (fdatasync(idx->fd))
		return -errno;
	for (int k = idx->keep - 1; k >= 1; k--) {
		snprintf(from, sizeof from, "%s.%d", idx->path, k);
		snprintf(to, sizeof to, "%s.%d", idx->path, k + 1);
		if (rename(from, to) && errno != ENOENT)
			return -errno;
	}
	snprintf(to, sizeof to, "%s.1", idx->path);
	if (unlink(to) && errno != ENOENT) /* keep == 1: the old .1 goes */
		return -errno;
	if (link(idx->path, to))
		return -errno;
	snprintf(fresh, sizeof fresh, "%s.new", idx->path);
	nfd = open(fresh, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (nfd < 0)
		return -errno;
	if (rename(fresh, idx->path)) {
		rc = -errno;
		close(nfd);
		unlink(fresh);
		unlink(to); /* .1 was the current file: not an old one */
		return rc;
	}
	/* From here the new file is in place: switch even if the directory
	 * fsync fails (a crash then may show the old file again, whole). */
	rc = fsync_dir_of(idx->path);
	close(idx->fd);
	idx->fd = nfd;
	pthread_mutex_lock(&idx->size_mu);
	idx->size = 0;
	idx->next_check = idx->max_bytes ? idx->max_bytes : UINT64_MAX;
	idx->rotations++;
	pthread_mutex_unlock(&idx->size_mu);
	return rc;
}

int usv_results_index_rotate(struct usv_results_index *idx)
{
	pthread_rwlock_wrlock(&idx->lk);
	int rc = idx->keep > 0 ? rotate_locked(idx) : -EINVAL;
	pthread_rwlock_unlock(&idx->lk);
	return rc;
}

void usv_results_index_set_limits(struct usv_results_index *idx, uint64_t max_bytes, int keep)
{
	if (!idx)
		return;
	pthread_rwlock_wrlock(&idx->lk);
	pthread_mutex_lock(&idx->size_mu);
	idx->max_bytes = keep > 0 ? max_bytes : 0;
	idx->keep = keep;
	idx->next_check = idx->max_bytes ? idx->max_bytes : UINT64_MAX;
	pthread_mutex_unlock(&idx->size_mu);
	pthread_rwlock_unlock(&idx->lk);
}

unsigned long usv_results_index_rotations(struct usv_results_index *idx)
{
	pthread_mutex_lock(&idx->size_mu);
	unsigned long n = idx->rotations;
	pthread_mutex_unlock(&idx->size_mu);
	return n;
}

/* Rotates when the current file has reached the limit (after an append). */
static void maybe_rotate(struct usv_results_index *idx)
{
	pthread_rwlock_wrlock(&idx->lk);
	pthread_mutex_lock(&idx->size_mu);
	int due = idx->max_bytes && idx->size >= idx->next_check;
	pthread_mutex_unlock(&idx->size_mu);
	if (due && rotate_locked(idx) < 0) {
		pthread_mutex_lock(&idx->size_mu);
		if (idx->size >= idx->next_check) /* still not rotated: try later */
			idx->next_check = idx->size + idx->max_bytes / 16 + 1;
		pthread_mutex_unlock(&idx->size_mu);
	}
	pthread_rwlock_unlock(&idx->lk);
}

int usv_results_index_open(const char *dir, struct usv_results_index **out, char *errbuf,
                           size_t errlen)
{
	struct usv_results_index *idx;
	struct stat st;

	idx = calloc(1, sizeof *idx);
	if (!idx)
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", dir);
	if (snprintf(idx->path, sizeof idx->path, "%s/results.jsonl", dir) >=
	    (int)sizeof idx->path) {
		free(idx);
		return usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: path too long", dir);
	}
	idx->fd = open(idx->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (idx->fd == -1 || fstat(idx->fd, &st)) {
		int e = errno;
		if (idx->fd != -1)
			close(idx->fd);
		usv_seterr(errbuf, errlen, -e, "%s: %s", idx->path, strerror(e));
		free(idx);
		return -e;
	}
	idx->size = (uint64_t)st.st_size;
	idx->next_check = UINT64_MAX;
	pthread_rwlock_init(&idx->lk, NULL);
	pthread_mutex_init(&idx->size_mu, NULL);
	*out = idx;
	return 0;
}

void usv_results_index_close(struct usv_results_index *idx)
{
	if (!idx)
		return;
	close(idx->fd);
	pthread_rwlock_destroy(&idx->lk);
	pthread_mutex_destroy(&idx->size_mu);
	free(idx);
}

static const char *s(const char *v)
{
	return v ? v : "";
}

static cJSON *topk_json(const usv_result *r)
{
	cJSON *a = cJSON_CreateArray();

	for (uint32_t k = 0; a && k < r->ntop; k++) {
		cJSON *o = cJSON_CreateObject();
		int ci = r->top[k].class_index;
		if (!o)
			break;
		cJSON_AddStringToObject(
		    o, "label", ci >= 0 && (uint32_t)ci < r->nclasses ? r->classes[ci] : "");
		cJSON_AddNumberToObject(o, "prob", r->top[k].prob);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

/* The label a result shows: "uncertain" below model.min_confidence. */
static const char *shown_label(const usv_result *r)
{
	return r->uncertain ? USV_LABEL_UNCERTAIN : r->pred_label;
}

int usv_results_index_format(const struct usv_index_record *rec, char **line)
{
	cJSON *o = cJSON_CreateObject(), *a, *t, *m;
	struct timeval tv;
	struct tm tm;
	char ts[64];

	if (!o)
		return -ENOMEM;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)(tv.tv_usec / 1000));
	cJSON_AddStringToObject(o, "time", ts);
	cJSON_AddStringToObject(o, "spool_id", s(rec->spool_id));
	cJSON_AddStringToObject(o, "outcome", s(rec->outcome));
	if (rec->reason)
		cJSON_AddStringToObject(o, "reason", rec->reason);
	cJSON_AddStringToObject(o, "sop_instance_uid", s(rec->sop_instance_uid));
	cJSON_AddStringToObject(o, "sop_class_uid", s(rec->sop_class_uid));
	cJSON_AddStringToObject(o, "series_uid", s(rec->series_uid));
	cJSON_AddStringToObject(o, "study_uid", s(rec->study_uid));
	cJSON_AddStringToObject(o, "manufacturer", s(rec->manufacturer));
	cJSON_AddStringToObject(o, "manufacturer_model", s(rec->manufacturer_model));
	cJSON_AddNumberToObject(o, "frames_total", rec->frames_total);
	cJSON_AddStringToObject(o, "kind", "instance");
	if (rec->nresults > 0) {
		const usv_result *r0 = &rec->results[0];
		cJSON_AddNumberToObject(o, "frame", r0->frame);
		cJSON_AddStringToObject(o, "label", shown_label(r0));
		cJSON_AddNumberToObject(o, "prob", r0->probs[r0->pred_index]);
		cJSON_AddItemToObject(o, "topk", topk_json(r0));
	}
	a = cJSON_AddArrayToObject(o, "results");
	for (size_t i = 0; a && i < rec->nresults; i++) {
		const usv_result *r = &rec->results[i];
		cJSON *e = cJSON_CreateObject();
		if (!e)
			break;
		cJSON_AddNumberToObject(e, "frame", r->frame);
		cJSON_AddStringToObject(e, "label", shown_label(r));
		cJSON_AddNumberToObject(e, "prob", r->probs[r->pred_index]);
		cJSON_AddItemToObject(e, "topk", topk_json(r));
		cJSON_AddItemToArray(a, e);
	}
	a = cJSON_AddArrayToObject(o, "outputs");
	for (size_t i = 0; a && i < rec->noutputs; i++) {
		cJSON *e = cJSON_CreateObject();
		if (!e)
			break;
		cJSON_AddStringToObject(e, "destination", s(rec->outputs[i].destination));
		cJSON_AddStringToObject(e, "kind", s(rec->outputs[i].kind));
		cJSON_AddStringToObject(e, "sop_instance_uid", s(rec->outputs[i].sop_instance_uid));
		cJSON_AddItemToArray(a, e);
	}
	m = cJSON_AddObjectToObject(o, "model");
	if (m) {
		cJSON_AddStringToObject(m, "name", s(rec->model_name));
		cJSON_AddStringToObject(m, "sha256", s(rec->model_sha256));
		cJSON_AddStringToObject(m, "arch", s(rec->model_arch));
	}
	t = cJSON_AddObjectToObject(o, "timings_ms");
	if (t) {
		cJSON_AddNumberToObject(t, "decode", rec->t_decode_ms);
		cJSON_AddNumberToObject(t, "infer", rec->t_infer_ms);
		cJSON_AddNumberToObject(t, "total", rec->t_total_ms);
		cJSON_AddNumberToObject(t, "batch", rec->batch);
		cJSON_AddNumberToObject(t, "label", rec->t_label_ms);
		cJSON_AddNumberToObject(t, "ocr", rec->t_ocr_ms);
	}
	cJSON_AddStringToObject(o, "station_name", s(rec->station_name));
	cJSON_AddStringToObject(o, "study_date", s(rec->study_date));
	cJSON_AddStringToObject(o, "accession_hash", s(rec->accession_hash));
	int tech = rec->technologist_label && rec->technologist_label[0];
	if (tech)
		cJSON_AddStringToObject(o, "technologist_label", rec->technologist_label);
	else
		cJSON_AddNullToObject(o, "technologist_label");
	if (tech && rec->label_source && rec->label_source[0])
		cJSON_AddStringToObject(o, "label_source", rec->label_source);
	else
		cJSON_AddNullToObject(o, "label_source");
	/* the model's most probable class, also when "uncertain" is shown */
	if (tech && rec->nresults > 0)
		cJSON_AddBoolToObject(o, "agrees",
		                      !strcmp(rec->technologist_label, rec->results[0].pred_label));
	else
		cJSON_AddNullToObject(o, "agrees");
	cJSON_AddBoolToObject(o, "uncertain", rec->nresults > 0 && rec->results[0].uncertain);
	cJSON_AddNumberToObject(o, "test_views", rec->nresults > 0 ? rec->test_views : 0);
	if (rec->protocol && rec->protocol[0])
		cJSON_AddStringToObject(o, "protocol", rec->protocol);
	else
		cJSON_AddNullToObject(o, "protocol");
	*line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return *line ? 0 : -ENOMEM;
}

int usv_results_index_append(struct usv_results_index *idx, const struct usv_index_record *rec)
{
	int r = usv_results_index_append_nosync(idx, rec);

	return r < 0 ? r : usv_results_index_sync(idx);
}

int usv_results_index_sync(struct usv_results_index *idx)
{
	pthread_rwlock_rdlock(&idx->lk);
	int r = fdatasync(idx->fd) == -1 ? -errno : 0;
	pthread_rwlock_unlock(&idx->lk);
	return r;
}

int usv_results_index_append_nosync(struct usv_results_index *idx,
                                    const struct usv_index_record *rec)
{
	char *line = NULL;
	int r = usv_results_index_format(rec, &line);

	if (r < 0)
		return r;
	r = usv_results_index_append_line_nosync(idx, line);
	free(line);
	return r;
}

int usv_results_index_append_line_nosync(struct usv_results_index *idx, const char *line)
{
	size_t len;
	int r;

	if (!idx || !line || strchr(line, '\n'))
		return -EINVAL;
	len = strlen(line);
	char *buf = malloc(len + 2);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, line, len);
	buf[len] = '\n';
	buf[len + 1] = 0;
	ssize_t w;
	int due = 0;
	pthread_rwlock_rdlock(&idx->lk);
	do
		w = write(idx->fd, buf, len + 1);
	while (w == -1 && errno == EINTR);
	r = w == -1 ? -errno : 0;
	if (w > 0) {
		pthread_mutex_lock(&idx->size_mu);
		idx->size += (uint64_t)w;
		due = idx->max_bytes && idx->size >= idx->next_check;
		pthread_mutex_unlock(&idx->size_mu);
	}
	pthread_rwlock_unlock(&idx->lk);
	free(buf);
	if (r < 0)
		return r;
	if ((size_t)w != len + 1)
		return -EIO;
	if (due)
		maybe_rotate(idx);
	return 0;
}

int usv_results_index_append_line(struct usv_results_index *idx, const char *line)
{
	int r = usv_results_index_append_line_nosync(idx, line);

	return r < 0 ? r : usv_results_index_sync(idx);
}
