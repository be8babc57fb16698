/*
 * NAME
 *	notify.c - sd_notify wrappers of usviewd (see notify.h)
 */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

int usv_notify_ready(const char *status)
{
	return sd_notifyf(0, "READY=1\nSTATUS=%s", status ? status : "ready");
}

int usv_notify_status(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return sd_notifyf(0, "STATUS=%s", buf);
}

int usv_notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return sd_notifyf(0, "RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=%llu",
	                  (unsigned long long)ts.tv_sec * 1000000ull +
	                      (unsigned long long)ts.tv_nsec / 1000ull);
}

int usv_notify_stopping(const char *status)
{
	return sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status ? status : "stopping");
}

int usv_notify_watchdog(void)
{
	return sd_notify(0, "WATCHDOG=1");
}

int usv_notify_watchdog_usec(uint64_t *usec)
{
	uint64_t us = 0;
	int r = sd_watchdog_enabled(0, &us);

	if (r > 0 && usec)
		*usec = us;
	return r > 0 ? 1 : 0;
}
