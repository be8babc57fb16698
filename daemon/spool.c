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
 *	  "smallest name first". Two processes sharing a spool cannot collide:
 *	  tmp files are created with O_EXCL and the pid is part of the id.
 *	- A claim is the rename incoming/ -> active/; of two concurrent
 *	  claimers of one id only one rename succeeds, the other sees ENOENT
 *	  and tries the next name. No lock files.
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
 *	The handle holds only the root path and a counter; all state is on
 *	disk, so several threads (and processes) may use one spool.
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

struct usv_spool {
	char root[PATH_MAX - 128];
	atomic_uint counter;
	pthread_mutex_t mu; /* guards known[] */
	int nknown;
	char known[KNOWN_DIRS][8 + USV_SPOOL_DEST_MAX];
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
	if (rc) {
		usv_seterr(errbuf, errlen, rc, "%s: cannot create spool: %s", root,
		           usv_strerror(rc));
		pthread_mutex_destroy(&sp->mu);
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

/* fsync tmp_path and rename it to dstdir/<id>.dcm, fsync dstdir. */
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
	return fsync_path(dstdir, 1);
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

int usv_spool_claim(usv_spool *sp, char *id, size_t idlen)
{
	char in[PATH_MAX], act[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
	char(*ids)[USV_SPOOL_ID_LEN] = NULL;
	size_t n = 0;
	if (idlen < USV_SPOOL_ID_LEN)
		return -EINVAL;
	snprintf(in, sizeof in, "%s/incoming", sp->root);
	snprintf(act, sizeof act, "%s/active", sp->root);
	int rc = list_ids(in, ".dcm", &ids, &n);
	if (rc)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		snprintf(p, sizeof p, "%s/%s.dcm", in, ids[i]);
		snprintf(q, sizeof q, "%s/%s.dcm", act, ids[i]);
		if (rename(p, q) == 0) {
			/* Losing this rename in a crash only means the file is
			 * claimed again later: no directory fsync needed. */
			memcpy(id, ids[i], USV_SPOOL_ID_LEN);
			rc = 0;
			break;
		}
		if (errno != ENOENT) {
			rc = -errno;
			break;
		}
	}
	free(ids);
	return rc;
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
	return rename(src, dst) ? -errno : 0;
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
	snprintf(dir, sizeof dir, "%s/incoming", sp->root);
	return fsync_path(dir, 1);
}

int usv_spool_count(usv_spool *sp, enum usv_spool_state state, size_t *n)
{
	if ((unsigned)state >= NSTATES || !n)
		return -EINVAL;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s", sp->root, state_dirs[state]);
	char(*ids)[USV_SPOOL_ID_LEN] = NULL;
	int rc = list_ids(dir, state == USV_SPOOL_TMP ? ".part" : ".dcm", &ids, n);
	free(ids);
	return rc;
}

int usv_spool_purge(usv_spool *sp, enum usv_spool_state state, time_t before, unsigned *removed)
{
	if (state != USV_SPOOL_DONE && state != USV_SPOOL_FAILED && state != USV_SPOOL_EXCLUDED)
		return -EINVAL;
	char dir[PATH_MAX], p[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s", sp->root, state_dirs[state]);
	char(*ids)[USV_SPOOL_ID_LEN] = NULL;
	size_t n = 0;
	unsigned rm = 0;
	int rc = list_ids(dir, ".dcm", &ids, &n);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		snprintf(p, sizeof p, "%s/%s.dcm", dir, ids[i]);
		if (stat(p, &st) || st.st_ctime >= before)
			continue;
		if (unlink(p) == 0)
			rm++;
		snprintf(p, sizeof p, "%s/%s.reason", dir, ids[i]);
		unlink(p);
	}
	free(ids);
	if (removed)
		*removed = rm;
	return 0;
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
	if (!rc)
		memcpy(name, id, USV_SPOOL_ID_LEN);
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
	rc = list_ids(dir, ".dcm", &ids, &cnt);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
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
