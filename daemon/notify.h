/*
 * NAME
 *	notify.h - systemd service notifications of usviewd (sd_notify)
 *
 * DESCRIPTION
 *	The sd_notify protocol, sent without ever blocking the caller (see
 *	the DESIGN comment of notify.c); every function is a no-op when
 *	NOTIFY_SOCKET is unset (not started by systemd), so the daemon calls
 *	them unconditionally. The protocol (systemd 252, Debian
 *	12, Type=notify):
 *
 *	  READY=1          after config validated, spool recovered, model
 *	                   loaded and the DICOM port bound (never earlier)
 *	  STATUS=...       live counters, shown by systemctl status
 *	  WATCHDOG=1       from the main loop while workers make progress,
 *	                   at half of WatchdogSec (usv_notify_watchdog_usec)
 *	  RELOADING=1 + MONOTONIC_USEC=<CLOCK_MONOTONIC us>, then READY=1,
 *	                   around a SIGHUP reload
 *	  STOPPING=1       when shutdown begins
 *
 * CONTRACTS
 *	usv_notify_ready(status)       READY=1 with a STATUS= line
 *	usv_notify_status(fmt, ...)    STATUS=<text>
 *	usv_notify_reloading()         RELOADING=1 + MONOTONIC_USEC
 *	usv_notify_stopping(status)    STOPPING=1 with a STATUS= line
 *	usv_notify_watchdog()          WATCHDOG=1
 *	usv_notify_watchdog_usec(&us)  1 and the interval when the service
 *	                               manager expects pings, else 0
 *	All return 0 or a negative errno (-EAGAIN: the service manager's
 *	queue stayed full and the message was dropped); callers ignore it.
 */
#ifndef USV_NOTIFY_H
#define USV_NOTIFY_H

#include <stdint.h>

int usv_notify_ready(const char *status);
int usv_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int usv_notify_reloading(void);
int usv_notify_stopping(const char *status);
int usv_notify_watchdog(void);
int usv_notify_watchdog_usec(uint64_t *usec);

#endif
