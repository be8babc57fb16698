/*
 * NAME
 *	spool.c - durable on-disk queues of usviewd
 *
 * DESIGN
 *	The spool is a set of directories on one file system, one directory
 *	per state, in the manner of Postfix's queue directories. A file's
 *	state is the directory it is in; a state change is a rename(2), which
 *	is atomic within a file system, followed by an fsync of the directory
 *	that received the name so that the change survives a power cut.
 *
 *	  receiver --tmp_create--> tmp/<id>.part
 *	           --commit------> incoming/<id>.dcm   (C-STORE answered after this)
 *	  worker   --claim-------> active/<id>.dcm
 *	           --finish------> done/ | failed/ (+ .reason) | excluded/ (+ .reason)
 *	  results  --outbox_put--> outbox/<dest>/<id>.dcm (+ <id>.state once deferred)
 *	  sender   --sent--------> sent/<dest>/ | --dead--> dead/<dest>/ (+ .reason)
 *
 *	Durability is owned here and nowhere else: writers (the SCP's sink,
 *	the SR and tagged-copy writers of dicom/) write and close a file
 *	under tmp/ without fsync; the commit functions below fsync the file
 *	before its rename and the receiving directory after it.
 *
 *	Batches: a writer of several files may rename them all into one
 *	directory and then fsync it once (usv_spool_outbox_add +
 *	usv_spool_outbox_sync, usv_spool_move_done + usv_spool_sync_state);
 *	each file is still fsynced before its rename, and whatever depends
 *	on a rename is made durable only after that directory fsync. The
 *	entry of outbox/<dest>, sent/<dest>, dead/<dest> in its parent is
 *	fsynced once per process (first use), not at every put or move.
 *
 *	Invariants
 *	- A name in incoming/, active/, outbox/ is a complete file whose data
 *	  blocks reached the disk before the name appeared (fsync before
 *	  rename). Nothing half-written is ever visible outside tmp/.
 *	- Names are generated here (time + counter + pid), never taken from
 *	  the peer's data; the id sorts by creation time, so "oldest first" is
 *	  "smallest name first". Names cannot collide even across processes
 *	  (tmp files are created with O_EXCL and the pid is part of the id),
 *	  but the in-memory listing below makes one process the owner.
 *	- A claim takes the smallest id from the in-memory queue (under the
 *	  handle's mutex, so two threads never get the same id) and renames
 *	  incoming/ -> active/; a rename that fails with ENOENT (file removed
 *	  from outside) drops the id and the next one is tried. No lock files.
 *	- A .reason or .state sidecar is written as a tmp file, fsynced and
 *	  renamed BEFORE the data file moves (reason) or after (state), so a
 *	  crash leaves at worst an orphan sidecar, which recovery removes.
 *
 *	Crash safety and recovery (usv_spool_recover, once at start, before
 *	any thread uses the spool):
 *	- tmp/ is emptied: partial receptions were never acknowledged, so the
 *	  sender still owns those instances and will re-send them.
 *	- active/ goes back to incoming/: work that was claimed but not
 *	  finished is redone (classification is idempotent, and result UIDs
 *	  are derived from the source instance, frame and model hash, so a
 *	  redone result is the same instance at the destination).
 *	- orphan sidecars (.reason without .dcm, .state without .dcm) are
 *	  removed.
 *	A crash between the rename into incoming/ and the C-STORE response
 *	leaves an instance we own that the sender may re-send: duplicates are
 *	expected and harmless (each copy gets its own id).
 *
 *	Disk-full protection: the receiver asks usv_spool_low_space() before
 *	accepting each instance and answers 0xA700 below the watermark; the
 *	environment variable USV_SPOOL_FAKE_FREE overrides the measured free
 *	space so tests can trigger and release the condition.
 *
 *	In-memory listing: the handle keeps, under its mutex, the queue of
 *	incoming/ ids (sorted, so the oldest is claimed first), the number of
 *	files per state and, per destination, of outbox/, sent/ and dead/.
 *	usv_spool_open() and usv_spool_recover() build it from the
 *	directories; commit, claim, finish, requeue, outbox put/sent/dead and
 *	the sweep keep it current. So a claim and a /metrics scrape cost
 *	O(1), not a listing of a backlog of 10^5 files. The disk stays the
 *	truth: a queued id whose file has gone is dropped at claim time, and
 *	each sweep (and each outbox listing by the sender) replaces a count
 *	by its directory listing when nothing changed it meanwhile.
 *
 *	One usviewd owns a spool. The listing lives in one process, so
 *	several processes must not share a spool (the directories themselves
 *	would stay consistent, but each process would claim only what it
 *	committed and count wrongly). Several threads of the owner share
 *	the handle.
 *
 *	Retention (usv_spool_sweep): files in done/, excluded/, failed/,
 *	sent/<dest>/ and dead/<dest>/ are deleted (with their .reason) once
 *	they have been in that state longer than its retention; the time of
 *	entry is the status change time, which the rename into the state
 *	sets. The caller passes `now` (tests need no sleeping) and a limit
 *	of deletions per pass, so one pass never runs long.
 */
#include "spool.h"

#include "usv/err.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

/* The root is capped at PATH_MAX - 128 bytes, and every name below it is at
 * most 110 bytes (outbox/<dest 64>/<id 25>.state), so the snprintf()s into
 * PATH_MAX buffers cannot truncate. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* Sub-directories (outbox/<dest>, sent/<dest>, dead/<dest>) whose entry in
 * the parent this process has already made durable: the parent is fsynced
 * once per process, not at every put or move. Full cache: fsync always. */
#define KNOWN_DIRS 64
#define NSTATES_MAX 6

/* Per-destination counts (outbox/<dest>, sent/<dest>, dead/<dest>). */
struct dest_count {
	char name[USV_SPOOL_DEST_MAX + 1];
	size_t outbox, sent, dead;
	unsigned long gen_outbox, gen_sent, gen_dead; /* bumped at each change */
};

