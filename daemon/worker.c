/*
 * NAME
 *	worker.c - usviewd worker pool with micro-batching
 *
 * DESIGN
 *	Threads. N workers, one usv_session each, one shared immutable model.
 *	There is no in-memory queue: the spool's incoming/ directory is the
 *	queue and usv_spool_claim() (a rename into active/) hands each
 *	instance to exactly one worker. The receiver's on_stored callback
 *	calls usv_worker_pool_wake(), which bumps a sequence number under the
 *	pool mutex and broadcasts; an idle worker sleeps on the condition
 *	variable at most one second, so work requeued by other means (spool
 *	recovery, a missed wake) is still found, and the heartbeat that the
 *	watchdog and /healthz read keeps moving while idle.
 *
 *	Micro-batching. A worker claims one instance, prepares it, and keeps
 *	claiming while it holds fewer than batch_size frames and less than
 *	batch_wait_ms has passed since the first claim (waiting for a wake
 *	when incoming/ is empty). A burst thus fills whole batches at once,
 *	while a lone instance waits at most batch_wait_ms. Frames of one
 *	multi-frame instance may span several inference chunks.
 *
 *	Settings. At the start of each batch the worker copies its settings
 *	(struct usv_worker_settings: crop rules, frames, colour threshold,
 *	top_k, batch_wait_ms, routes) through env->get_settings; a reload
 *	thus applies from the next batch, and a batch uses one consistent set
 *	from claim to finish.
 *
 *	Per instance, in this order: result objects are written through tmp/
 *	into outbox/<dest>/ by usv_route_put() (results_route.h: the
 *	destinations and the routing rule the sender uses too; fsync +
 *	rename, the directory fsync deferred to the batch), the
 *	results.jsonl line is appended, then the instance moves active/ ->
 *	done/. A batch does
 *	each step for all its instances and then makes it durable at once:
 *	one fsync per outbox directory, one fdatasync of the index, one
 *	fsync of done/ (instead of five per instance), so no step of an
 *	instance is durable before the steps it depends on. A crash anywhere
 *	before the last step leaves the instance in
 *	active/, which spool recovery returns to incoming/; it is classified
 *	again and its result objects get the SAME SOP Instance UIDs (derived
 *	from source UID, frame, model hash and kind), so a destination that
 *	receives both copies stores one object. Processing is at-least-once,
 *	delivery is exactly-once per distinct result UID.
 *
 *	Failures never stop a worker: an instance that cannot be read,
 *	decoded, classified or written goes to failed/ with a one-line reason
 *	file; a policy exclusion (not US, colour Doppler, no pixels) goes to
 *	excluded/ with its reason. DCMTK objects made from a spool file are
 *	released before the file is moved (dcmtk.md 4.4).
 *
 *	On stop, workers finish the batch they hold (results written,
 *	instances finished) and exit; nothing is left in active/.
 */
#include "worker.h"

#include "log.h"
#include "usv/config.h"
#include "usv/dcm_meta.h"
#include "usv/dcm_prepare.h"
#include "usv/dcm_result.h"
#include "usv/err.h"
#include "usv/label_read.h"
#include "usv/sha256.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAMES_PER_INSTANCE 64

struct job {
	char id[USV_SPOOL_ID_LEN];
	char path[PATH_MAX];
	usv_prepared *prep;
	double t_claim, t_decode_ms, t_infer_ms;
	int first;      /* index of its first frame in the batch */
	int nframes;    /* frames in the batch */
	uint32_t dests; /* bit d: a result went into outbox/<destination d>/ */
	char fail[USV_ERRBUF];
	/* QA: the technologist's label (read at claim), and what finish_job
	 * found, for the index line and env->on_instance */
	char tech_label[USV_RESULT_LABEL_MAX]; /* "" = none */
	char tech_source[USV_LABEL_SOURCE_MAX];
	double t_label_ms, t_ocr_ms;
	int have_info;
	usv_dcm_info info;                /* copied before the prepared instance is freed */
	char label[USV_RESULT_LABEL_MAX]; /* the model's most probable class of frame 1 */
	double prob;
	int uncertain, agrees; /* agrees: 1, 0, -1 = no label */
	int views;             /* test views averaged */
};

struct frame_ref {
	int job;
	int k; /* frame within the job's usv_prepared */
};

struct worker {
	struct usv_worker_pool *pool;
	pthread_t thread;
	int started;
	int index;
	usv_session *session;
	float *input;       /* batch_size x C x H x W */
	float *scores;      /* frame capacity x n_labels */
	float *view_scores; /* n_labels: one view's probabilities */
	struct job *jobs;
	struct frame_ref *frames;
	int cap_frames;
	struct usv_worker_settings *set; /* this batch's settings */
	usv_crop_rule rules[USV_WORKER_MAX_CROPS];
	/* QA: this thread's label reader, made for these settings */
	usv_label_reader *reader;
	int reader_ocr;
	char reader_tessdata[USV_WORKER_PATH_MAX];
	int reader_failed; /* the last try to make one failed (logged once) */
	_Atomic long long heartbeat_ms;
};

