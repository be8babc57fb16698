/*
 * NAME
 *	log.h - usviewd logging: structured journald records or stderr lines
 *
 * DESCRIPTION
 *	Only usviewd logs (library code returns messages). When journald
 *	output is wanted and the process runs under journald (JOURNAL_STREAM
 *	is set, i.e. systemd connected stdout/stderr to the journal), records
 *	go through sd_journal_send() with PRIORITY, MESSAGE_ID and custom
 *	USV_* fields, so `journalctl -u usviewd USV_CALLING_AE=X` works.
 *	Otherwise one plain line per record goes to stderr:
 *	"usviewd[pid]: <level>: <message> [FIELD=value ...]".
 *	No patient names or other patient data are ever logged: callers pass
 *	UIDs, AE titles, addresses and counts only.
 *
 * CONTRACTS
 *	usv_log_init(level, journald)
 *		Once, in main() before threads. level: syslog priority (3..7),
 *		records above it are dropped. journald: 1 = use the journal when
 *		JOURNAL_STREAM is set.
 *	usv_log_set_level(level)
 *		Thread-safe (SIGHUP reload).
 *	usv_log_journal()
 *		1 when records go to the journal.
 *	usv_log(prio, fmt, ...)
 *		One record. Thread-safe.
 *	usv_log_fields(prio, message_id, fields, nfields, fmt, ...)
 *		One record with extra fields, each "NAME=value" (NAME upper
 *		case, digits and '_'; values are truncated at 512 bytes and
 *		newlines replaced). message_id may be NULL.
 *
 * MESSAGE IDS (made once with systemd-id128 new)
 */
#ifndef USV_LOG_H
#define USV_LOG_H

#include <stddef.h>

#define USV_MSGID_START "963d919a30d3436f9e4389ce77ce3a2d"    /* started, ready, stopping */
#define USV_MSGID_ASSOC "a0188316e5144b5aa4abcc1ae42d45b4"    /* one association ended */
#define USV_MSGID_INSTANCE "57548371076b4d5c9eace22288548d7d" /* one instance classified/failed */
#define USV_MSGID_SEND "6c996b761a574b2e8bf002633510605b"     /* result delivery events */
#define USV_MSGID_RELOAD "391c10d0418c4ec7ae0eee46a485f9fe"   /* configuration reload */

void usv_log_init(int level, int journald);
void usv_log_set_level(int level);
int usv_log_journal(void);
void usv_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void usv_log_fields(int prio, const char *message_id, const char *const *fields, size_t nfields,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
