/*
 * NAME
 *	spool_bench - cost of a claim and of a /metrics scrape with a backlog
 *
 * SYNOPSIS
 *	spool_bench [DIR] [DONE] [INCOMING] [OUTBOX]
 *
 * DESCRIPTION
 *	Fills a spool under DIR (default: a new directory under /tmp, removed
 *	at the end) with DONE empty files in done/ (default 100000),
 *	INCOMING in incoming/ (10000) and OUTBOX in outbox/PACS/ (1000),
 *	then measures, in the same run:
 *
 *	  open     usv_spool_open(): the in-memory listing built once at start
 *	  claim    usv_spool_claim() (from memory), against the former claim:
 *	           list incoming/, sort the names, rename the first one
 *	  scrape   what /metrics asks of the spool: usv_spool_count() of the
 *	           five queue states and usv_spool_outbox_count(), against the
 *	           former scrape: list incoming/, active/, done/, failed/,
 *	           excluded/ and usv_spool_outbox_list() (reads every .state)
 *
 *	and prints microseconds per operation and the ratio old/new. The
 *	directory listings run warm (the entries are in the dentry cache), so
 *	the old costs are lower bounds of what a busy node paid.
 *
 *	Built and run by bench/spool_bench.sh. Not a test: no thresholds.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Creates n empty <id>.dcm files in root/sub with ids from base upwards. */
static int fill(const char *root, const char *sub, unsigned long long base, long n)
{
	char dir[PATH_MAX], p[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s", root, sub);
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	for (long i = 0; i < n; i++) {
		snprintf(p, sizeof p, "%s/%016llx-%08lx.dcm", dir, base + (unsigned long long)i,
		         (unsigned long)i);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		close(fd);
	}
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The former cost of listing a state directory: every valid <id>.dcm. */
static long list_dir(const char *root, const char *sub, char ***names)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s", root, sub);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	long n = 0, cap = 0;
	char **v = NULL;
	struct dirent *e;
	char id[USV_SPOOL_ID_LEN];
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len != USV_SPOOL_ID_LEN - 1 + 4 || strcmp(e->d_name + len - 4, ".dcm"))
			continue;
		memcpy(id, e->d_name, USV_SPOOL_ID_LEN - 1);
		id[USV_SPOOL_ID_LEN - 1] = 0;
		if (!usv_spool_id_ok(id))
			continue;
		if (names) {
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				v = realloc(v, (size_t)cap * sizeof *v);
				if (!v)
					abort();
			}
			v[n] = strdup(id);
		}
		n++;
	}
	closedir(d);
	if (names)
		*names = v;
	return n;
}

/* The former claim: list incoming/, sort, rename the oldest into active/. */
static int old_claim(const char *root, char *id)
{
	char **v = NULL, p[PATH_MAX], q[PATH_MAX];
	long n = list_dir(root, "incoming", &v);
	int rc = -ENOENT;
	if (n > 1)
		qsort(v, (size_t)n, sizeof *v, cmp_name);
	for (long i = 0; i < n; i++) {
		if (rc == -ENOENT) {
			snprintf(p, sizeof p, "%s/incoming/%s.dcm", root, v[i]);
			snprintf(q, sizeof q, "%s/active/%s.dcm", root, v[i]);
			if (rename(p, q) == 0) {
				strcpy(id, v[i]);
				rc = 0;
			}
		}
		free(v[i]);
	}
	free(v);
	return rc;
}

/* Puts an active/ id back into incoming/ (not timed). */
static void put_back(const char *root, const char *id)
{
	char p[PATH_MAX], q[PATH_MAX];
	snprintf(p, sizeof p, "%s/active/%s.dcm", root, id);
	snprintf(q, sizeof q, "%s/incoming/%s.dcm", root, id);
	if (rename(p, q))
		perror("rename");
}