struct usv_worker_pool {
	struct usv_worker_env env;
	const usv_model_meta *meta;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned long seq;
	int stop;
	struct worker *w;
	int nw;
	atomic_int inflight;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void beat(struct worker *w)
{
	atomic_store(&w->heartbeat_ms, (long long)(now_s() * 1000));
}

static int stopping(struct usv_worker_pool *p)
{
	pthread_mutex_lock(&p->mu);
	int s = p->stop;
	pthread_mutex_unlock(&p->mu);
	return s;
}

static unsigned long current_seq(struct usv_worker_pool *p)
{
	pthread_mutex_lock(&p->mu);
	unsigned long s = p->seq;
	pthread_mutex_unlock(&p->mu);
	return s;
}

/* Sleeps until the sequence moves past seen, stop, or the absolute
 * monotonic time until (seconds). */
static void wait_for_work(struct usv_worker_pool *p, unsigned long seen, double until)
{
	struct timespec ts;
	double rt;

	clock_gettime(CLOCK_REALTIME, &ts);
	rt = (double)ts.tv_sec + ts.tv_nsec / 1e9 + (until - now_s());
	ts.tv_sec = (time_t)rt;
	ts.tv_nsec = (long)((rt - (double)ts.tv_sec) * 1e9);
	pthread_mutex_lock(&p->mu);
	while (p->seq == seen && !p->stop)
		if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&p->mu);
}

static void prepare_opts(struct worker *w, usv_prepare_opts *o)
{
	const struct usv_worker_settings *c = w->set;

	usv_prepare_opts_init(o);
	for (size_t i = 0; i < c->ncrops && i < USV_WORKER_MAX_CROPS; i++) {
		const struct usv_worker_crop *r = &c->crops[i];
		w->rules[i] = (usv_crop_rule){
		    .manufacturer = r->manufacturer,
		    .model = r->model,
		    .rows = r->rows,
		    .cols = r->cols,
		    .centred = r->centred,
		    .box = r->box,
		};
	}
	o->rules = w->rules;
	o->nrules = c->ncrops < USV_WORKER_MAX_CROPS ? c->ncrops : USV_WORKER_MAX_CROPS;
	o->frames = c->frames;
	o->every_n = c->every_n;
	o->max_frames = MAX_FRAMES_PER_INSTANCE;
	o->colour_threshold = c->colour_threshold;
	o->out_size = w->pool->meta->resize_w;
	/* the label reader looks at the first frame before the crop */
	o->keep_full = w->reader ? 2 : 0;
}

/* Makes (or drops, or remakes after a change of qa.ocr / qa.tessdata) this
 * thread's label reader for the batch's settings. Without Tesseract data
 * the reader is made without OCR: labels then come from the attributes
 * alone (logged once per change). */
static void update_reader(struct worker *w)
{
	const struct usv_worker_settings *c = w->set;
	const usv_label_table *table = w->pool->env.label_table;
	int want = table && c->qa_labels;
	char err[USV_ERRBUF] = "";

	int changed = w->reader_ocr != c->qa_ocr || strcmp(w->reader_tessdata, c->qa_tessdata);

	if (w->reader && (!want || changed)) {
		usv_label_reader_free(w->reader);
		w->reader = NULL;
	}
	if (!want || changed)
		w->reader_failed = 0;
	if (!want || w->reader || w->reader_failed)
		return;
	usv_label_reader_opts o;
	usv_label_reader_opts_init(&o);
	o.table = table;
	o.ocr = c->qa_ocr;
	o.tessdata = c->qa_tessdata[0] ? c->qa_tessdata : NULL;
	o.labels_only = 1;
	w->reader_ocr = c->qa_ocr;
	snprintf(w->reader_tessdata, sizeof w->reader_tessdata, "%s", c->qa_tessdata);
	int r = usv_label_reader_new(&o, &w->reader, err, sizeof err);
	if (r < 0 && o.ocr) {
		if (!w->reader_failed)
			usv_log(LOG_ERR,
			        "worker %d: qa.ocr: %s; technologist labels from DICOM attributes "
			        "only",
			        w->index, err);
		o.ocr = 0;
		r = usv_label_reader_new(&o, &w->reader, err, sizeof err);
	}
	w->reader_failed = w->reader == NULL || o.ocr != c->qa_ocr;
	if (r < 0)
		usv_log(LOG_ERR, "worker %d: label reader: %s", w->index, err);
}

/* The technologist's label of a prepared job (never fails the job). The
 * full frames kept for it are dropped afterwards. */
static void read_label(struct worker *w, struct job *j)
{
	usv_label_result res;
	char err[USV_ERRBUF] = "";
	double t0 = now_s();

	int r = usv_label_read_prepared(w->reader, j->prep, j->path, &res, err, sizeof err);
	j->t_ocr_ms = res.ms_ocr;
	if (r == 0) {
		if (res.label[0]) {
			snprintf(j->tech_label, sizeof j->tech_label, "%s", res.label);
			snprintf(j->tech_source, sizeof j->tech_source, "%s", res.source);
		}
	} else {
		usv_log(LOG_INFO, "instance %s: no technologist label: %s", j->id, err);
	}
	usv_label_result_clear(&res);
	j->t_label_ms = (now_s() - t0) * 1000.0;
	for (size_t k = 0; k < j->prep->nframes; k++) {
		usv_image_free(j->prep->frames[k].full);
		j->prep->frames[k].full = NULL;
	}
}

