/*
 * NAME
 *	pool.c - fork-join thread pool used by sessions (see pool.h)
 *
 * DESCRIPTION
 *	Job hand-off: the caller writes the job (fn, ctx, ntasks) into one of
 *	two slots, resets the finished-task count, then publishes a new
 *	generation g in the task ticket (g << 32 | next task index) and in
 *	the wake-up word. Threads claim tasks with a compare-and-swap on the
 *	ticket that also checks the generation, so a thread that wakes late
 *	(the machine may be busy) claims nothing from a job that has moved
 *	on, and the caller waits only for the tasks, never for every worker
 *	to check in: with other load on the machine the caller simply runs
 *	the tasks the workers did not get to. A job's slot is rewritten only
 *	two jobs later, after all its tasks finished, so a thread holding a
 *	claimed task always sees its job.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define SPIN 4000

struct job {
	_Atomic(usv_task_fn) fn;
	_Atomic(void *) ctx;
	atomic_int ntasks;
};

struct usv_pool {
	int n;
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	_Atomic uint64_t ticket; /* generation << 32 | next task */
	atomic_uint gen;         /* wake-up word */
	atomic_int done;         /* tasks finished in the current job */
	atomic_int stop;
	unsigned cur; /* caller's generation counter */
	struct job slot[2];
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

/* Next task of generation g, or -1. */
static int claim(usv_pool *p, unsigned g, int ntasks)
{
	uint64_t t = atomic_load(&p->ticket);
	for (;;) {
		if ((unsigned)(t >> 32) != g || (int)(uint32_t)t >= ntasks)
			return -1;
		if (atomic_compare_exchange_weak(&p->ticket, &t, t + 1))
			return (int)(uint32_t)t;
	}
}

static void work(usv_pool *p, unsigned g, int id)
{
	struct job *j = &p->slot[g & 1];
	usv_task_fn fn = atomic_load(&j->fn);
	void *ctx = atomic_load(&j->ctx);
	int ntasks = atomic_load(&j->ntasks);
	int t;
	while ((t = claim(p, g, ntasks)) >= 0) {
		fn(ctx, t, id);
		if (atomic_fetch_add(&p->done, 1) + 1 == ntasks && id != 0) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_signal(&p->cv_done);
			pthread_mutex_unlock(&p->mu);
		}
	}
}

static void *worker(void *arg)
{
	struct warg *a = arg;
	usv_pool *p = a->p;
	int id = a->id;
	free(a);
	unsigned seen = atomic_load(&p->gen);
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
		work(p, g, id);
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
	p->n = 1;
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
	unsigned g = ++p->cur;
	if (g == 0) /* generation 0 is the initial wake-up word */
		g = ++p->cur;
	struct job *j = &p->slot[g & 1];
	atomic_store(&j->fn, fn);
	atomic_store(&j->ctx, ctx);
	atomic_store(&j->ntasks, ntasks);
	atomic_store(&p->done, 0);
	atomic_store(&p->ticket, (uint64_t)g << 32);
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->gen, g);
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
	work(p, g, 0);
	for (int s = 0; s < SPIN && atomic_load(&p->done) < ntasks; s++)
		relax();
	if (atomic_load(&p->done) < ntasks) {
		pthread_mutex_lock(&p->mu);
		while (atomic_load(&p->done) < ntasks)
			pthread_cond_wait(&p->cv_done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}
