/*
 * NAME
 *	faultfs.c - LD_PRELOAD shim that fails the n-th file operation
 *
 * SYNOPSIS
 *	LD_PRELOAD=libusv_faultfs.so USV_FAULT_DIR=/spool USV_FAULT_CTL=/ctl \
 *	USV_FAULT_STAT=/stat usviewd ...
 *
 * DESCRIPTION
 *	Counts the file operations of the process on paths at or below
 *	USV_FAULT_DIR and fails the chosen one, so the integration tests can
 *	check every point of the receive and result paths where the disk
 *	can refuse (ENOSPC) or break (EIO). Four kinds of operation:
 *
 *	  open    open, open64, openat, openat64, creat, fopen, fopen64
 *	  write   write, pwrite, pwrite64, fwrite, fflush (of one stream)
 *	  fsync   fsync, fdatasync
 *	  rename  rename, renameat, renameat2
 *
 *	The stdio calls are wrapped beside the system calls because glibc's
 *	stdio reaches write() and open() internally, not through the PLT.
 *	A descriptor or stream is matched by the path /proc/self/fd names.
 *
 *	USV_FAULT_CTL names a control file, read at every matching call:
 *	  off                        count only
 *	  <op> <n> <errno> [<count>] fail the n-th <op> (1-based) and the
 *	                             count-1 after it (default 1), counted
 *	                             from when this line was written
 *	  <op> <n> <errno> forever   fail from the n-th <op> on
 *	<errno> is ENOSPC, EIO or a number. Any change of the file's content
 *	restarts the counts, so a test rewrites it (with a different trailing
 *	token, for instance "# 17") to arm the next fault without restarting
 *	the process, and writes "off" to end a fault.
 *
 *	USV_FAULT_STAT names a file rewritten after every matching call with
 *	"open=A write=B fsync=C rename=D injected=E": the counts since the
 *	control file last changed.
 *
 *	A failed write or fwrite writes nothing; a failed fsync syncs nothing;
 *	a failed rename renames nothing; a failed open creates nothing.
 *
 * DIAGNOSTICS
 *	None: the shim never prints; unset variables make it pass through.
 */
#undef _FILE_OFFSET_BITS /* open and open64 are wrapped separately */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum { OP_OPEN, OP_WRITE, OP_FSYNC, OP_RENAME, NOPS };
static const char *const op_names[NOPS] = {"open", "write", "fsync", "rename"};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char ctl_text[256];         /* last content of the control file */
static unsigned long counts[NOPS]; /* since ctl_text changed */
static unsigned long injected;
static __thread int inside; /* the shim's own calls pass through */

/* ---- raw system calls (never through the wrappers) --------------------- */

static ssize_t raw_read_file(const char *path, char *buf, size_t len)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = syscall(SYS_read, fd, buf, len - 1);
	syscall(SYS_close, fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return n;
}

static void raw_write_file(const char *path, const char *text)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return;
	int fd =
	    (int)syscall(SYS_openat, AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	syscall(SYS_write, fd, text, strlen(text));
	syscall(SYS_close, fd);
	syscall(SYS_renameat, AT_FDCWD, tmp, AT_FDCWD, path);
}

/* ---- matching ----------------------------------------------------------- */

static int under_dir(const char *path)
{
	const char *dir = getenv("USV_FAULT_DIR");
	if (!dir || !*dir || !path || path[0] != '/')
		return 0;
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == 0);
}

static int fd_under_dir(int fd)
{
	char link[64], path[4096];
	if (fd < 0)
		return 0;
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = syscall(SYS_readlinkat, AT_FDCWD, link, path, sizeof path - 1);
	if (n <= 0)
		return 0;
	path[n] = 0;
	return under_dir(path);
}

static int path_at_under_dir(int dirfd, const char *path)
{
	if (!path)
		return 0;
	if (path[0] == '/' || dirfd == AT_FDCWD) {
		if (path[0] == '/')
			return under_dir(path);
		char cwd[4096], full[8192];
		if (!getcwd(cwd, sizeof cwd))
			return 0;
		snprintf(full, sizeof full, "%s/%s", cwd, path);
		return under_dir(full);
	}
	return fd_under_dir(dirfd);
}

static int parse_errno(const char *s)
{
	if (!strcmp(s, "ENOSPC"))
		return ENOSPC;
	if (!strcmp(s, "EIO"))
		return EIO;
	if (!strcmp(s, "EDQUOT"))
		return EDQUOT;
	if (!strcmp(s, "EROFS"))
		return EROFS;
	int v = atoi(s);
	return v > 0 ? v : EIO;
}

