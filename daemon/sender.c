/*
 * NAME
 *	sender.c - deliver results from outbox/<dest>/ by C-STORE, with
 *	durable retries, backoff and dead letters
 *
 * DESCRIPTION
 *	State lives in the spool: an item's attempt count, next-try time and
 *	last error are in its .state file (usv_spool_outbox_defer), so a
 *	restart continues where the sender stopped. In memory there is only a
 *	per-destination "blocked until" time: after a retryable failure the
 *	other items of that destination wait for the same backoff instead of
 *	each failing on its own (their attempt counts are not raised; this is
 *	not durable, after a restart the first due item probes the peer).
 *
 *	Per destination and poll, the due items go over one association
 *	(usv_scu_store_many with USV_SCU_STOP_ON_RETRY); each tried item is
 *	then settled on its own exactly as a single send would be, and
 *	untried ones are left for the destination's backoff.
 *
 *	Sending happens outside the sender's mutex; the mutex guards the
 *	counters and the wake/stop flags only. One thread polls (ours or the
 *	caller's), so an item is never sent by two threads at once.
 *
 *	next_try is stored in whole seconds (time_t): delays are rounded up.
 */
#include "sender.h"

#include "spool.h"
#include "usv/dcm_scu.h"
#include "usv/err.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct dest_state {
	usv_dest d;
	usv_sender_counters c;
	double blocked_until; /* in-memory destination backoff */
	uint32_t fail_streak;
	double next_scan;  /* no need to list the outbox before this ... */
	uint64_t scan_gen; /* ... unless a wake-up came after the last scan */
};

/* Longest time an outbox is not looked at without a wake-up. */
#define USV_SENDER_RESCAN_S 30.0

struct usv_sender {
	usv_spool *spool;
	usv_sender_opts o;
	size_t n;
	struct dest_state *dests;
	struct usv_routes routes; /* the same destinations, for usv_route_put */
	uint64_t rng;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int wake;
	uint64_t wake_gen; /* counts usv_sender_wake calls */
	int stop;
	int running;
	pthread_t thread;
};

double usv_backoff_delay(const usv_dest *d, uint32_t n, double u)
{
	double base = d->backoff_base_s > 0 ? d->backoff_base_s : 30.0;
	double max = d->backoff_max_s > 0 ? d->backoff_max_s : 3600.0;
	double x = base;
	uint32_t i;

	if (n == 0)
		n = 1;
	for (i = 1; i < n && x < max; i++)
		x *= 2.0;
	if (x > max)
		x = max;
	if (!(u >= 0.0) || u >= 1.0)
		u = 0.0;
	return x / 2.0 + u * (x / 2.0);
}

/* ---- helpers ---------------------------------------------------------- */