/* First 16 hex digits of SHA-256 of the accession number, "" when none. */
static void accession_hash(const char *acc, char out[17])
{
	usv_sha256 c;
	uint8_t d[32];
	char hex[65];

	out[0] = 0;
	if (!acc || !acc[0])
		return;
	usv_sha256_init(&c);
	usv_sha256_update(&c, acc, strlen(acc));
	usv_sha256_final(&c, d);
	usv_sha256_hex(d, hex);
	memcpy(out, hex, 16);
	out[16] = 0;
}

/* env->on_instance for a job whose index line is durable, before it
 * leaves active/. */
static void notify_qa(struct worker *w, const struct job *j, const usv_dcm_info *info,
                      const char *outcome)
{
	struct usv_worker_pool *p = w->pool;
	char acc[17];

	if (!p->env.on_instance)
		return;
	accession_hash(info ? info->accession_number : NULL, acc);
	int done = !strcmp(outcome, "done");
	struct usv_qa_instance qi = {
	    .spool_id = j->id,
	    .outcome = outcome,
	    .study_uid = info ? info->study_uid : "",
	    .series_uid = info ? info->series_uid : "",
	    .sop_instance_uid = info ? info->sop_instance_uid : "",
	    .sop_class_uid = info ? info->sop_class_uid : "",
	    .study_description = info ? info->study_description : "",
	    .requested_procedure_description = info ? info->requested_procedure_description : "",
	    .protocol_name = info ? info->protocol_name : "",
	    .station_name = info ? info->station_name : "",
	    .study_date = info ? info->study_date : "",
	    .accession_hash = acc,
	    .label = done ? j->label : "",
	    .prob = done ? j->prob : 0,
	    .uncertain = done ? j->uncertain : 0,
	    .technologist_label = j->tech_label,
	    .label_source = j->tech_label[0] ? j->tech_source : "",
	    .agrees = done && j->tech_label[0] ? j->agrees : -1,
	};
	int r = p->env.on_instance(p->env.ctx, &qi);
	if (r < 0)
		usv_log(LOG_WARNING, "instance %s: QA: %s", j->id, usv_strerror(r));
}

static const char *str(const char *s)
{
	return s ? s : "";
}

/* Index line, metrics and log for a finished instance. */
static void record(struct worker *w, const struct job *j, const usv_dcm_info *info,
                   const char *outcome, const char *reason, const usv_result *results,
                   size_t nresults, const struct usv_index_output *outs, size_t nouts, int batch,
                   int sync)
{
	struct usv_worker_pool *p = w->pool;
	const usv_model_meta *m = p->meta;
	double total_ms = (now_s() - j->t_claim) * 1000.0;
	char acc[17], proto[USV_CFG_NAME_MAX] = "";
	accession_hash(info ? info->accession_number : NULL, acc);
	if (info && p->env.match_protocol)
		p->env.match_protocol(p->env.ctx, str(info->study_description),
		                      str(info->requested_procedure_description),
		                      str(info->protocol_name), proto, sizeof proto);
	struct usv_index_record rec = {
	    .spool_id = j->id,
	    .outcome = outcome,
	    .reason = reason,
	    .sop_instance_uid = info ? info->sop_instance_uid : "",
	    .sop_class_uid = info ? info->sop_class_uid : "",
	    .series_uid = info ? info->series_uid : "",
	    .study_uid = info ? info->study_uid : "",
	    .manufacturer = info ? info->manufacturer : "",
	    .manufacturer_model = info ? info->model : "",
	    .frames_total = info ? info->frames : 0,
	    .results = results,
	    .nresults = nresults,
	    .outputs = outs,
	    .noutputs = nouts,
	    .model_name = m->name,
	    .model_sha256 = m->sha256,
	    .model_arch = m->arch,
	    .t_decode_ms = j->t_decode_ms,
	    .t_infer_ms = j->t_infer_ms,
	    .t_total_ms = total_ms,
	    .batch = batch,
	    .station_name = info ? info->station_name : "",
	    .study_date = info ? info->study_date : "",
	    .accession_hash = acc,
	    .technologist_label = j->tech_label,
	    .label_source = j->tech_label[0] ? j->tech_source : NULL,
	    .t_label_ms = j->t_label_ms,
	    .t_ocr_ms = j->t_ocr_ms,
	    .protocol = proto,
	    .test_views = j->views,
	};
	if (p->env.index) {
		int r = -EIO;
		/* a write the disk refused once is tried again before the
		 * line is given up (it is the instance's only result record) */
		for (int tries = 0; tries < 3 && r < 0; tries++) {
			if (tries) {
				struct timespec pause = {0, 200 * 1000000L};
				nanosleep(&pause, NULL);
			}
			r = usv_results_index_append_nosync(p->env.index, &rec);
		}
		if (r == 0 && sync)
			r = usv_results_index_sync(p->env.index);
		if (r < 0)
			usv_log(LOG_ERR, "results index: %s", usv_strerror(r));
	}
	if (!strcmp(outcome, "done")) {
		usv_metrics_inc(p->env.metrics, USV_C_INST_DONE, 1);
		usv_metrics_observe_latency(p->env.metrics, total_ms / 1000.0);
	} else if (!strcmp(outcome, "excluded")) {
		usv_metrics_inc(p->env.metrics, USV_C_INST_EXCLUDED, 1);
	} else {
		usv_metrics_inc(p->env.metrics, USV_C_INST_FAILED, 1);
	}

	char f_id[80], f_uid[96], f_out[48], f_label[96], f_prob[48], f_ms[48], f_batch[32];
	const char *fields[7] = {f_id, f_uid, f_out, f_label, f_prob, f_ms, f_batch};
	snprintf(f_id, sizeof f_id, "USV_SPOOL_ID=%s", j->id);
	snprintf(f_uid, sizeof f_uid, "USV_SOP_INSTANCE_UID=%s",
	         info ? info->sop_instance_uid : "");
	snprintf(f_out, sizeof f_out, "USV_OUTCOME=%s", outcome);
	snprintf(f_label, sizeof f_label, "USV_LABEL=%s", nresults ? results[0].pred_label : "");
	snprintf(f_prob, sizeof f_prob, "USV_PROB=%.4f",
	         nresults ? results[0].probs[results[0].pred_index] : 0.0);
	snprintf(f_ms, sizeof f_ms, "USV_TOTAL_MS=%.1f", total_ms);
	snprintf(f_batch, sizeof f_batch, "USV_BATCH=%d", batch);
	if (nresults)
		usv_log_fields(LOG_INFO, USV_MSGID_INSTANCE, fields, 7,
		               "instance %s: %s (p=%.3f, %zu frame(s), %zu result object(s), "
		               "%.1f ms)",
		               j->id, results[0].pred_label,
		               results[0].probs[results[0].pred_index], nresults, nouts, total_ms);
	else
		usv_log_fields(strcmp(outcome, "excluded") ? LOG_WARNING : LOG_NOTICE,
		               USV_MSGID_INSTANCE, fields, 7, "instance %s %s: %s", j->id, outcome,
		               str(reason));
}

