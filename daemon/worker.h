/*
 * NAME
 *	worker.h - usviewd worker pool: claim, prepare, batched inference,
 *	results into the outboxes, results index
 *
 * DESCRIPTION
 *	N worker threads share one immutable usv_model; each owns a
 *	usv_session sized for batch_size images. A worker claims the oldest
 *	instance of the spool's incoming/ (rename to active/), prepares it
 *	(decode, exclusions, crop, 256x256 RGB per selected frame) and keeps
 *	claiming until it holds batch_size frames or batch_wait_ms have passed
 *	since the first claim; then it runs the network over all frames of the
 *	batch (chunks of batch_size), and for each instance writes the result
 *	objects (SR and/or tagged copy per destination, per frame) into
 *	outbox/<destination>/, appends one line to results.jsonl and moves the
 *	instance to done/. An instance that cannot be read or classified goes
 *	to failed/ with its reason, an excluded one (policy) to excluded/; the
 *	worker carries on. See the DESIGN comment in worker.c for the crash
 *	reasoning.
 *
 *	The settings a worker uses per batch (struct usv_worker_settings:
 *	crop rules, frames policy, colour threshold, top_k, batch_wait_ms,
 *	the destinations with their routing, min_confidence and the QA label
 *	settings) are copied through
 *	env->get_settings at the start of each batch, so a SIGHUP reload
 *	applies to the next batch. The worker never reads the configuration
 *	itself: the daemon builds the settings (usv_worker_settings_from_config
 *	in results_route.h). Result files enter the outboxes through
 *	usv_route_put(), the one routing function the sender uses too.
 *
 * CONTRACTS
 *	usv_worker_pool_start(env, &pool, errbuf, errlen)
 *		env is copied; the objects it points to must outlive the
 *		pool; env->get_settings is required. Creates the sessions
 *		first (so a model that cannot run fails here), then the
 *		threads (they inherit the caller's signal mask: block signals
 *		before). 0, -EINVAL, -ENOMEM, -errno.
 *	usv_worker_pool_wake(pool)
 *		New work in incoming/ (receiver callback). Thread-safe.
 *	usv_worker_pool_stop(pool)
 *		Lets each worker finish its current batch, joins, frees.
 *		Unclaimed work stays in incoming/. NULL-safe.
 *	usv_worker_pool_health(pool, max_age_s, why, whylen)
 *		0 when every worker thread has looped within max_age_s
 *		seconds (idle workers loop at least once a second), else
 *		-ETIMEDOUT with a reason. Thread-safe.
 *	usv_worker_pool_inflight(pool)
 *		Instances claimed and not yet finished.
 *
 * QA
 *	With env->label_table and settings qa_labels, each worker thread
 *	keeps one usv_label_reader (label_read.h; OCR per qa_ocr, made again
 *	when qa_ocr or qa_tessdata change) and reads the technologist's
 *	label of each instance from the worker's own prepare (frames kept
 *	before the crop, then dropped): usv_result.tech_label / tech_source
 *	/ agrees (the label equals the model's most probable class, also when
 *	the result is uncertain). The reader's measurement and colour
 *	exclusions are ignored (the daemon's exclusion policy is prepare's).
 *	A label that cannot be read (OCR failure, no Tesseract data) never
 *	fails the instance: no label, a log line. uncertain = top probability
 *	< min_confidence (when > 0). Per instance: usv_metrics_qa(), the QA
 *	keys of the results.jsonl line, and env->on_instance (qa.h) once the
 *	line is durable and before the instance leaves active/ (every
 *	outcome; an error is logged and ignored).
 */
#ifndef USV_WORKER_H
#define USV_WORKER_H

#include <stddef.h>

#include "metrics.h"
#include "qa.h"
#include "results_index.h"
#include "results_route.h"
#include "spool.h"
#include "usv/crop.h"
#include "usv/dcm_prepare.h"
#include "usv/label_text.h"
#include "usv/nn.h"

#define USV_WORKER_MAX_CROPS 64
#define USV_WORKER_NAME_MAX 64
#define USV_WORKER_PATH_MAX 1024

/* A fixed crop rule (usv_crop_rule, with its strings held here). */
struct usv_worker_crop {
	char manufacturer[USV_WORKER_NAME_MAX]; /* "" = any */
	char model[USV_WORKER_NAME_MAX];        /* "" = any */
	int rows, cols;                         /* 0 = any */
	int centred;                            /* box.x, box.y ignored */
	usv_box box;
};

/* What a worker needs per batch; a plain value (copy with '='). */
struct usv_worker_settings {
	size_t ncrops;
	struct usv_worker_crop crops[USV_WORKER_MAX_CROPS];
	enum usv_frame_policy frames;
	int every_n;             /* USV_FRAMES_EVERY_NTH, >= 1 */
	double colour_threshold; /* share 0..1; < 0 disables the check */
	int top_k;               /* probabilities per result, >= 1 */
	int batch_wait_ms;       /* longest wait for a batch to fill */
	struct usv_routes routes;
	/* QA */
	double min_confidence; /* top probability below: "uncertain"; 0 = off */
	int test_views;        /* views averaged per image; 0 = the model's */
	int qa_labels;         /* read the technologist's label (needs env->label_table) */
	int qa_ocr;            /* ... also from the burned-in text (Tesseract) */
	char qa_tessdata[USV_WORKER_PATH_MAX]; /* Tesseract data folder; "" = default */
};

struct usv_worker_env {
	usv_spool *spool;
	const usv_model *model;
	struct usv_results_index *index; /* may be NULL */
	struct usv_metrics *metrics;     /* may be NULL */
	int workers;                     /* 1..64 */
	int batch_size;                  /* 1..64 */
	int threads;                     /* engine threads per session */
	/* copies the current settings (under the caller's lock) */
	void (*get_settings)(void *ctx, struct usv_worker_settings *out);
	/* called after result files were put into outboxes */
	void (*on_output)(void *ctx);
	/* QA: each finished instance (qa.h); may be NULL */
	usv_qa_instance_fn on_instance;
	/* QA: the name of the first configured protocol that the instance's
	 * Study Description, Requested Procedure Description or Protocol
	 * Name matches, into name ("" = none), for the "protocol" key of its
	 * line; may be NULL (always none) */
	void (*match_protocol)(void *ctx, const char *study_description,
	                       const char *requested_procedure_description,
	                       const char *protocol_name, char *name, size_t len);
	/* QA: the view table of the technologist's labels (borrowed, shared,
	 * read-only); NULL = no labels are read */
	const usv_label_table *label_table;
	void *ctx;
	const char *software_version;
};

struct usv_worker_pool;

int usv_worker_pool_start(const struct usv_worker_env *env, struct usv_worker_pool **out,
                          char *errbuf, size_t errlen);
void usv_worker_pool_wake(struct usv_worker_pool *pool);
void usv_worker_pool_stop(struct usv_worker_pool *pool);
int usv_worker_pool_health(struct usv_worker_pool *pool, double max_age_s, char *why,
                           size_t whylen);
int usv_worker_pool_inflight(struct usv_worker_pool *pool);

#endif
