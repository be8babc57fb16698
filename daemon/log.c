/*
 * NAME
 *	log.c - usviewd logging to journald (structured) or stderr
 *
 * DESCRIPTION
 *	See log.h. The journal path builds an iovec per record for
 *	sd_journal_sendv(): MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=,
 *	MESSAGE_ID= and the caller's fields. The stderr path writes the whole
 *	line with one write() so lines from different threads never
 *	interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define MAX_FIELDS 24
#define VALUE_MAX 512

static atomic_int log_level = 6;
static int use_journal;

static const char *level_name(int prio)
{
	static const char *const names[] = {"emerg",   "alert",  "crit", "error",
	                                    "warning", "notice", "info", "debug"};
	return prio >= 0 && prio <= 7 ? names[prio] : "info";
}

void usv_log_init(int level, int journald)
{
	const char *js = getenv("JOURNAL_STREAM");

	atomic_store(&log_level, level);
	use_journal = journald && js && *js;
}

void usv_log_set_level(int level)
{
	atomic_store(&log_level, level);
}

int usv_log_journal(void)
{
	return use_journal;
}

/* Copies src into dst (size len) replacing control characters by ' '. */
static void clean(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	for (; src[i] && i + 1 < len; i++)
		dst[i] = (unsigned char)src[i] < 0x20 ? ' ' : src[i];
	dst[i] = 0;
}

static void emit(int prio, const char *message_id, const char *const *fields, size_t nfields,
                 const char *msg)
{
	if (nfields > MAX_FIELDS)
		nfields = MAX_FIELDS;
	if (use_journal) {
		struct iovec iov[MAX_FIELDS + 4];
		char bufs[MAX_FIELDS][VALUE_MAX + 64];
		char m[2048], p[32], id[64];
		int n = 0;

		snprintf(m, sizeof m, "MESSAGE=%s", msg);
		snprintf(p, sizeof p, "PRIORITY=%d", prio);
		iov[n++] = (struct iovec){m, strlen(m)};
		iov[n++] = (struct iovec){p, strlen(p)};
		iov[n++] = (struct iovec){(char *)"SYSLOG_IDENTIFIER=usviewd", 25};
		if (message_id) {
			snprintf(id, sizeof id, "MESSAGE_ID=%s", message_id);
			iov[n++] = (struct iovec){id, strlen(id)};
		}
		for (size_t i = 0; i < nfields; i++) {
			clean(bufs[i], sizeof bufs[i], fields[i]);
			iov[n++] = (struct iovec){bufs[i], strlen(bufs[i])};
		}
		sd_journal_sendv(iov, n);
		return;
	}
	char line[4096];
	size_t used = (size_t)snprintf(line, sizeof line, "usviewd[%d]: %s: ", (int)getpid(),
	                               level_name(prio));
	char tmp[VALUE_MAX + 64];
	clean(tmp, sizeof tmp, msg);
	used +=
	    (size_t)snprintf(line + used, used < sizeof line ? sizeof line - used : 0, "%s", tmp);
	for (size_t i = 0; i < nfields && used < sizeof line; i++) {
		clean(tmp, sizeof tmp, fields[i]);
		used += (size_t)snprintf(line + used, sizeof line - used, " %s", tmp);
	}
	if (used >= sizeof line - 1)
		used = sizeof line - 2;
	line[used++] = '\n';
	ssize_t r = write(STDERR_FILENO, line, used);
	(void)r;
}

void usv_log(int prio, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (prio > atomic_load(&log_level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	emit(prio, NULL, NULL, 0, msg);
}

void usv_log_fields(int prio, const char *message_id, const char *const *fields, size_t nfields,
                    const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (prio > atomic_load(&log_level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	emit(prio, message_id, fields, nfields, msg);
}