/* A move out of active/ failed (sidecar, rename: the disk refused). An
 * instance still in active/ goes back to incoming/ to be redone after a
 * pause, rather than waiting there for the next start; one that did move
 * (only its directory sync failed) stays where it is. */
static void retry_after_failed_move(struct usv_worker_pool *p, const char *id)
{
	char path[PATH_MAX];
	if (usv_spool_path(p->env.spool, USV_SPOOL_ACTIVE, id, path, sizeof path) ||
	    access(path, F_OK))
		return;
	struct timespec pause = {1, 0};
	nanosleep(&pause, NULL); /* the disk is failing: do not spin on it */
	int r = usv_spool_requeue(p->env.spool, id);
	if (r < 0)
		usv_log(LOG_ERR, "spool: %s: cannot requeue: %s", id, usv_strerror(r));
	else
		usv_log(LOG_WARNING, "spool: %s: requeued after a failed move", id);
}

/* Moves a claimed instance that produced no results to failed/ or
 * excluded/, with an index line. */
static void finish_bad(struct worker *w, struct job *j, enum usv_spool_state state,
                       const char *reason)
{
	struct usv_worker_pool *p = w->pool;
	usv_dcm *h = NULL;
	usv_dcm_info info;
	int have = 0;
	char err[USV_ERRBUF];

	usv_prepared_free(j->prep);
	j->prep = NULL;
	/* The header, for the index (released before the file moves). */
	if (usv_dcm_open(j->path, &h, err, sizeof err) == 0) {
		info = *usv_dcm_get_info(h);
		have = 1;
		usv_dcm_free(h);
	} else {
		/* the file meta header alone, for files the reader refuses */
		memset(&info, 0, sizeof info);
		have = usv_dcm_read_meta_uids(j->path, info.sop_class_uid,
		                              sizeof info.sop_class_uid, info.sop_instance_uid,
		                              sizeof info.sop_instance_uid, NULL, 0) == 0;
	}
	/* index line first: a crash before the move repeats the work (and the
	 * line) but never loses the line */
	record(w, j, have ? &info : NULL, state == USV_SPOOL_EXCLUDED ? "excluded" : "failed",
	       reason, NULL, 0, NULL, 0, 0, 1);
	notify_qa(w, j, have ? &info : NULL, state == USV_SPOOL_EXCLUDED ? "excluded" : "failed");
	int r = usv_spool_finish(p->env.spool, j->id, state, reason);
	if (r < 0) {
		usv_log(LOG_ERR, "spool: %s: cannot move to %s: %s", j->id,
		        state == USV_SPOOL_EXCLUDED ? "excluded" : "failed", usv_strerror(r));
		retry_after_failed_move(p, j->id);
	}
	atomic_fetch_sub(&p->inflight, 1);
}

/* Claims and prepares one instance. 1: added to the batch; 0: claimed but
 * finished at once (failed/excluded); -ENOENT: nothing to claim; other
 * negative: spool error. */