struct usv_spool {
	char root[PATH_MAX - 128];
	atomic_uint counter;
	pthread_mutex_t mu; /* guards everything below */
	int nknown;
	char known[KNOWN_DIRS][8 + USV_SPOOL_DEST_MAX];
	int qstale; /* q lost a commit (ENOMEM): rebuild it at the next claim */
	/* incoming/ ids, sorted, in q[qhead..qtail) */
	char (*q)[USV_SPOOL_ID_LEN];
	size_t qhead, qtail, qcap;
	size_t n[NSTATES_MAX];          /* .dcm files per state (not tmp/) */
	unsigned long gen[NSTATES_MAX]; /* bumped at each change of n[] */
	size_t ndest;
	struct dest_count dest[KNOWN_DIRS];
};

static const char *const state_dirs[] = {
    [USV_SPOOL_TMP] = "tmp",   [USV_SPOOL_INCOMING] = "incoming", [USV_SPOOL_ACTIVE] = "active",
    [USV_SPOOL_DONE] = "done", [USV_SPOOL_FAILED] = "failed",     [USV_SPOOL_EXCLUDED] = "excluded",
};

#define NSTATES (sizeof state_dirs / sizeof state_dirs[0])

/* ---- small helpers ------------------------------------------------------ */

static int fsync_path(const char *path, int dir)
{
	int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

static int mkdir_p(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST) {
		struct stat st;
		if (stat(path, &st))
			return -errno;
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	}
	return -errno;
}

static int join(char *out, size_t len, const char *a, const char *b)
{
	int n = snprintf(out, len, "%s/%s", a, b);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

static int is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int usv_spool_id_ok(const char *id)
{
	return id && strlen(id) == USV_SPOOL_ID_LEN - 1 && is_hex(id, 16) && id[16] == '-' &&
	       is_hex(id + 17, 8);
}

int usv_spool_dest_ok(const char *dest)
{
	size_t n = dest ? strlen(dest) : 0;
	if (n == 0 || n > USV_SPOOL_DEST_MAX || dest[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)dest[i]) || dest[i] == '_' || dest[i] == '.' ||
		      dest[i] == '-'))
			return 0;
	return 1;
}

static void new_id(usv_spool *sp, char *id)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	unsigned long long us =
	    (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
	unsigned c = atomic_fetch_add(&sp->counter, 1);
	unsigned tag = ((unsigned)getpid() << 12) ^ (c & 0xfffffu) ^ ((c >> 20) << 28);
	snprintf(id, USV_SPOOL_ID_LEN, "%016llx-%08x", us & 0xffffffffffffffffULL, tag);
}

/* Writes text durably to dir/name via dir/.name.tmp + fsync + rename + fsync dir. */
static int write_sidecar(const char *dir, const char *name, const char *text)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int rc = 0;
	if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= (int)sizeof tmp ||
	    snprintf(dst, sizeof dst, "%s/%s", dir, name) >= (int)sizeof dst)
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, dst))
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	return fsync_path(dir, 1);
}

/* One line, printable, capped: reasons come partly from input data. */
static void clean_line(char *dst, size_t len, const char *src)
{
	size_t j = 0;
	for (size_t i = 0; src && src[i] && j + 1 < len; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	dst[j] = 0;
}

/* ---- listings ------------------------------------------------------------ */

/* Collects up to max valid ids (name = <id><suffix>) of dir, sorted. */
static int cmp_id(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static int list_ids(const char *dir, const char *suffix, char (**ids)[USV_SPOOL_ID_LEN], size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	size_t cap = 0, cnt = 0;
	char(*v)[USV_SPOOL_ID_LEN] = NULL;
	struct dirent *e;
	size_t sl = strlen(suffix);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len != USV_SPOOL_ID_LEN - 1 + sl ||
		    strcmp(e->d_name + USV_SPOOL_ID_LEN - 1, suffix))
			continue;
		char id[USV_SPOOL_ID_LEN];
		memcpy(id, e->d_name, USV_SPOOL_ID_LEN - 1);
		id[USV_SPOOL_ID_LEN - 1] = 0;
		if (!usv_spool_id_ok(id))
			continue;
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 64;
			void *nv = realloc(v, nc * sizeof *v);
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			cap = nc;
		}
		memcpy(v[cnt++], id, USV_SPOOL_ID_LEN);
	}
	closedir(d);
	if (cnt > 1)
		qsort(v, cnt, sizeof *v, cmp_id);
	*ids = v;
	*n = cnt;
	return 0;
}

/* ---- the in-memory listing ---------------------------------------------- */

/* Everything below runs with sp->mu held unless said otherwise. */

/* Inserts id into the sorted queue q[qhead..qtail). Commits arrive almost
 * in id order (append), requeues near the head. */
static int q_insert(usv_spool *sp, const char *id)
{
	size_t lo = sp->qhead, hi = sp->qtail;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(sp->q[mid], id);
		if (c == 0)
			return 0; /* already queued */
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == sp->qhead && sp->qhead > 0) {
		memcpy(sp->q[--sp->qhead], id, USV_SPOOL_ID_LEN);
		return 0;
	}
	if (sp->qtail == sp->qcap) {
		size_t len = sp->qtail - sp->qhead;
		if (sp->qhead > sp->qcap / 2) { /* reclaim the claimed head */
			memmove(sp->q, sp->q + sp->qhead, len * sizeof *sp->q);
			lo -= sp->qhead;
			sp->qhead = 0;
			sp->qtail = len;
		} else {
			size_t nc = sp->qcap ? sp->qcap * 2 : 256;
			void *nq = realloc(sp->q, nc * sizeof *sp->q);
			if (!nq)
				return -ENOMEM;
			sp->q = nq;
			sp->qcap = nc;
		}
	}
	memmove(sp->q + lo + 1, sp->q + lo, (sp->qtail - lo) * sizeof *sp->q);
	memcpy(sp->q[lo], id, USV_SPOOL_ID_LEN);
	sp->qtail++;
	return 0;
}

static int q_pop(usv_spool *sp, char *id)
{
	if (sp->qhead == sp->qtail)
		return -ENOENT;
	memcpy(id, sp->q[sp->qhead++], USV_SPOOL_ID_LEN);
	if (sp->qhead == sp->qtail)
		sp->qhead = sp->qtail = 0;
	return 0;
}

