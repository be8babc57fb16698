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
 *	The settings a worker uses per batch (crop rules, frames policy,
 *	colour threshold, destinations, top_k, batch_wait_ms) are copied from
 *	the daemon's current configuration through env->get_config at the
 *	start of each batch, so a SIGHUP reload applies to the next batch.
 *
 * CONTRACTS
 *	usv_worker_pool_start(env, &pool, errbuf, errlen)
 *		env is copied; the objects it points to must outlive the pool.
 *		Creates the sessions first (so a model that cannot run fails
 *		here), then the threads (they inherit the caller's signal mask:
 *		block signals before). 0, -EINVAL, -ENOMEM, -errno.
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
 */
#ifndef USV_WORKER_H
#define USV_WORKER_H

#include <stddef.h>

#include "metrics.h"
#include "results_index.h"
#include "spool.h"
#include "usv/config.h"
#include "usv/nn.h"

struct usv_worker_env {
	usv_spool *spool;
	const usv_model *model;
	struct usv_results_index *index; /* may be NULL */
	struct usv_metrics *metrics;     /* may be NULL */
	int workers;                     /* 1..64 */
	int batch_size;                  /* 1..64 */
	int threads;                     /* engine threads per session */
	/* copies the current configuration (under the daemon's lock) */
	void (*get_config)(void *ctx, struct usv_config *out);
	/* called after result files were put into outboxes */
	void (*on_output)(void *ctx);
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