static int claim_one(struct worker *w, const usv_prepare_opts *opts, int *njobs, int *nframes)
{
	struct usv_worker_pool *p = w->pool;
	struct job *j = &w->jobs[*njobs];
	char reason[USV_ERRBUF] = "";
	int r;

	memset(j, 0, sizeof *j);
	r = usv_spool_claim(p->env.spool, j->id, sizeof j->id);
	if (r < 0)
		return r;
	atomic_fetch_add(&p->inflight, 1);
	j->t_claim = now_s();
	usv_spool_path(p->env.spool, USV_SPOOL_ACTIVE, j->id, j->path, sizeof j->path);
	r = usv_dcm_prepare(j->path, opts, &j->prep, reason, sizeof reason);
	j->t_decode_ms = (now_s() - j->t_claim) * 1000.0;
	if (r == -USV_ERR_EXCLUDED) {
		finish_bad(w, j, USV_SPOOL_EXCLUDED, reason);
		return 0;
	}
	if (r < 0) {
		if (!reason[0])
			snprintf(reason, sizeof reason, "%s", usv_strerror(r));
		finish_bad(w, j, USV_SPOOL_FAILED, reason);
		return 0;
	}
	if (j->prep->nframes == 0 || j->prep->nframes > MAX_FRAMES_PER_INSTANCE) {
		snprintf(reason, sizeof reason, "%zu frames selected", j->prep->nframes);
		finish_bad(w, j, USV_SPOOL_FAILED, reason);
		return 0;
	}
	if (w->reader)
		read_label(w, j);
	j->first = *nframes;
	j->nframes = (int)j->prep->nframes;
	for (int k = 0; k < j->nframes; k++)
		w->frames[*nframes + k] = (struct frame_ref){*njobs, k};
	*nframes += j->nframes;
	(*njobs)++;
	return 1;
}

/* What finish_job hands to write_output through usv_route_put: objects
 * 0..nframes-1 are the SRs of the frames, nframes..2*nframes-1 the tagged
 * copies. Each call records its output; the first report.nput of them are
 * the ones that reached an outbox. */
struct output_ctx {
	struct worker *w;
	const usv_result *results;
	size_t nframes;
	struct usv_index_output *outs;
	usv_result_ids *ids;
	size_t nouts, max_outs;
};

/* usv_route_write_fn: one result object into tmp_path. */
static int write_output(void *ctx, const usv_dest *dest, size_t i, size_t k, const char *tmp_path,
                        char *err, size_t errlen)
{
	struct output_ctx *c = ctx;
	int sr = k < c->nframes;
	const usv_result *res = &c->results[sr ? k : k - c->nframes];
	usv_result_ids *ids;
	usv_result_opts o;
	int r;

	(void)i;
	if (c->nouts >= c->max_outs)
		return usv_seterr(err, errlen, -EOVERFLOW, "too many result objects");
	ids = &c->ids[c->nouts];
	memset(&o, 0, sizeof o);
	o.software_version = c->w->pool->env.software_version;
	r = sr ? usv_sr_write(res, &o, tmp_path, ids, err, errlen)
	       : usv_tagged_write(res, &o, tmp_path, ids, err, errlen);
	if (r < 0)
		return r;
	c->outs[c->nouts] =
	    (struct usv_index_output){dest->name, sr ? "sr" : "tagged", ids->sop_instance_uid};
	c->nouts++;
	return 0;
}