static void dec(size_t *v, size_t by)
{
	*v = *v > by ? *v - by : 0;
}

static void count_move(usv_spool *sp, int from, int to)
{
	if (from >= 0) {
		dec(&sp->n[from], 1);
		sp->gen[from]++;
	}
	if (to >= 0) {
		sp->n[to]++;
		sp->gen[to]++;
	}
}

/* The counts of destination dest; added when missing (NULL when the table
 * is full or dest invalid). */
static struct dest_count *dest_get(usv_spool *sp, const char *dest, int add)
{
	for (size_t i = 0; i < sp->ndest; i++)
		if (!strcmp(sp->dest[i].name, dest))
			return &sp->dest[i];
	if (!add || sp->ndest == KNOWN_DIRS || !usv_spool_dest_ok(dest))
		return NULL;
	struct dest_count *dc = &sp->dest[sp->ndest++];
	memset(dc, 0, sizeof *dc);
	snprintf(dc->name, sizeof dc->name, "%s", dest);
	return dc;
}

/* Number of <id>.dcm names in dir (no lock needed). */
static int count_ids(const char *dir, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	struct dirent *e;
	size_t cnt = 0;
	char id[USV_SPOOL_ID_LEN];
	while ((e = readdir(d))) {
		if (strlen(e->d_name) != USV_SPOOL_ID_LEN - 1 + 4 ||
		    strcmp(e->d_name + USV_SPOOL_ID_LEN - 1, ".dcm"))
			continue;
		memcpy(id, e->d_name, USV_SPOOL_ID_LEN - 1);
		id[USV_SPOOL_ID_LEN - 1] = 0;
		if (usv_spool_id_ok(id))
			cnt++;
	}
	closedir(d);
	*n = cnt;
	return 0;
}

/* Rebuilds the in-memory listing from the directories (called without the
 * lock; at open and after recovery, before other threads use the spool). */
static int rebuild(usv_spool *sp)
{
	static const char *const tops[] = {"outbox", "sent", "dead"};
	char dir[PATH_MAX], sub[PATH_MAX];
	char(*ids)[USV_SPOOL_ID_LEN] = NULL;
	size_t nids = 0, n[NSTATES_MAX] = {0};
	int rc;

	snprintf(dir, sizeof dir, "%s/incoming", sp->root);
	if ((rc = list_ids(dir, ".dcm", &ids, &nids)))
		return rc;
	for (int st = USV_SPOOL_ACTIVE; st < (int)NSTATES; st++) {
		snprintf(dir, sizeof dir, "%s/%s", sp->root, state_dirs[st]);
		if ((rc = count_ids(dir, &n[st]))) {
			free(ids);
			return rc;
		}
	}
	pthread_mutex_lock(&sp->mu);
	free(sp->q);
	sp->q = ids;
	sp->qhead = 0;
	sp->qtail = sp->qcap = nids;
	for (int st = 0; st < (int)NSTATES; st++) {
		sp->n[st] = n[st];
		sp->gen[st]++;
	}
	sp->ndest = 0;
	pthread_mutex_unlock(&sp->mu);

	for (size_t t = 0; t < 3; t++) {
		snprintf(dir, sizeof dir, "%s/%s", sp->root, tops[t]);
		DIR *d = opendir(dir);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			size_t cnt = 0;
			if (!usv_spool_dest_ok(e->d_name) ||
			    snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= (int)sizeof sub ||
			    count_ids(sub, &cnt))
				continue;
			pthread_mutex_lock(&sp->mu);
			struct dest_count *dc = dest_get(sp, e->d_name, 1);
			if (dc) {
				size_t *f = t == 0 ? &dc->outbox : t == 1 ? &dc->sent : &dc->dead;
				*f = cnt;
			}
			pthread_mutex_unlock(&sp->mu);
		}
		closedir(d);
	}
	return 0;
}

/* ---- open / recover ----------------------------------------------------- */

int usv_spool_open(const char *root, usv_spool **out, char *errbuf, size_t errlen)
{
	if (!root || !*root || !out)
		return usv_seterr(errbuf, errlen, -EINVAL, "spool: no root directory");
	usv_spool *sp = calloc(1, sizeof *sp);
	if (!sp)
		return usv_seterr(errbuf, errlen, -ENOMEM, "spool: out of memory");
	if (strlen(root) >= sizeof sp->root) {
		free(sp);
		return usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: spool path too long", root);
	}
	strcpy(sp->root, root);
	pthread_mutex_init(&sp->mu, NULL);
	size_t n = strlen(sp->root);
	while (n > 1 && sp->root[n - 1] == '/')
		sp->root[--n] = 0;
	int rc = mkdir_p(sp->root);
	static const char *const extra[] = {"outbox", "sent", "dead"};
	char path[PATH_MAX];
	for (size_t i = 0; !rc && i < NSTATES + 3; i++) {
		const char *d = i < NSTATES ? state_dirs[i] : extra[i - NSTATES];
		rc = join(path, sizeof path, sp->root, d);
		if (!rc)
			rc = mkdir_p(path);
	}
	if (!rc)
		rc = fsync_path(sp->root, 1);
	if (!rc)
		rc = rebuild(sp);
	if (rc) {
		usv_seterr(errbuf, errlen, rc, "%s: cannot create spool: %s", root,
		           usv_strerror(rc));
		pthread_mutex_destroy(&sp->mu);
		free(sp->q);
		free(sp);
		return rc;
	}
	*out = sp;
	return 0;
}

void usv_spool_free(usv_spool *sp)
{
	if (!sp)
		return;
	pthread_mutex_destroy(&sp->mu);
	free(sp->q);
	free(sp);
}

const char *usv_spool_root(const usv_spool *sp)
{
	return sp->root;
}

static int has_suffix(const char *name, const char *suf)
{
	size_t n = strlen(name), m = strlen(suf);
	return n > m && !strcmp(name + n - m, suf);
}

