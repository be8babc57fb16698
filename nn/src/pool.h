/*
 * NAME
 *	pool.h - the engine's fork-join thread pool (internal)
 *
 * DESCRIPTION
 *	A session with threads > 1 owns a pool of threads - 1 workers; the
 *	calling thread is worker 0. usv__pool_run() runs fn(ctx, task,
 *	thread) for task = 0 .. ntasks-1 spread over the threads and returns
 *	when all are done; it allocates nothing. Workers spin briefly between
 *	jobs (layers follow each other closely), then sleep on a condition
 *	variable. A NULL pool runs everything on the caller.
 */
#ifndef USV_NN_POOL_H
#define USV_NN_POOL_H

typedef struct usv_pool usv_pool;
typedef void (*usv_task_fn)(void *ctx, int task, int thread);

/* nthreads >= 2 total threads (including the caller). */
int usv__pool_new(int nthreads, usv_pool **out);
void usv__pool_free(usv_pool *p);
int usv__pool_threads(const usv_pool *p); /* 1 for NULL */
void usv__pool_run(usv_pool *p, int ntasks, usv_task_fn fn, void *ctx);

#endif