/* Results, index line and final move of one classified instance. */
static void finish_job(struct worker *w, struct job *j, int batch)
{
	struct usv_worker_pool *p = w->pool;
	const usv_model_meta *m = p->meta;
	const struct usv_worker_settings *c = w->set;
	usv_dcm_info info = j->prep->info;
	size_t nf = (size_t)j->nframes;
	usv_result *results = calloc(nf, sizeof *results);
	size_t max_outs = nf * (c->routes.n ? c->routes.n : 1) * 2;
	struct usv_index_output *outs = calloc(max_outs, sizeof *outs);
	usv_result_ids *ids = calloc(max_outs, sizeof *ids);
	struct usv_route_object *objs = calloc(2 * nf, sizeof *objs);
	size_t nouts = 0;
	char err[USV_ERRBUF] = "";
	int n_sr = 0, n_tagged = 0;

	if (!results || !outs || !ids || !objs) {
		snprintf(j->fail, sizeof j->fail, "out of memory");
		goto out;
	}
	if (j->fail[0])
		goto out;
	for (int k = 0; k < j->nframes; k++) {
		usv_result *r = &results[k];
		const float *probs = w->scores + (size_t)(j->first + k) * (size_t)m->n_labels;
		snprintf(r->source_path, sizeof r->source_path, "%s", j->path);
		r->frame = (uint32_t)j->prep->frames[k].index;
		if (usv_result_fill(r, (const char *const *)m->labels, probs, (size_t)m->n_labels,
		                    (size_t)c->top_k, err, sizeof err) < 0) {
			snprintf(j->fail, sizeof j->fail, "result: %s", err);
			goto out;
		}
		snprintf(r->model_name, sizeof r->model_name, "%.63s", m->name);
		snprintf(r->model_version, sizeof r->model_version, "%s", m->arch);
		snprintf(r->model_sha256, sizeof r->model_sha256, "%s", m->sha256);
		snprintf(r->algorithm_version, sizeof r->algorithm_version, "%s",
		         str(p->env.software_version));
		r->t_decode_ms = j->t_decode_ms;
		r->t_infer_ms = j->t_infer_ms;
		r->t_total_ms = (now_s() - j->t_claim) * 1000.0;
		if (j->tech_label[0]) {
			snprintf(r->tech_label, sizeof r->tech_label, "%s", j->tech_label);
			snprintf(r->tech_source, sizeof r->tech_source, "%s", j->tech_source);
			r->agrees = !strcmp(j->tech_label, r->pred_label);
		}
		if (c->min_confidence > 0) {
			r->min_confidence = (float)c->min_confidence;
			r->uncertain = r->probs[r->pred_index] < c->min_confidence;
		}
	}
	snprintf(j->label, sizeof j->label, "%s", results[0].pred_label);
	j->prob = results[0].probs[results[0].pred_index];
	j->uncertain = results[0].uncertain;
	j->agrees = j->tech_label[0] ? results[0].agrees : -1;
	/* per destination: the SRs of every frame, then the tagged copies */
	for (size_t k = 0; k < nf; k++) {
		objs[k] = (struct usv_route_object){USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS};
		objs[nf + k] = (struct usv_route_object){USV_DEST_TAGGED, info.sop_class_uid};
	}
	struct output_ctx oc = {w, results, nf, outs, ids, 0, max_outs};
	struct usv_route_report rep;
	int r = usv_route_put(p->env.spool, &c->routes, objs, 2 * nf, USV_ROUTE_SYNC_LATER,
	                      write_output, &oc, &rep, err, sizeof err);
	j->dests |= rep.used;
	nouts = rep.nput;
	for (size_t i = 0; i < nouts; i++) {
		if (!strcmp(outs[i].kind, "sr"))
			n_sr++;
		else
			n_tagged++;
	}
	if (r < 0)
		snprintf(j->fail, sizeof j->fail, "%s result for %s: %s",
		         rep.failed_obj < nf ? "SR" : "tagged copy",
		         c->routes.dests[rep.failed_dest].name, err);
out:
	usv_metrics_inc(p->env.metrics, USV_C_RESULT_SR, (uint64_t)n_sr);
	usv_metrics_inc(p->env.metrics, USV_C_RESULT_TAGGED, (uint64_t)n_tagged);
	if (!j->fail[0])
		usv_metrics_qa(p->env.metrics, j->label, j->agrees, j->uncertain);
	j->info = info;
	j->have_info = 1;
	usv_prepared_free(j->prep);
	j->prep = NULL;
	/* the index line (synced with the batch); the move follows in finish_batch */
	if (j->fail[0])
		record(w, j, &info, "failed", j->fail, results, results ? (size_t)j->nframes : 0,
		       outs, nouts, batch, 0);
	else
		record(w, j, &info, "done", NULL, results, (size_t)j->nframes, outs, nouts, batch,
		       0);
	free(results);
	free(outs);
	free(ids);
	free(objs);
}

/* The index line of a job said "done" but its results could not be made
 * durable, so it goes to failed/: a second line (same spool id) says so.
 * Readers take the last line of a spool id. */
static void record_late_failure(struct worker *w, const struct job *j)
{
	struct usv_worker_pool *p = w->pool;
	const usv_model_meta *m = p->meta;
	struct usv_index_record rec = {
	    .spool_id = j->id,
	    .outcome = "failed",
	    .reason = j->fail,
	    .sop_instance_uid = "",
	    .sop_class_uid = "",
	    .series_uid = "",
	    .study_uid = "",
	    .manufacturer = "",
	    .manufacturer_model = "",
	    .model_name = m->name,
	    .model_sha256 = m->sha256,
	    .model_arch = m->arch,
	};
	if (p->env.index) {
		int r = usv_results_index_append(p->env.index, &rec);
		if (r < 0)
			usv_log(LOG_ERR, "results index: %s", usv_strerror(r));
	}
	usv_log(LOG_WARNING, "instance %s failed after its results: %s", j->id, j->fail);
}

/* Makes the batch's results and index lines durable with one fsync per
 * outbox directory and one of the index, then moves the instances to done/
 * (one fsync of done/) or failed/. Per instance the order stays: results,
 * index line, move; a crash anywhere leaves it in active/ (redone). */
static void finish_batch(struct worker *w, int njobs)
{
	struct usv_worker_pool *p = w->pool;
	uint32_t used = 0, bad = 0;
	char bad_why[USV_ERRBUF] = "";
	int done = 0;

	for (int i = 0; i < njobs; i++)
		used |= w->jobs[i].dests;
	/* one fsync per outbox directory that received files */
	if (usv_route_sync(p->env.spool, &w->set->routes, used, &bad, bad_why, sizeof bad_why) < 0)
		usv_log(LOG_ERR, "spool: %s", bad_why);
	if (p->env.index) {
		int r = usv_results_index_sync(p->env.index);
		if (r < 0)
			usv_log(LOG_ERR, "results index: %s", usv_strerror(r));
	}
	if ((used & ~bad) && p->env.on_output)
		p->env.on_output(p->env.ctx);
	for (int i = 0; i < njobs; i++) {
		struct job *j = &w->jobs[i];
		int r;

		if (!j->fail[0] && (j->dests & bad)) {
			snprintf(j->fail, sizeof j->fail, "%s", bad_why);
			record_late_failure(w, j);
		}
		notify_qa(w, j, j->have_info ? &j->info : NULL, j->fail[0] ? "failed" : "done");
		if (j->fail[0]) {
			r = usv_spool_finish(p->env.spool, j->id, USV_SPOOL_FAILED, j->fail);
			if (r < 0) {
				usv_log(LOG_ERR, "spool: %s: cannot move to failed: %s", j->id,
				        usv_strerror(r));
				retry_after_failed_move(p, j->id);
			}
		} else {
			r = usv_spool_move_done(p->env.spool, j->id);
			if (r < 0) {
				usv_log(LOG_ERR, "spool: %s: cannot move to done: %s", j->id,
				        usv_strerror(r));
				retry_after_failed_move(p, j->id);
			} else
				done++;
		}
	}
	if (done) {
		int r = usv_spool_sync_state(p->env.spool, USV_SPOOL_DONE);
		if (r < 0)
			usv_log(LOG_ERR, "spool: done/: %s", usv_strerror(r));
	}
	atomic_fetch_sub(&p->inflight, njobs);
}