/* Removes sidecars (suffix) without a matching .dcm in dir. */
static int remove_orphans(const char *dir, const char *suf, unsigned *removed)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	char p[PATH_MAX], q[PATH_MAX];
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' && has_suffix(e->d_name, ".tmp")) {
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			if (!unlink(p) && removed)
				(*removed)++;
			continue;
		}
		if (!has_suffix(e->d_name, suf))
			continue;
		size_t stem = strlen(e->d_name) - strlen(suf);
		if (snprintf(p, sizeof p, "%s/%.*s.dcm", dir, (int)stem, e->d_name) >=
		    (int)sizeof p)
			continue;
		if (access(p, F_OK) == 0)
			continue;
		snprintf(q, sizeof q, "%s/%s", dir, e->d_name);
		if (!unlink(q) && removed)
			(*removed)++;
	}
	closedir(d);
	return 0;
}

/* Calls fn(dir) for every sub-directory of root/top (outbox/<dest>, ...). */
static void for_dest_dirs(const usv_spool *sp, const char *top, const char *suf, unsigned *removed)
{
	char base[PATH_MAX], p[PATH_MAX];
	if (join(base, sizeof base, sp->root, top))
		return;
	DIR *d = opendir(base);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!usv_spool_dest_ok(e->d_name))
			continue;
		if (snprintf(p, sizeof p, "%s/%s", base, e->d_name) >= (int)sizeof p)
			continue;
		remove_orphans(p, suf, removed);
	}
	closedir(d);
}

int usv_spool_recover(usv_spool *sp, unsigned *requeued, unsigned *removed)
{
	unsigned rq = 0, rm = 0;
	char dir[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
	int rc = join(dir, sizeof dir, sp->root, "tmp");
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (!unlink(p))
			rm++;
	}
	closedir(d);

	rc = join(dir, sizeof dir, sp->root, "active");
	if (rc)
		return rc;
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (!has_suffix(e->d_name, ".dcm"))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		snprintf(q, sizeof q, "%s/incoming/%s", sp->root, e->d_name);
		if (!rename(p, q))
			rq++;
	}
	closedir(d);
	if (rq) {
		snprintf(q, sizeof q, "%s/incoming", sp->root);
		if ((rc = fsync_path(q, 1)))
			return rc;
	}
	snprintf(dir, sizeof dir, "%s/failed", sp->root);
	remove_orphans(dir, ".reason", &rm);
	snprintf(dir, sizeof dir, "%s/excluded", sp->root);
	remove_orphans(dir, ".reason", &rm);
	for_dest_dirs(sp, "outbox", ".state", &rm);
	for_dest_dirs(sp, "dead", ".reason", &rm);
	if ((rc = rebuild(sp)))
		return rc;
	if (requeued)
		*requeued = rq;
	if (removed)
		*removed = rm;
	return 0;
}

/* ---- receive side ------------------------------------------------------- */