/* Counts one matching call of op; returns the errno to fail it with, or 0. */
static int fault(int op)
{
	const char *ctl = getenv("USV_FAULT_CTL"), *stat_path = getenv("USV_FAULT_STAT");
	char text[256] = "";
	int err = 0;

	if (ctl)
		raw_read_file(ctl, text, sizeof text);
	pthread_mutex_lock(&mu);
	if (strcmp(text, ctl_text)) {
		memcpy(ctl_text, text, sizeof ctl_text);
		memset(counts, 0, sizeof counts);
		injected = 0;
	}
	unsigned long k = ++counts[op];
	char name[16] = "", es[16] = "", cnt[16] = "";
	unsigned long n = 0;
	if (sscanf(text, "%15s %lu %15s %15s", name, &n, es, cnt) >= 3 &&
	    !strcmp(name, op_names[op]) && n > 0) {
		int forever = !strcmp(cnt, "forever");
		unsigned long c = cnt[0] && !forever ? strtoul(cnt, NULL, 10) : 1;
		if (c == 0)
			c = 1;
		if (k >= n && (forever || k < n + c)) {
			err = parse_errno(es);
			injected++;
		}
	}
	if (stat_path) {
		char line[160];
		snprintf(line, sizeof line,
		         "open=%lu write=%lu fsync=%lu rename=%lu injected=%lu\n", counts[OP_OPEN],
		         counts[OP_WRITE], counts[OP_FSYNC], counts[OP_RENAME], injected);
		raw_write_file(stat_path, line);
	}
	pthread_mutex_unlock(&mu);
	return err;
}

#define REAL(name) ((__typeof__(&name))real_sym(#name))

static void *real_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p)
		abort();
	return p;
}

/* ---- open --------------------------------------------------------------- */

static int open_fault(int dirfd, const char *path)
{
	if (inside || !path_at_under_dir(dirfd, path))
		return 0;
	inside = 1;
	int e = fault(OP_OPEN);
	inside = 0;
	return e;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	int e = open_fault(AT_FDCWD, path);
	if (e) {
		errno = e;
		return -1;
	}
	return ((int (*)(const char *, int, ...))real_sym("open"))(path, flags, m);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	int e = open_fault(AT_FDCWD, path);
	if (e) {
		errno = e;
		return -1;
	}
	return ((int (*)(const char *, int, ...))real_sym("open64"))(path, flags, m);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	int e = open_fault(dirfd, path);
	if (e) {
		errno = e;
		return -1;
	}
	return ((int (*)(int, const char *, int, ...))real_sym("openat"))(dirfd, path, flags, m);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	int e = open_fault(dirfd, path);
	if (e) {
		errno = e;
		return -1;
	}
	return ((int (*)(int, const char *, int, ...))real_sym("openat64"))(dirfd, path, flags, m);
}

int creat(const char *path, mode_t mode)
{
	int e = open_fault(AT_FDCWD, path);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(creat)(path, mode);
}

FILE *fopen(const char *path, const char *mode)
{
	int e = open_fault(AT_FDCWD, path);
	if (e) {
		errno = e;
		return NULL;
	}
	inside++;
	FILE *f = REAL(fopen)(path, mode);
	inside--;
	return f;
}

FILE *fopen64(const char *path, const char *mode)
{
	int e = open_fault(AT_FDCWD, path);
	if (e) {
		errno = e;
		return NULL;
	}
	inside++;
	FILE *f = REAL(fopen64)(path, mode);
	inside--;
	return f;
}

/* ---- write -------------------------------------------------------------- */

static int fd_fault(int op, int fd)
{
	if (inside || !fd_under_dir(fd))
		return 0;
	inside = 1;
	int e = fault(op);
	inside = 0;
	return e;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	int e = fd_fault(OP_WRITE, fd);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(write)(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	int e = fd_fault(OP_WRITE, fd);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(pwrite)(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	int e = fd_fault(OP_WRITE, fd);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(pwrite64)(fd, buf, len, off);
}

/* Marks the stream as failed, as a failed internal write would. */
static void stream_error(FILE *f)
{
#ifdef __GLIBC__
	f->_flags |= 0x0020; /* _IO_ERR_SEEN */
#else
	(void)f;
#endif
}

size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
	int e = f ? fd_fault(OP_WRITE, fileno(f)) : 0;
	if (e) {
		stream_error(f);
		errno = e;
		return 0;
	}
	inside++;
	size_t r = REAL(fwrite)(buf, size, n, f);
	inside--;
	return r;
}

int fflush(FILE *f)
{
	int e = f ? fd_fault(OP_WRITE, fileno(f)) : 0;
	if (e) {
		stream_error(f);
		errno = e;
		return EOF;
	}
	inside++;
	int r = REAL(fflush)(f);
	inside--;
	return r;
}

/* ---- fsync -------------------------------------------------------------- */

int fsync(int fd)
{
	int e = fd_fault(OP_FSYNC, fd);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
	int e = fd_fault(OP_FSYNC, fd);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(fdatasync)(fd);
}

/* ---- rename ------------------------------------------------------------- */

static int rename_fault(int olddir, const char *oldp, int newdir, const char *newp)
{
	if (inside || !(path_at_under_dir(olddir, oldp) || path_at_under_dir(newdir, newp)))
		return 0;
	inside = 1;
	int e = fault(OP_RENAME);
	inside = 0;
	return e;
}

int rename(const char *oldp, const char *newp)
{
	int e = rename_fault(AT_FDCWD, oldp, AT_FDCWD, newp);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(rename)(oldp, newp);
}

int renameat(int olddir, const char *oldp, int newdir, const char *newp)
{
	int e = rename_fault(olddir, oldp, newdir, newp);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(renameat)(olddir, oldp, newdir, newp);
}

int renameat2(int olddir, const char *oldp, int newdir, const char *newp, unsigned flags)
{
	int e = rename_fault(olddir, oldp, newdir, newp);
	if (e) {
		errno = e;
		return -1;
	}
	return REAL(renameat2)(olddir, oldp, newdir, newp, flags);
}
