/*
 * NAME
 *	pool.c - fork-join thread pool used by sessions (see pool.h)
 *
 * DESCRIPTION
 *	Job hand-off: the caller publishes fn/ctx/ntasks, resets the task
 *	counter and the count of active workers, then bumps the generation
 *	number. Workers take tasks with an atomic counter; the last worker to
 *	finish signals the caller. run() returns only after every worker has
 *	finished the job, so a worker never misses or repeats a generation.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN 4000

struct usv_pool {
	int n;
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	atomic_uint gen;
	atomic_int next, active, stop;
	usv_task_fn fn;
	void *ctx;
	int ntasks;
};

struct warg {
	usv_pool *p;
	int id;
};

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void do_tasks(usv_pool *p, int id)
{
	int t;
	while ((t = atomic_fetch_add(&p->next, 1)) < p->ntasks)
		p->fn(p->ctx, t, id);
}

static void *worker(void *arg)
{
	struct warg *a = arg;
	usv_pool *p = a->p;
	int id = a->id;
	free(a);
	unsigned seen = 0;
	for (;;) {
		unsigned g = atomic_load(&p->gen);
		for (int s = 0; s < SPIN && g == seen && !atomic_load(&p->stop); s++) {
			relax();
			g = atomic_load(&p->gen);
		}
		if (g == seen) {
			pthread_mutex_lock(&p->mu);
			while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->cv_work, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			return NULL;
		seen = g;
		do_tasks(p, id);
		if (atomic_fetch_sub(&p->active, 1) == 1) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_signal(&p->cv_done);
			pthread_mutex_unlock(&p->mu);
		}
	}
}

int usv__pool_new(int nthreads, usv_pool **out)
{
	*out = NULL;
	if (nthreads < 2 || nthreads > 256)
		return -EINVAL;
	usv_pool *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->th = calloc((size_t)nthreads, sizeof *p->th);
	if (!p->th) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv_work, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	/* workers do not take the process's signals */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = 0;
	for (int i = 1; i < nthreads; i++) {
		struct warg *a = malloc(sizeof *a);
		if (!a) {
			rc = -ENOMEM;
			break;
		}
		a->p = p;
		a->id = i;
		int e = pthread_create(&p->th[i], NULL, worker, a);
		if (e) {
			free(a);
			rc = -e;
			break;
		}
		p->n = i + 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!p->n)
		p->n = 1;
	if (rc) {
		usv__pool_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void usv__pool_free(usv_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->stop, 1);
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv_work);
	pthread_cond_destroy(&p->cv_done);
	free(p->th);
	free(p);
}

int usv__pool_threads(const usv_pool *p)
{
	return p ? p->n : 1;
}

void usv__pool_run(usv_pool *p, int ntasks, usv_task_fn fn, void *ctx)
{
	if (ntasks <= 0)
		return;
	if (!p || p->n < 2 || ntasks == 1) {
		for (int t = 0; t < ntasks; t++)
			fn(ctx, t, 0);
		return;
	}
	p->fn = fn;
	p->ctx = ctx;
	p->ntasks = ntasks;
	atomic_store(&p->next, 0);
	atomic_store(&p->active, p->n - 1);
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add(&p->gen, 1);
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
	do_tasks(p, 0);
	for (int s = 0; s < SPIN && atomic_load(&p->active) > 0; s++)
		relax();
	if (atomic_load(&p->active) > 0) {
		pthread_mutex_lock(&p->mu);
		while (atomic_load(&p->active) > 0)
			pthread_cond_wait(&p->cv_done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}