int usv_spool_tmp_create(usv_spool *sp, int *fdp, char *path, size_t pathlen)
{
	char id[USV_SPOOL_ID_LEN];
	for (int tries = 0; tries < 16; tries++) {
		new_id(sp, id);
		int n = snprintf(path, pathlen, "%s/tmp/%s.part", sp->root, id);
		if (n < 0 || (size_t)n >= pathlen)
			return -ENAMETOOLONG;
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (fdp)
				*fdp = fd;
			else
				close(fd);
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/* tmp_path must be "<root>/tmp/<id>.part" with a valid id; copies the id. */
static int tmp_id(const usv_spool *sp, const char *tmp_path, char *id)
{
	size_t rl = strlen(sp->root);
	if (strncmp(tmp_path, sp->root, rl) || strncmp(tmp_path + rl, "/tmp/", 5))
		return -EINVAL;
	const char *name = tmp_path + rl + 5;
	if (strlen(name) != USV_SPOOL_ID_LEN - 1 + 5 ||
	    strcmp(name + USV_SPOOL_ID_LEN - 1, ".part"))
		return -EINVAL;
	memcpy(id, name, USV_SPOOL_ID_LEN - 1);
	id[USV_SPOOL_ID_LEN - 1] = 0;
	return usv_spool_id_ok(id) ? 0 : -EINVAL;
}

/* fsync tmp_path and rename it to dstdir/<id>.dcm, fsync dstdir. When the
 * directory cannot be synced the new name is removed again: a failure
 * leaves nothing in dstdir (no instance in incoming/ that no one queued
 * and the peer was told is not stored). */
static int move_durably(const char *tmp_path, const char *dstdir, const char *id)
{
	char dst[PATH_MAX];
	int rc = fsync_path(tmp_path, 0);
	if (rc)
		return rc;
	if (snprintf(dst, sizeof dst, "%s/%s.dcm", dstdir, id) >= (int)sizeof dst)
		return -ENAMETOOLONG;
	if (rename(tmp_path, dst))
		return -errno;
	rc = fsync_path(dstdir, 1);
	if (rc)
		unlink(dst);
	return rc;
}

int usv_spool_commit(usv_spool *sp, const char *tmp_path, char *id, size_t idlen)
{
	char myid[USV_SPOOL_ID_LEN], dir[PATH_MAX];
	if (!tmp_path || idlen < USV_SPOOL_ID_LEN)
		return -EINVAL;
	int rc = tmp_id(sp, tmp_path, myid);
	if (rc)
		return rc;
	if ((rc = join(dir, sizeof dir, sp->root, "incoming")))
		return rc;
	if ((rc = move_durably(tmp_path, dir, myid)))
		return rc;
	pthread_mutex_lock(&sp->mu);
	if (q_insert(sp, myid))
		sp->qstale = 1; /* out of memory: the next claim lists incoming/ */
	pthread_mutex_unlock(&sp->mu);
	memcpy(id, myid, USV_SPOOL_ID_LEN);
	return 0;
}

int usv_spool_discard(usv_spool *sp, const char *tmp_path)
{
	char id[USV_SPOOL_ID_LEN];
	if (!tmp_path || tmp_id(sp, tmp_path, id))
		return -EINVAL;
	if (unlink(tmp_path) && errno != ENOENT)
		return -errno;
	return 0;
}

/* ---- worker side -------------------------------------------------------- */

int usv_spool_path(const usv_spool *sp, enum usv_spool_state state, const char *id, char *path,
                   size_t pathlen)
{
	if ((unsigned)state >= NSTATES || !usv_spool_id_ok(id))
		return -EINVAL;
	int n = snprintf(path, pathlen, "%s/%s/%s%s", sp->root, state_dirs[state], id,
	                 state == USV_SPOOL_TMP ? ".part" : ".dcm");
	return (n < 0 || (size_t)n >= pathlen) ? -ENAMETOOLONG : 0;
}

/* Rebuilds the queue of incoming/ from the directory (after an allocation
 * failure lost a commit). Called without the lock. */
static int requeue_from_disk(usv_spool *sp)
{
	char dir[PATH_MAX];
	char(*ids)[USV_SPOOL_ID_LEN] = NULL;
	size_t n = 0;
	snprintf(dir, sizeof dir, "%s/incoming", sp->root);
	int rc = list_ids(dir, ".dcm", &ids, &n);
	if (rc)
		return rc;
	pthread_mutex_lock(&sp->mu);
	free(sp->q);
	sp->q = ids;
	sp->qhead = 0;
	sp->qtail = sp->qcap = n;
	sp->qstale = 0;
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

int usv_spool_claim(usv_spool *sp, char *id, size_t idlen)
{
	char p[PATH_MAX], q[PATH_MAX], cand[USV_SPOOL_ID_LEN];
	if (idlen < USV_SPOOL_ID_LEN)
		return -EINVAL;
	for (;;) {
		pthread_mutex_lock(&sp->mu);
		if (sp->qstale) {
			pthread_mutex_unlock(&sp->mu);
			int rc = requeue_from_disk(sp);
			if (rc)
				return rc;
			continue;
		}
		int rc = q_pop(sp, cand);
		pthread_mutex_unlock(&sp->mu);
		if (rc)
			return rc; /* -ENOENT: incoming/ is empty */
		snprintf(p, sizeof p, "%s/incoming/%s.dcm", sp->root, cand);
		snprintf(q, sizeof q, "%s/active/%s.dcm", sp->root, cand);
		if (rename(p, q) == 0) {
			/* Losing this rename in a crash only means the file is
			 * claimed again later: no directory fsync needed. */
			pthread_mutex_lock(&sp->mu);
			count_move(sp, -1, USV_SPOOL_ACTIVE);
			pthread_mutex_unlock(&sp->mu);
			memcpy(id, cand, USV_SPOOL_ID_LEN);
			return 0;
		}
		if (errno != ENOENT) { /* keep it queued */
			rc = -errno;
			pthread_mutex_lock(&sp->mu);
			if (q_insert(sp, cand))
				sp->qstale = 1;
			pthread_mutex_unlock(&sp->mu);
			return rc;
		}
		/* removed behind our back: forget it, try the next */
	}
}

int usv_spool_finish(usv_spool *sp, const char *id, enum usv_spool_state state, const char *reason)
{
	if (!usv_spool_id_ok(id) ||
	    (state != USV_SPOOL_DONE && state != USV_SPOOL_FAILED && state != USV_SPOOL_EXCLUDED))
		return -EINVAL;
	char src[PATH_MAX], dir[PATH_MAX], name[USV_SPOOL_ID_LEN + 8];
	int rc = usv_spool_path(sp, USV_SPOOL_ACTIVE, id, src, sizeof src);
	if (rc)
		return rc;
	if (access(src, F_OK))
		return -errno;
	snprintf(dir, sizeof dir, "%s/%s", sp->root, state_dirs[state]);
	if (state != USV_SPOOL_DONE) {
		char line[USV_SPOOL_REASON_MAX];
		clean_line(line, sizeof line - 1, reason ? reason : "");
		strcat(line, "\n");
		snprintf(name, sizeof name, "%s.reason", id);
		if ((rc = write_sidecar(dir, name, line)))
			return rc;
	}
	char dst[PATH_MAX];
	snprintf(dst, sizeof dst, "%s/%s.dcm", dir, id);
	if (rename(src, dst))
		return -errno;
	pthread_mutex_lock(&sp->mu);
	count_move(sp, USV_SPOOL_ACTIVE, state);
	pthread_mutex_unlock(&sp->mu);
	return fsync_path(dir, 1);
}

int usv_spool_move_done(usv_spool *sp, const char *id)
{
	char src[PATH_MAX], dst[PATH_MAX];
	int rc = usv_spool_path(sp, USV_SPOOL_ACTIVE, id, src, sizeof src);
	if (!rc)
		rc = usv_spool_path(sp, USV_SPOOL_DONE, id, dst, sizeof dst);
	if (rc)
		return rc;
	if (rename(src, dst))
		return -errno;
	pthread_mutex_lock(&sp->mu);
	count_move(sp, USV_SPOOL_ACTIVE, USV_SPOOL_DONE);
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

int usv_spool_sync_state(usv_spool *sp, enum usv_spool_state state)
{
	char dir[PATH_MAX];
	if ((unsigned)state >= NSTATES)
		return -EINVAL;
	snprintf(dir, sizeof dir, "%s/%s", sp->root, state_dirs[state]);
	return fsync_path(dir, 1);
}

int usv_spool_requeue(usv_spool *sp, const char *id)
{
	char src[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX];
	int rc = usv_spool_path(sp, USV_SPOOL_ACTIVE, id, src, sizeof src);
	if (!rc)
		rc = usv_spool_path(sp, USV_SPOOL_INCOMING, id, dst, sizeof dst);
	if (rc)
		return rc;
	if (rename(src, dst))
		return -errno;
	pthread_mutex_lock(&sp->mu);
	count_move(sp, USV_SPOOL_ACTIVE, -1);
	if (q_insert(sp, id))
		sp->qstale = 1;
	pthread_mutex_unlock(&sp->mu);
	snprintf(dir, sizeof dir, "%s/incoming", sp->root);
	return fsync_path(dir, 1);
}

int usv_spool_count(usv_spool *sp, enum usv_spool_state state, size_t *n)
{
	if ((unsigned)state >= NSTATES || !n)
		return -EINVAL;
	if (state == USV_SPOOL_TMP) { /* receptions in progress: few, listed */
		char dir[PATH_MAX];
		char(*ids)[USV_SPOOL_ID_LEN] = NULL;
		snprintf(dir, sizeof dir, "%s/tmp", sp->root);
		int rc = list_ids(dir, ".part", &ids, n);
		free(ids);
		return rc;
	}
	pthread_mutex_lock(&sp->mu);
	*n = state == USV_SPOOL_INCOMING ? sp->qtail - sp->qhead : sp->n[state];
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

/* Deletes from dir the <id>.dcm (and <id>.reason) whose status change time
 * is more than keep_s seconds before now, at most *budget of them (the
 * budget is decremented; UINT_MAX = no limit). *seen gets the number of
 * .dcm names left plus removed, *removed the number deleted. Called
 * without the lock. */
static int sweep_dir(const char *dir, double keep_s, time_t now, unsigned *budget,
                     unsigned *removed, size_t *seen)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int dfd = dirfd(d);
	struct dirent *e;
	char id[USV_SPOOL_ID_LEN], sidecar[USV_SPOOL_ID_LEN + 8];
	while ((e = readdir(d))) {
		if (strlen(e->d_name) != USV_SPOOL_ID_LEN - 1 + 4 ||
		    strcmp(e->d_name + USV_SPOOL_ID_LEN - 1, ".dcm"))
			continue;
		memcpy(id, e->d_name, USV_SPOOL_ID_LEN - 1);
		id[USV_SPOOL_ID_LEN - 1] = 0;
		if (!usv_spool_id_ok(id))
			continue;
		(*seen)++;
		if (*budget == 0)
			continue;
		struct stat st;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW)) {
			if (errno == ENOENT)
				(*seen)--;
			continue;
		}
		double age = (double)(now - st.st_ctim.tv_sec) - st.st_ctim.tv_nsec / 1e9;
		if (!(age > keep_s))
			continue;
		if (unlinkat(dfd, e->d_name, 0)) {
			if (errno == ENOENT)
				(*seen)--;
			continue;
		}
		(*removed)++;
		if (*budget != UINT_MAX)
			(*budget)--;
		snprintf(sidecar, sizeof sidecar, "%s.reason", id);
		unlinkat(dfd, sidecar, 0);
	}
	closedir(d);
	return 0;
}

/* Sweeps one state directory and corrects its count: when nothing else
 * changed the count during the listing, the listing is the truth (files
 * removed behind our back are forgotten); otherwise only our removals
 * are subtracted. */
static int sweep_state(usv_spool *sp, enum usv_spool_state state, double keep_s, time_t now,
                       unsigned *budget, unsigned *removed)
{
	char dir[PATH_MAX];
	size_t seen = 0;
	unsigned rm = 0;
	snprintf(dir, sizeof dir, "%s/%s", sp->root, state_dirs[state]);
	pthread_mutex_lock(&sp->mu);
	unsigned long gen = sp->gen[state];
	pthread_mutex_unlock(&sp->mu);
	int rc = sweep_dir(dir, keep_s, now, budget, &rm, &seen);
	pthread_mutex_lock(&sp->mu);
	if (!rc && sp->gen[state] == gen)
		sp->n[state] = seen - rm;
	else
		dec(&sp->n[state], rm);
	sp->gen[state]++;
	pthread_mutex_unlock(&sp->mu);
	*removed += rm;
	return rc;
}

/* The same for sent/<dest> or dead/<dest> of every destination on disk. */
static int sweep_dests(usv_spool *sp, int dead, double keep_s, time_t now, unsigned *budget,
                       unsigned *removed)
{
	char base[PATH_MAX], dir[PATH_MAX];
	snprintf(base, sizeof base, "%s/%s", sp->root, dead ? "dead" : "sent");
	DIR *d = opendir(base);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	int rc = 0;
	while (!rc && (e = readdir(d))) {
		if (!usv_spool_dest_ok(e->d_name) ||
		    snprintf(dir, sizeof dir, "%s/%s", base, e->d_name) >= (int)sizeof dir)
			continue;
		size_t seen = 0;
		unsigned rm = 0;
		unsigned long gen = 0;
		pthread_mutex_lock(&sp->mu);
		struct dest_count *dc = dest_get(sp, e->d_name, 1);
		if (dc)
			gen = dead ? dc->gen_dead : dc->gen_sent;
		pthread_mutex_unlock(&sp->mu);
		rc = sweep_dir(dir, keep_s, now, budget, &rm, &seen);
		pthread_mutex_lock(&sp->mu);
		if (dc) {
			size_t *n = dead ? &dc->dead : &dc->sent;
			unsigned long *g = dead ? &dc->gen_dead : &dc->gen_sent;
			if (!rc && *g == gen)
				*n = seen - rm;
			else
				dec(n, rm);
			(*g)++;
		}
		pthread_mutex_unlock(&sp->mu);
		*removed += rm;
	}
	closedir(d);
	return rc;
}

int usv_spool_purge(usv_spool *sp, enum usv_spool_state state, time_t before, unsigned *removed)
{
	if (state != USV_SPOOL_DONE && state != USV_SPOOL_FAILED && state != USV_SPOOL_EXCLUDED)
		return -EINVAL;
	unsigned budget = UINT_MAX, rm = 0;
	int rc = sweep_state(sp, state, 0, before, &budget, &rm);
	if (removed)
		*removed = rm;
	return rc;
}

static double keep_seconds(double hours)
{
	return hours * 3600.0;
}

int usv_spool_sweep(usv_spool *sp, const struct usv_spool_retention *ret, time_t now, unsigned max,
                    struct usv_spool_swept *out)
{
	struct usv_spool_swept sw;
	unsigned budget = max ? max : UINT_MAX;
	int rc = 0, r;
	memset(&sw, 0, sizeof sw);
	if (!ret)
		return -EINVAL;
	static const enum usv_spool_state sts[] = {USV_SPOOL_DONE, USV_SPOOL_EXCLUDED,
	                                           USV_SPOOL_FAILED};
	const double hrs[] = {ret->done_h, ret->excluded_h, ret->failed_h};
	unsigned *cnt[] = {&sw.done, &sw.excluded, &sw.failed};
	for (size_t i = 0; i < 3; i++)
		if (hrs[i] > 0 &&
		    (r = sweep_state(sp, sts[i], keep_seconds(hrs[i]), now, &budget, cnt[i])) &&
		    !rc)
			rc = r;
	if (ret->sent_h > 0 &&
	    (r = sweep_dests(sp, 0, keep_seconds(ret->sent_h), now, &budget, &sw.sent)) && !rc)
		rc = r;
	if (ret->dead_h > 0 &&
	    (r = sweep_dests(sp, 1, keep_seconds(ret->dead_h), now, &budget, &sw.dead)) && !rc)
		rc = r;
	sw.more = max && budget == 0;
	if (out)
		*out = sw;
	return rc;
}

/* ---- free space --------------------------------------------------------- */

/* Test hook: USV_SPOOL_FAKE_FREE is a byte count, or the path of a file
 * holding one (re-read at every call, so a test can lift the condition
 * while the daemon runs). */
static int fake_free(uint64_t *bytes)
{
	const char *fake = getenv("USV_SPOOL_FAKE_FREE");
	char buf[32];
	if (!fake || !*fake)
		return 0;
	if (fake[0] == '/') {
		FILE *f = fopen(fake, "re");
		if (!f)
			return 0;
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = 0;
		buf[strcspn(buf, " \n")] = 0;
		fake = buf;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(fake, &end, 10);
	if (errno || *end || end == fake)
		return 0;
	*bytes = v;
	return 1;
}

int usv_spool_free_bytes(usv_spool *sp, uint64_t *bytes)
{
	if (fake_free(bytes))
		return 0;
	struct statvfs st;
	if (statvfs(sp->root, &st))
		return -errno;
	*bytes = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
	return 0;
}

int usv_spool_low_space(usv_spool *sp, uint64_t watermark)
{
	uint64_t fb;
	if (!watermark)
		return 0;
	if (usv_spool_free_bytes(sp, &fb))
		return 1;
	return fb < watermark;
}

/* ---- outbox ------------------------------------------------------------- */

static int dest_dir(usv_spool *sp, const char *top, const char *dest, char *dir, size_t len,
                    int create)
{
	if (!usv_spool_dest_ok(dest))
		return -EINVAL;
	int n = snprintf(dir, len, "%s/%s/%s", sp->root, top, dest);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (!create)
		return 0;
	int rc = mkdir_p(dir);
	if (rc)
		return rc;
	char key[8 + USV_SPOOL_DEST_MAX], parent[PATH_MAX];
	snprintf(key, sizeof key, "%s/%s", top, dest);
	pthread_mutex_lock(&sp->mu);
	for (int i = 0; i < sp->nknown; i++)
		if (!strcmp(sp->known[i], key)) {
			pthread_mutex_unlock(&sp->mu);
			return 0;
		}
	pthread_mutex_unlock(&sp->mu);
	snprintf(parent, sizeof parent, "%s/%s", sp->root, top);
	rc = fsync_path(parent, 1);
	if (rc)
		return rc;
	pthread_mutex_lock(&sp->mu);
	if (sp->nknown < KNOWN_DIRS)
		snprintf(sp->known[sp->nknown++], sizeof key, "%s", key);
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

static int outbox_put(usv_spool *sp, const char *dest, const char *tmp_path, char *name,
                      size_t namelen, int sync_dir)
{
	char id[USV_SPOOL_ID_LEN], dir[PATH_MAX], dst[PATH_MAX];
	if (!tmp_path || namelen < USV_SPOOL_ID_LEN)
		return -EINVAL;
	int rc = tmp_id(sp, tmp_path, id);
	if (!rc)
		rc = dest_dir(sp, "outbox", dest, dir, sizeof dir, 1);
	if (rc)
		return rc;
	if (sync_dir) {
		rc = move_durably(tmp_path, dir, id);
	} else {
		rc = fsync_path(tmp_path, 0);
		if (!rc && snprintf(dst, sizeof dst, "%s/%s.dcm", dir, id) >= (int)sizeof dst)
			rc = -ENAMETOOLONG;
		if (!rc && rename(tmp_path, dst))
			rc = -errno;
	}
	if (!rc) {
		memcpy(name, id, USV_SPOOL_ID_LEN);
		pthread_mutex_lock(&sp->mu);
		struct dest_count *dc = dest_get(sp, dest, 1);
		if (dc) {
			dc->outbox++;
			dc->gen_outbox++;
		}
		pthread_mutex_unlock(&sp->mu);
	}
	return rc;
}

int usv_spool_outbox_put(usv_spool *sp, const char *dest, const char *tmp_path, char *name,
                         size_t namelen)
{
	return outbox_put(sp, dest, tmp_path, name, namelen, 1);
}

int usv_spool_outbox_add(usv_spool *sp, const char *dest, const char *tmp_path, char *name,
                         size_t namelen)
{
	return outbox_put(sp, dest, tmp_path, name, namelen, 0);
}

int usv_spool_outbox_sync(usv_spool *sp, const char *dest)
{
	char dir[PATH_MAX];
	int rc = dest_dir(sp, "outbox", dest, dir, sizeof dir, 0);
	return rc ? rc : fsync_path(dir, 1);
}

int usv_spool_outbox_path(const usv_spool *sp, const char *dest, const char *name, char *path,
                          size_t pathlen)
{
	if (!usv_spool_dest_ok(dest) || !usv_spool_id_ok(name))
		return -EINVAL;
	int n = snprintf(path, pathlen, "%s/outbox/%s/%s.dcm", sp->root, dest, name);
	return (n < 0 || (size_t)n >= pathlen) ? -ENAMETOOLONG : 0;
}

static void read_state(const char *dir, usv_outbox_item *it)
{
	char p[PATH_MAX], line[512];
	it->attempts = 0;
	it->next_try = 0;
	it->last_error[0] = 0;
	unsigned long long hi = strtoull(it->name, NULL, 16);
	it->created = (time_t)(hi / 1000000ULL);
	snprintf(p, sizeof p, "%s/%s.state", dir, it->name);
	FILE *f = fopen(p, "re");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "attempts=", 9))
			it->attempts = (unsigned)strtoul(line + 9, NULL, 10);
		else if (!strncmp(line, "next_try=", 9))
			it->next_try = (time_t)strtoll(line + 9, NULL, 10);
		else if (!strncmp(line, "last_error=", 11))
			snprintf(it->last_error, sizeof it->last_error, "%.255s", line + 11);
	}
	fclose(f);
}

int usv_spool_outbox_list(usv_spool *sp, const char *dest, usv_outbox_item **items, size_t *n)
{
	char dir[PATH_MAX];
	*items = NULL;
	*n = 0;
	int rc = dest_dir(sp, "outbox", dest, dir, sizeof dir, 0);
	if (rc)
		return rc;
	char(*ids)[USV_SPOOL_ID_LEN] = NULL;
	size_t cnt = 0;
	unsigned long gen = 0;
	pthread_mutex_lock(&sp->mu);
	struct dest_count *dc = dest_get(sp, dest, 1);
	if (dc)
		gen = dc->gen_outbox;
	pthread_mutex_unlock(&sp->mu);
	rc = list_ids(dir, ".dcm", &ids, &cnt);
	if (rc == -ENOENT)
		cnt = 0;
	else if (rc)
		return rc;
	pthread_mutex_lock(&sp->mu);
	if (dc && dc->gen_outbox == gen) /* the listing is the truth */
		dc->outbox = cnt;
	pthread_mutex_unlock(&sp->mu);
	if (rc == -ENOENT)
		return 0;
	if (cnt) {
		usv_outbox_item *v = calloc(cnt, sizeof *v);
		if (!v) {
			free(ids);
			return -ENOMEM;
		}
		for (size_t i = 0; i < cnt; i++) {
			memcpy(v[i].name, ids[i], USV_SPOOL_ID_LEN);
			read_state(dir, &v[i]);
		}
		*items = v;
		*n = cnt;
	}
	free(ids);
	return 0;
}

int usv_spool_outbox_next(usv_spool *sp, const char *dest, time_t now, usv_outbox_item *item)
{
	usv_outbox_item *v;
	size_t n;
	int rc = usv_spool_outbox_list(sp, dest, &v, &n);
	if (rc)
		return rc;
	if (!n)
		return -ENOENT;
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i].next_try <= now) {
			*item = v[i];
			free(v);
			return 0;
		}
		if (v[i].next_try < v[best].next_try)
			best = i;
	}
	*item = v[best];
	free(v);
	return -EAGAIN;
}