/* Views per image: the configuration's, else the model's. */
static int test_views(const struct worker *w)
{
	int v = w->set->test_views;
	if (!usv_views_valid(v))
		v = w->pool->meta->test_views;
	return usv_views_valid(v) ? v : 1;
}

/* Runs the batch: nframes x V inputs (V = test views, one after the
 * other per frame), batch_size at a time; each frame's probabilities are
 * the mean of its views' (each through the calibrated softmax). */
static void run_batch(struct worker *w, int njobs, int nframes)
{
	struct usv_worker_pool *p = w->pool;
	const usv_model_meta *m = p->meta;
	size_t per = (size_t)m->input_c * (size_t)m->input_h * (size_t)m->input_w;
	size_t nl = (size_t)m->n_labels;
	int bs = p->env.batch_size, V = test_views(w), units = nframes * V;

	memset(w->scores, 0, sizeof(float) * nl * (size_t)nframes);
	for (int i = 0; i < njobs; i++)
		w->jobs[i].views = V;
	for (int start = 0; start < units; start += bs) {
		int n = units - start < bs ? units - start : bs;
		int r = 0, chw[3] = {0, 0, 0};
		const float *out = NULL;
		char why[USV_ERRBUF] = "";

		for (int i = 0; i < n && r == 0; i++) {
			const struct frame_ref *f = &w->frames[(start + i) / V];
			const usv_image *img = w->jobs[f->job].prep->frames[f->k].img;
			int ox, oy, flip;
			if (img->w != m->resize_w || img->h != m->resize_h || img->c != 3) {
				r = -EINVAL;
				snprintf(why, sizeof why,
				         "prepared frame is %dx%dx%d, model wants %dx%dx3", img->w,
				         img->h, img->c, m->resize_w, m->resize_h);
				break;
			}
			usv_preprocess_view(m, (start + i) % V, &ox, &oy, &flip);
			r = usv_preprocess(m, img->px, ox, oy, flip, w->input + (size_t)i * per);
			if (r < 0)
				snprintf(why, sizeof why, "preprocess: %s", usv_strerror(r));
		}
		double t0 = now_s();
		if (r == 0) {
			r = usv_session_run(w->session, w->input, n, &out, chw);
			if (r < 0)
				snprintf(why, sizeof why, "inference: %s", usv_strerror(r));
			else if (chw[0] * chw[1] * chw[2] != m->n_labels) {
				r = -EINVAL;
				snprintf(why, sizeof why, "model output has %d values, %d labels",
				         chw[0] * chw[1] * chw[2], m->n_labels);
			}
		}
		double infer_ms = (now_s() - t0) * 1000.0;
		usv_metrics_inc(p->env.metrics, USV_C_BATCHES, 1);
		usv_metrics_inc(p->env.metrics, USV_C_BATCH_IMAGES, (uint64_t)n);
		for (int i = 0; i < n; i++) {
			int fi = (start + i) / V;
			struct job *j = &w->jobs[w->frames[fi].job];
			float *dst = w->scores + (size_t)fi * nl, *one = w->view_scores;
			j->t_infer_ms += infer_ms / n;
			if (r < 0) {
				if (!j->fail[0])
					snprintf(j->fail, sizeof j->fail, "%s", why);
				continue;
			}
			memcpy(one, out + (size_t)i * nl, sizeof(float) * nl);
			if (!m->output_is_prob)
				usv_softmax_t(one, m->n_labels, m->temperature);
			for (size_t k = 0; k < nl; k++) {
				if (!isfinite(one[k]) && !j->fail[0])
					snprintf(j->fail, sizeof j->fail,
					         "inference produced a non-finite score");
				dst[k] += one[k] / (float)V;
			}
		}
	}
	for (int i = 0; i < njobs; i++)
		finish_job(w, &w->jobs[i], nframes);
	finish_batch(w, njobs);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct usv_worker_pool *p = w->pool;
	int bs = p->env.batch_size;

	while (!stopping(p)) {
		usv_prepare_opts opts;
		int njobs = 0, nframes = 0;
		double deadline = 0;

		beat(w);
		p->env.get_settings(p->env.ctx, w->set);
		update_reader(w);
		prepare_opts(w, &opts);
		for (;;) {
			unsigned long seen = current_seq(p);
			int r = -ENOENT;
			if (nframes < bs && !stopping(p))
				r = claim_one(w, &opts, &njobs, &nframes);
			if (r >= 0) {
				if (njobs == 1 && r == 1 && deadline == 0)
					deadline = now_s() + w->set->batch_wait_ms / 1000.0;
				beat(w);
				continue;
			}
			if (r != -ENOENT)
				usv_log(LOG_ERR, "spool: claim: %s", usv_strerror(r));
			if (nframes >= bs || stopping(p))
				break;
			if (njobs == 0) {
				wait_for_work(p, seen, now_s() + (r == -ENOENT ? 1.0 : 5.0));
				break;
			}
			if (now_s() >= deadline)
				break;
			wait_for_work(p, seen, deadline);
		}
		if (njobs > 0)
			run_batch(w, njobs, nframes);
	}
	return NULL;
}