static double rng_uniform(usv_sender *s)
{
	/* xorshift64* */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double)((s->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void logf_(usv_sender *s, int level, const char *dest, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void logf_(usv_sender *s, int level, const char *dest, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (!s->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	s->o.log(s->o.log_ctx, level, dest, msg);
}

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- life cycle ------------------------------------------------------- */

int usv_sender_create(struct usv_spool *spool, const usv_dest *dests, size_t n,
                      const usv_sender_opts *opts, usv_sender **out, char *errbuf, size_t errlen)
{
	usv_sender *s;
	size_t i, j;
	int rc;

	if (!out)
		return usv_seterr(errbuf, errlen, -EINVAL, "sender: NULL output");
	*out = NULL;
	if (!spool || (n && !dests) || n > USV_ROUTE_MAX_DESTS)
		return usv_seterr(errbuf, errlen, -EINVAL, "sender: invalid arguments");
	s = calloc(1, sizeof *s);
	if (!s)
		return usv_seterr(errbuf, errlen, -ENOMEM, "sender: out of memory");
	s->dests = n ? calloc(n, sizeof *s->dests) : NULL;
	if (n && !s->dests) {
		free(s);
		return usv_seterr(errbuf, errlen, -ENOMEM, "sender: out of memory");
	}
	s->spool = spool;
	s->n = n;
	if (opts)
		s->o = *opts;
	if (s->o.poll_interval_s <= 0)
		s->o.poll_interval_s = 1.0;
	if (!s->o.max_per_poll)
		s->o.max_per_poll = 64;
	s->rng = s->o.jitter_seed
	             ? s->o.jitter_seed
	             : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9E3779B97F4A7C15ULL;
	if (!s->rng)
		s->rng = 1;
	for (i = 0; i < n; i++) {
		s->dests[i].d = dests[i];
		usv_dest_defaults(&s->dests[i].d);
		rc = usv_dest_check(&s->dests[i].d, errbuf, errlen);
		for (j = 0; !rc && j < i; j++)
			if (strcmp(s->dests[j].d.name, s->dests[i].d.name) == 0)
				rc = usv_seterr(errbuf, errlen, -EINVAL,
				                "destination %s: name used twice", dests[i].name);
		if (rc) {
			free(s->dests);
			free(s);
			return rc;
		}
		s->routes.dests[i] = s->dests[i].d;
	}
	s->routes.n = n;
	pthread_mutex_init(&s->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	*out = s;
	return 0;
}

void usv_sender_free(usv_sender *s)
{
	if (!s)
		return;
	usv_sender_stop(s);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->dests);
	free(s);
}

size_t usv_sender_ndest(const usv_sender *s)
{
	return s ? s->n : 0;
}

int usv_sender_counters_get(usv_sender *s, size_t i, usv_dest *dest_out, usv_sender_counters *out)
{
	if (!s || i >= s->n)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	if (dest_out)
		*dest_out = s->dests[i].d;
	if (out)
		*out = s->dests[i].c;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* ---- enqueue ---------------------------------------------------------- */

static int copy_to_fd(const char *path, int out)
{
	char buf[65536];
	int in = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (in < 0)
		return -errno;
	for (;;) {
		ssize_t r = read(in, buf, sizeof buf), off = 0;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (r == 0)
			break;
		while (off < r) {
			ssize_t w = write(out, buf + off, (size_t)(r - off));

			if (w < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				break;
			}
			off += w;
		}
		if (rc)
			break;
	}
	close(in);
	return rc;
}

struct copy_src {
	const char *path;
};

/* usv_route_write_fn: the object is a copy of the file ctx names. */
static int copy_write(void *ctx, const usv_dest *d, size_t i, size_t k, const char *tmp_path,
                      char *err, size_t errlen)
{
	const char *path = ((const struct copy_src *)ctx)->path;
	int fd = open(tmp_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	int rc;

	(void)d, (void)i, (void)k;
	if (fd < 0)
		rc = -errno;
	else {
		rc = copy_to_fd(path, fd);
		if (close(fd) != 0 && !rc)
			rc = -errno;
	}
	if (rc)
		return usv_seterr(err, errlen, rc, "%s: cannot copy: %s", path, usv_strerror(rc));
	return 0;
}

int usv_sender_enqueue(usv_sender *s, unsigned kind, const char *sop_class, const char *path,
                       size_t *nqueued, char *errbuf, size_t errlen)
{
	const struct usv_route_object obj = {kind, sop_class};
	struct copy_src src = {path};
	struct usv_route_report rep;
	int rc;

	if (nqueued)
		*nqueued = 0;
	if (!s || !path)
		return usv_seterr(errbuf, errlen, -EINVAL, "sender: invalid enqueue arguments");
	/* each copy durable at once (no batch to share a directory fsync);
	 * copies already made stay queued when a later one fails */
	rc =
	    usv_route_put(s->spool, &s->routes, &obj, 1, 0, copy_write, &src, &rep, errbuf, errlen);
	if (nqueued)
		*nqueued = rep.nput;
	if (rep.nput)
		usv_sender_wake(s);
	return rc < 0 ? rc : 0;
}

/* ---- sending ---------------------------------------------------------- */

/* Durable outcome of one item that was part of an attempt (res->tried):
 * sent, deferred with backoff (the destination then waits too) or dead.
 * Returns 1, or a negative spool error. */
static int settle_item(usv_sender *s, struct dest_state *ds, const usv_outbox_item *it,
                       const usv_scu_result *res, double now)
{
	usv_dest *d = &ds->d;
	char reason[600];
	int rc;

	pthread_mutex_lock(&s->mu);
	ds->c.attempts++;
	pthread_mutex_unlock(&s->mu);

	if (res->outcome == USV_SCU_SUCCESS || res->outcome == USV_SCU_WARNING) {
		rc = usv_spool_outbox_sent(s->spool, d->name, it->name);
		pthread_mutex_lock(&s->mu);
		ds->c.sent++;
		if (res->outcome == USV_SCU_WARNING)
			ds->c.warnings++;
		ds->c.last_success = now;
		ds->blocked_until = 0;
		ds->fail_streak = 0;
		pthread_mutex_unlock(&s->mu);
		logf_(s,
		      res->outcome == USV_SCU_WARNING ? USV_SENDER_LOG_WARNING
		                                      : USV_SENDER_LOG_INFO,
		      d->name, "%s sent after %u attempt(s) (%s, %.0f ms)", it->name,
		      it->attempts + 1, res->reason, res->elapsed_ms);
		return rc ? rc : 1;
	}

	uint32_t attempts = it->attempts + 1;
	double age = now - (double)it->created;
	if (res->outcome == USV_SCU_RETRY && attempts < d->max_attempts && age < d->max_age_s) {
		double delay = usv_backoff_delay(d, attempts, rng_uniform(s));
		time_t next = (time_t)ceil(now + delay);

		rc = usv_spool_outbox_defer(s->spool, d->name, it->name, next, res->reason);
		pthread_mutex_lock(&s->mu);
		ds->c.retries++;
		ds->c.last_failure = now;
		snprintf(ds->c.last_error, sizeof ds->c.last_error, "%s", res->reason);
		ds->fail_streak++;
		ds->blocked_until = (double)next;
		pthread_mutex_unlock(&s->mu);
		logf_(s, USV_SENDER_LOG_WARNING, d->name,
		      "%s attempt %u failed: %s; next try in %.1f s", it->name, attempts,
		      res->reason, (double)next - now);
		return rc ? rc : 1;
	}

	if (res->outcome == USV_SCU_RETRY)
		snprintf(reason, sizeof reason, "gave up after %u attempt(s), %.0f s: %s", attempts,
		         age, res->reason);
	else
		snprintf(reason, sizeof reason, "rejected permanently after %u attempt(s): %s",
		         attempts, res->reason);
	rc = usv_spool_outbox_dead(s->spool, d->name, it->name, reason);
	pthread_mutex_lock(&s->mu);
	ds->c.dead++;
	ds->c.last_failure = now;
	snprintf(ds->c.last_error, sizeof ds->c.last_error, "%s", res->reason);
	if (res->outcome == USV_SCU_RETRY) {
		/* the peer is still failing: keep the others waiting too */
		ds->fail_streak++;
		ds->blocked_until = now + usv_backoff_delay(d, ds->fail_streak, rng_uniform(s));
	}
	pthread_mutex_unlock(&s->mu);
	logf_(s, USV_SENDER_LOG_ERR, d->name, "%s dead: %s", it->name, reason);
	return rc ? rc : 1;
}

/* Sends the due items its[0..n-1] (n <= USV_SCU_MAX_FILES) over one
 * association and settles each tried one in order. Untried items (after a
 * retryable failure: the destination is blocked) are left as they are.
 * *handled gets the number settled; returns 0 or the last spool error. */
static int send_batch(usv_sender *s, struct dest_state *ds, const usv_outbox_item *const *its,
                      size_t n, double now, int *handled)
{
	usv_dest *d = &ds->d;
	char(*paths)[4096] = calloc(n, sizeof *paths);
	const char **pp = calloc(n, sizeof *pp);
	usv_scu_result *res = calloc(n, sizeof *res);
	usv_scu_peer peer;
	size_t i, nsent = 0, ntried = 0;
	double t0 = wall_now();
	int rc = 0, err = 0;

	*handled = 0;
	if (!paths || !pp || !res) {
		free(paths);
		free(pp);
		free(res);
		return -ENOMEM;
	}
	for (i = 0; i < n && !rc; i++) {
		rc = usv_spool_outbox_path(s->spool, d->name, its[i]->name, paths[i],
		                           sizeof paths[i]);
		pp[i] = paths[i];
	}
	if (rc)
		goto out;
	memset(&peer, 0, sizeof peer);
	peer.called_ae = d->called_ae;
	peer.calling_ae = d->calling_ae;
	peer.host = d->host;
	peer.port = d->port;
	peer.acse_timeout_s = d->acse_timeout_s;
	peer.dimse_timeout_s = d->dimse_timeout_s;
	peer.tls_ca_file = d->tls_ca_file;
	peer.tls_certificate = d->tls_certificate;
	peer.tls_private_key = d->tls_private_key;
	peer.tls_profile = (usv_tls_profile)d->tls_profile;
	usv_scu_store_many(&peer, pp, n, USV_SCU_STOP_ON_RETRY, res, NULL, 0);
	now = wall_now() > now ? wall_now() : now;
	for (i = 0; i < n; i++) {
		if (!res[i].tried)
			continue;
		ntried++;
		if (res[i].outcome == USV_SCU_SUCCESS || res[i].outcome == USV_SCU_WARNING)
			nsent++;
		rc = settle_item(s, ds, its[i], &res[i], now);
		if (rc < 0) {
			logf_(s, USV_SENDER_LOG_ERR, d->name, "%s: spool error: %s", its[i]->name,
			      usv_strerror(rc));
			err = rc;
		} else {
			(*handled)++;
		}
	}
	logf_(s, USV_SENDER_LOG_DEBUG, d->name,
	      "one association: %zu item(s), %zu tried, %zu delivered (%.0f ms with the spool)", n,
	      ntried, nsent, (wall_now() - t0) * 1000.0);
	rc = err;
out:
	free(paths);
	free(pp);
	free(res);
	return rc;
}

int usv_sender_poll(usv_sender *s, double now, double *next_due)
{
	double earliest = 0;
	int handled = 0, err = 0;
	size_t i, k;
	size_t cap =
	    s && s->o.max_per_poll < USV_SCU_MAX_FILES ? s->o.max_per_poll : USV_SCU_MAX_FILES;

	if (!s)
		return -EINVAL;
	for (i = 0; i < s->n; i++) {
		struct dest_state *ds = &s->dests[i];
		usv_outbox_item *items = NULL;
		const usv_outbox_item **batch = NULL;
		size_t n = 0, nb = 0;
		double dest_next = 0, blocked;
		uint64_t gen;
		int rc, h = 0;

		/* Listing reads every item's state file: skip it while nothing can
		 * be due (blocked or all waiting) and no new item was announced. */
		pthread_mutex_lock(&s->mu);
		gen = s->wake_gen;
		pthread_mutex_unlock(&s->mu);
		if (gen == ds->scan_gen && now < ds->next_scan) {
			if (!earliest || ds->next_scan < earliest)
				earliest = ds->next_scan;
			continue;
		}
		ds->scan_gen = gen;
		rc = usv_spool_outbox_list(s->spool, ds->d.name, &items, &n);
		if (!rc && n)
			batch = calloc(n < cap ? n : cap, sizeof *batch);
		if (!rc && n && !batch)
			rc = -ENOMEM;
		if (rc) {
			logf_(s, USV_SENDER_LOG_ERR, ds->d.name, "cannot list the outbox: %s",
			      usv_strerror(rc));
			free(items);
			err = rc;
			continue;
		}
		pthread_mutex_lock(&s->mu);
		blocked = ds->blocked_until;
		pthread_mutex_unlock(&s->mu);
		/* the due items, oldest first, up to max_per_poll: one association */
		for (k = 0; k < n; k++) {
			const usv_outbox_item *it = &items[k];
			double due = (double)it->next_try;

			if (blocked > due)
				due = blocked;
			if (due > now || nb >= cap) {
				if (due <= now) {
					pthread_mutex_lock(&s->mu);
					ds->c.skipped++;
					pthread_mutex_unlock(&s->mu);
					due = now; /* more work right away */
				}
				if (!dest_next || due < dest_next)
					dest_next = due;
				continue;
			}
			batch[nb++] = it;
		}
		if (nb) {
			rc = send_batch(s, ds, batch, nb, now, &h);
			handled += h;
			if (rc < 0) {
				logf_(s, USV_SENDER_LOG_ERR, ds->d.name, "send: %s",
				      usv_strerror(rc));
				err = rc;
			}
			/* items left untried wait for the destination's backoff */
			pthread_mutex_lock(&s->mu);
			blocked = ds->blocked_until;
			pthread_mutex_unlock(&s->mu);
			if (blocked > now && (!dest_next || blocked < dest_next))
				dest_next = blocked;
			else if ((size_t)h < nb && !(blocked > now) &&
			         (!dest_next || now + 1.0 < dest_next))
				dest_next = now + 1.0;
		}
		free(batch);
		free(items);
		if (dest_next && (!earliest || dest_next < earliest))
			earliest = dest_next;
		/* sent or dead items are gone; deferred ones have their time */
		ds->next_scan = dest_next ? dest_next : now + USV_SENDER_RESCAN_S;
		if (ds->next_scan > now + USV_SENDER_RESCAN_S)
			ds->next_scan = now + USV_SENDER_RESCAN_S;
	}
	if (next_due)
		*next_due = earliest;
	return err && !handled ? err : handled;
}

/* ---- thread ----------------------------------------------------------- */

static void *sender_main(void *arg)
{
	usv_sender *s = arg;

	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		double next = 0, now, wait_s;
		struct timespec ts;

		s->wake = 0;
		pthread_mutex_unlock(&s->mu);
		now = wall_now();
		usv_sender_poll(s, now, &next);
		pthread_mutex_lock(&s->mu);
		if (s->stop || s->wake)
			continue;
		wait_s = s->o.poll_interval_s;
		if (next > 0 && next - wall_now() < wait_s)
			wait_s = next - wall_now();
		if (wait_s < 0.01)
			wait_s = 0.01;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)wait_s;
		ts.tv_nsec += (long)((wait_s - floor(wait_s)) * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!s->stop && !s->wake)
			if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
				break;
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int usv_sender_start(usv_sender *s)
{
	int rc;

	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	if (s->running) {
		pthread_mutex_unlock(&s->mu);
		return -EALREADY;
	}
	s->stop = 0;
	rc = pthread_create(&s->thread, NULL, sender_main, s);
	if (rc == 0)
		s->running = 1;
	pthread_mutex_unlock(&s->mu);
	return -rc;
}

void usv_sender_stop(usv_sender *s)
{
	int running;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	running = s->running;
	s->stop = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (running) {
		pthread_join(s->thread, NULL);
		pthread_mutex_lock(&s->mu);
		s->running = 0;
		pthread_mutex_unlock(&s->mu);
	}
}

void usv_sender_wake(usv_sender *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->wake = 1;
	s->wake_gen++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}
