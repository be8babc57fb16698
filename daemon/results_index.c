/*
 * NAME
 *	results_index.c - append-only JSON lines index of classified instances
 *
 * DESCRIPTION
 *	See results_index.h. cJSON builds each line; the line plus '\n' goes
 *	out in one write() on an O_APPEND descriptor (atomic with respect to
 *	other appenders of a regular file), followed by fdatasync() (or, for
 *	the _nosync variant, by the caller's later usv_results_index_sync()).
 */
#include "results_index.h"

#include "usv/err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct usv_results_index {
	int fd;
};

int usv_results_index_open(const char *dir, struct usv_results_index **out, char *errbuf,
                           size_t errlen)
{
	char path[4096];
	struct usv_results_index *idx;

	snprintf(path, sizeof path, "%s/results.jsonl", dir);
	idx = calloc(1, sizeof *idx);
	if (!idx)
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	idx->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (idx->fd == -1) {
		int e = errno;
		free(idx);
		return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	}
	*out = idx;
	return 0;
}

void usv_results_index_close(struct usv_results_index *idx)
{
	if (!idx)
		return;
	close(idx->fd);
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
	if (rec->nresults > 0) {
		const usv_result *r0 = &rec->results[0];
		cJSON_AddNumberToObject(o, "frame", r0->frame);
		cJSON_AddStringToObject(o, "label", r0->pred_label);
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
		cJSON_AddStringToObject(e, "label", r->pred_label);
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
	}
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
	return fdatasync(idx->fd) == -1 ? -errno : 0;
}

int usv_results_index_append_nosync(struct usv_results_index *idx,
                                    const struct usv_index_record *rec)
{
	char *line = NULL;
	int r = usv_results_index_format(rec, &line);
	size_t len;

	if (r < 0)
		return r;
	len = strlen(line);
	char *buf = realloc(line, len + 2);
	if (!buf) {
		free(line);
		return -ENOMEM;
	}
	buf[len] = '\n';
	buf[len + 1] = 0;
	ssize_t w;
	do
		w = write(idx->fd, buf, len + 1);
	while (w == -1 && errno == EINTR);
	free(buf);
	if (w == -1)
		return -errno;
	if ((size_t)w != len + 1)
		return -EIO;
	return 0;
}