int main(int argc, char **argv)
{
	char root[PATH_MAX], base[PATH_MAX], err[256], id[USV_SPOOL_ID_LEN];
	long ndone = argc > 2 ? atol(argv[2]) : 100000;
	long nin = argc > 3 ? atol(argv[3]) : 10000;
	long nout = argc > 4 ? atol(argv[4]) : 1000;
	int own = argc < 2;
	usv_spool *sp = NULL;

	if (own) {
		snprintf(base, sizeof base, "/tmp/usv-spool-bench-XXXXXX");
		if (!mkdtemp(base)) {
			perror("mkdtemp");
			return 1;
		}
	} else {
		snprintf(base, sizeof base, "%s", argv[1]);
	}
	snprintf(root, sizeof root, "%s/spool", base);
	if (usv_spool_open(root, &sp, err, sizeof err)) {
		fprintf(stderr, "spool_bench: %s\n", err);
		return 1;
	}
	usv_spool_free(sp);
	double t0 = now_us();
	if (fill(root, "done", 0x60000000000000ULL, ndone) ||
	    fill(root, "incoming", 0x61000000000000ULL, nin) ||
	    fill(root, "outbox/PACS", 0x62000000000000ULL, nout)) {
		fprintf(stderr, "spool_bench: cannot fill %s\n", root);
		return 1;
	}
	printf("spool %s: %ld done, %ld incoming, %ld in outbox/PACS (filled in %.1f s)\n", root,
	       ndone, nin, nout, (now_us() - t0) / 1e6);

	t0 = now_us();
	if (usv_spool_open(root, &sp, err, sizeof err)) {
		fprintf(stderr, "spool_bench: %s\n", err);
		return 1;
	}
	double t_open = now_us() - t0;

	/* claims: new (from memory) and old (listing), each claimed id put
	 * back untimed so that the backlog stays the same */
	const int reps_new = 2000, reps_old = 20;
	double t_new = 0, t_old = 0;
	for (int i = 0; i < reps_new; i++) {
		t0 = now_us();
		if (usv_spool_claim(sp, id, sizeof id)) {
			fprintf(stderr, "spool_bench: claim failed\n");
			return 1;
		}
		t_new += now_us() - t0;
		put_back(root, id);
	}
	usv_spool_free(sp); /* the put-backs bypassed it: reopen */
	if (usv_spool_open(root, &sp, err, sizeof err))
		return 1;
	for (int i = 0; i < reps_old; i++) {
		t0 = now_us();
		if (old_claim(root, id)) {
			fprintf(stderr, "spool_bench: old claim failed\n");
			return 1;
		}
		t_old += now_us() - t0;
		put_back(root, id);
	}
	double claim_new = t_new / reps_new, claim_old = t_old / reps_old;

	/* scrapes */
	static const enum usv_spool_state qs[] = {USV_SPOOL_INCOMING, USV_SPOOL_ACTIVE,
	                                          USV_SPOOL_DONE, USV_SPOOL_FAILED,
	                                          USV_SPOOL_EXCLUDED};
	static const char *const qn[] = {"incoming", "active", "done", "failed", "excluded"};
	size_t total = 0, n, ob;
	t0 = now_us();
	for (int i = 0; i < reps_new; i++) {
		for (int k = 0; k < 5; k++) {
			usv_spool_count(sp, qs[k], &n);
			total += n;
		}
		usv_spool_outbox_count(sp, "PACS", &ob, NULL, NULL);
		total += ob;
	}
	double scrape_new = (now_us() - t0) / reps_new;
	size_t expect = (size_t)(ndone + nin + nout);
	if (total != expect * (size_t)reps_new) {
		fprintf(stderr, "spool_bench: counts %zu, expected %zu\n", total / reps_new,
		        expect);
		return 1;
	}
	t0 = now_us();
	total = 0;
	for (int i = 0; i < reps_old; i++) {
		for (int k = 0; k < 5; k++)
			total += (size_t)list_dir(root, qn[k], NULL);
		usv_outbox_item *items = NULL;
		usv_spool_outbox_list(sp, "PACS", &items, &ob);
		free(items);
		total += ob;
	}
	double scrape_old = (now_us() - t0) / reps_old;
	if (total != expect * (size_t)reps_old) {
		fprintf(stderr, "spool_bench: listed %zu, expected %zu\n", total / reps_old,
		        expect);
		return 1;
	}
	usv_spool_free(sp);

	printf("open (listing built once):   %10.0f us\n", t_open);
	printf("claim   new %8.2f us   old (list+sort) %10.0f us   ratio %8.0fx\n", claim_new,
	       claim_old, claim_old / claim_new);
	printf("scrape  new %8.2f us   old (listings)  %10.0f us   ratio %8.0fx\n", scrape_new,
	       scrape_old, scrape_old / scrape_new);
	if (own) {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
		if (system(cmd))
			return 1;
	}
	return 0;
}
