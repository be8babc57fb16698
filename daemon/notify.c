/*
 * NAME
 *	notify.c - service notifications of usviewd (see notify.h)
 *
 * DESIGN
 *	The datagram goes out on a non-blocking socket: the main thread,
 *	which takes SIGTERM, must never wait for the service manager. The
 *	kernel queues at most net.unix.max_dgram_qlen datagrams (10 by
 *	default) for a reader that does not keep up; libsystemd's
 *	sd_notify() then blocks in sendmsg(), and a stalled reader would
 *	hold the daemon's signal handling with it. Here a STATUS= or
 *	WATCHDOG=1 that finds the queue full is dropped (the next one
 *	follows within seconds); READY=1, RELOADING=1 and STOPPING=1 are
 *	retried for up to NOTIFY_RETRY_MS, then dropped with -EAGAIN.
 *	NOTIFY_SOCKET forms other than a path ("/...") or an abstract name
 *	("@...") go through sd_notify().
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define NOTIFY_RETRY_MS 2000

/* Sends text to NOTIFY_SOCKET; 0 when unset. */
static int send_text(const char *text, int important)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t salen;
	size_t n;

	if (!e || !*e)
		return 0;
	if (e[0] != '/' && e[0] != '@')
		return sd_notify(0, text);
	n = strlen(e);
	if (n >= sizeof sa.sun_path)
		return -ENAMETOOLONG;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, e, n);
	if (e[0] == '@')
		sa.sun_path[0] = 0; /* abstract namespace */
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (e[0] == '/'));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int rc = 0;
	for (int waited = 0;; waited += 10) {
		if (sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) >=
		    0) {
			rc = 0;
			break;
		}
		rc = -errno;
		if (rc == -EINTR)
			continue;
		if ((rc != -EAGAIN && rc != -EWOULDBLOCK) || !important ||
		    waited >= NOTIFY_RETRY_MS)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	close(fd);
	return rc;
}

int usv_notify_ready(const char *status)
{
	char buf[600];
	snprintf(buf, sizeof buf, "READY=1\nSTATUS=%s", status ? status : "ready");
	return send_text(buf, 1);
}

int usv_notify_status(const char *fmt, ...)
{
	char buf[512], msg[520];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof msg, "STATUS=%s", buf);
	return send_text(msg, 0);
}

int usv_notify_reloading(void)
{
	struct timespec ts;
	char buf[160];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(
	    buf, sizeof buf, "RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull);
	return send_text(buf, 1);
}

int usv_notify_stopping(const char *status)
{
	char buf[600];
	snprintf(buf, sizeof buf, "STOPPING=1\nSTATUS=%s", status ? status : "stopping");
	return send_text(buf, 1);
}

int usv_notify_watchdog(void)
{
	return send_text("WATCHDOG=1", 0);
}

int usv_notify_watchdog_usec(uint64_t *usec)
{
	uint64_t us = 0;
	int r = sd_watchdog_enabled(0, &us);

	if (r > 0 && usec)
		*usec = us;
	return r > 0 ? 1 : 0;
}