int usv_spool_outbox_defer(usv_spool *sp, const char *dest, const char *name, time_t next_try,
                           const char *error)
{
	char dir[PATH_MAX], p[PATH_MAX];
	int rc = usv_spool_outbox_path(sp, dest, name, p, sizeof p);
	if (!rc)
		rc = dest_dir(sp, "outbox", dest, dir, sizeof dir, 0);
	if (rc)
		return rc;
	if (access(p, F_OK))
		return -errno;
	usv_outbox_item it;
	memset(&it, 0, sizeof it);
	memcpy(it.name, name, USV_SPOOL_ID_LEN);
	read_state(dir, &it);
	char err[256], text[512], sname[USV_SPOOL_ID_LEN + 8];
	clean_line(err, sizeof err, error ? error : "");
	snprintf(text, sizeof text, "attempts=%u\nnext_try=%lld\nlast_error=%s\n", it.attempts + 1,
	         (long long)next_try, err);
	snprintf(sname, sizeof sname, "%s.state", name);
	return write_sidecar(dir, sname, text);
}

static int outbox_move(usv_spool *sp, const char *dest, const char *name, const char *top,
                       const char *reason)
{
	char src[PATH_MAX], odir[PATH_MAX], ddir[PATH_MAX], dst[PATH_MAX],
	    sname[USV_SPOOL_ID_LEN + 8];
	int rc = usv_spool_outbox_path(sp, dest, name, src, sizeof src);
	if (!rc)
		rc = dest_dir(sp, "outbox", dest, odir, sizeof odir, 0);
	if (!rc)
		rc = dest_dir(sp, top, dest, ddir, sizeof ddir, 1);
	if (rc)
		return rc;
	if (access(src, F_OK))
		return -errno;
	if (reason) {
		char line[USV_SPOOL_REASON_MAX];
		clean_line(line, sizeof line - 1, reason);
		strcat(line, "\n");
		snprintf(sname, sizeof sname, "%s.reason", name);
		if ((rc = write_sidecar(ddir, sname, line)))
			return rc;
	}
	snprintf(dst, sizeof dst, "%s/%s.dcm", ddir, name);
	if (rename(src, dst))
		return -errno;
	pthread_mutex_lock(&sp->mu);
	struct dest_count *dc = dest_get(sp, dest, 1);
	if (dc) {
		dec(&dc->outbox, 1);
		dc->gen_outbox++;
		if (reason) {
			dc->dead++;
			dc->gen_dead++;
		} else {
			dc->sent++;
			dc->gen_sent++;
		}
	}
	pthread_mutex_unlock(&sp->mu);
	if ((rc = fsync_path(ddir, 1)))
		return rc;
	snprintf(dst, sizeof dst, "%s/%s.state", odir, name);
	unlink(dst);
	return fsync_path(odir, 1);
}

int usv_spool_outbox_sent(usv_spool *sp, const char *dest, const char *name)
{
	return outbox_move(sp, dest, name, "sent", NULL);
}

int usv_spool_outbox_dead(usv_spool *sp, const char *dest, const char *name, const char *reason)
{
	return outbox_move(sp, dest, name, "dead", reason ? reason : "");
}

int usv_spool_outbox_count(usv_spool *sp, const char *dest, size_t *outbox, size_t *sent,
                           size_t *dead)
{
	if (!usv_spool_dest_ok(dest))
		return -EINVAL;
	pthread_mutex_lock(&sp->mu);
	const struct dest_count *dc = dest_get(sp, dest, 0);
	if (outbox)
		*outbox = dc ? dc->outbox : 0;
	if (sent)
		*sent = dc ? dc->sent : 0;
	if (dead)
		*dead = dc ? dc->dead : 0;
	pthread_mutex_unlock(&sp->mu);
	return 0;
}