static void worker_free(struct worker *w)
{
	usv_label_reader_free(w->reader);
	w->reader = NULL;
	usv_session_free(w->session);
	free(w->input);
	free(w->view_scores);
	free(w->scores);
	free(w->jobs);
	free(w->frames);
	free(w->set);
}

int usv_worker_pool_start(const struct usv_worker_env *env, struct usv_worker_pool **out,
                          char *errbuf, size_t errlen)
{
	struct usv_worker_pool *p;
	const usv_model_meta *m;
	int r = 0;

	if (!env || !env->spool || !env->model || !env->get_settings || env->workers < 1 ||
	    env->workers > 64 || env->batch_size < 1 || env->batch_size > 64)
		return usv_seterr(errbuf, errlen, -EINVAL, "worker pool: bad settings");
	m = usv_model_get_meta(env->model);
	if (m->resize_w != m->resize_h || m->resize_w < 16 || m->resize_w > 1024 ||
	    m->n_labels < 1 || m->n_labels > USV_RESULT_MAX_CLASSES)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "model: resize %dx%d and %d labels not supported by the daemon "
		                  "(square 16..1024, 1..%d labels)",
		                  m->resize_w, m->resize_h, m->n_labels, USV_RESULT_MAX_CLASSES);
	p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->env = *env;
	p->meta = m;
	p->nw = env->workers;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->w = calloc((size_t)p->nw, sizeof *p->w);
	if (!p->w) {
		free(p);
		return -ENOMEM;
	}
	size_t per = (size_t)m->input_c * (size_t)m->input_h * (size_t)m->input_w;
	for (int i = 0; i < p->nw && r == 0; i++) {
		struct worker *w = &p->w[i];
		usv_session_opts so = {
		    .max_batch = env->batch_size,
		    .threads = env->threads,
		    .end_layer = m->output_layer && *m->output_layer ? m->output_layer : NULL};
		w->pool = p;
		w->index = i;
		w->cap_frames = env->batch_size - 1 + MAX_FRAMES_PER_INSTANCE;
		w->input = malloc(sizeof(float) * per * (size_t)env->batch_size);
		w->scores = malloc(sizeof(float) * (size_t)m->n_labels * (size_t)w->cap_frames);
		w->view_scores = malloc(sizeof(float) * (size_t)m->n_labels);
		w->jobs = calloc((size_t)env->batch_size, sizeof *w->jobs);
		w->frames = calloc((size_t)w->cap_frames, sizeof *w->frames);
		w->set = calloc(1, sizeof *w->set);
		if (!w->input || !w->scores || !w->view_scores || !w->jobs || !w->frames ||
		    !w->set) {
			r = usv_seterr(errbuf, errlen, -ENOMEM, "worker pool: out of memory");
			break;
		}
		r = usv_session_new(env->model, &so, &w->session);
		if (r < 0)
			usv_seterr(errbuf, errlen, r, "model: cannot create a session: %s",
			           usv_strerror(r));
	}
	for (int i = 0; i < p->nw && r == 0; i++) {
		beat(&p->w[i]);
		int e = pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]);
		if (e) {
			r = usv_seterr(errbuf, errlen, -e, "worker pool: pthread_create: %s",
			               strerror(e));
			break;
		}
		p->w[i].started = 1;
	}
	if (r < 0) {
		usv_worker_pool_stop(p);
		return r;
	}
	*out = p;
	return 0;
}

void usv_worker_pool_wake(struct usv_worker_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->seq++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void usv_worker_pool_stop(struct usv_worker_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nw; i++)
		if (p->w[i].started)
			pthread_join(p->w[i].thread, NULL);
	for (int i = 0; i < p->nw; i++)
		worker_free(&p->w[i]);
	free(p->w);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int usv_worker_pool_health(struct usv_worker_pool *p, double max_age_s, char *why, size_t whylen)
{
	long long now = (long long)(now_s() * 1000);

	for (int i = 0; i < p->nw; i++) {
		long long age = now - atomic_load(&p->w[i].heartbeat_ms);
		if (age > (long long)(max_age_s * 1000))
			return usv_seterr(why, whylen, -ETIMEDOUT,
			                  "worker %d has not made progress for %.1f s", i,
			                  age / 1000.0);
	}
	return 0;
}

int usv_worker_pool_inflight(struct usv_worker_pool *p)
{
	return p ? atomic_load(&p->inflight) : 0;
}
