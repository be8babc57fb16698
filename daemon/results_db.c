/*
 * NAME
 *	results_db.c - the results index in PostgreSQL (results_db.h)
 *
 * DESIGN
 *	results.jsonl is the queue, the database the copy: nothing the
 *	workers do waits for the database. The copier keeps one cursor,
 *	(inode, offset) of the next byte to copy, in results.db-cursor,
 *	replaced by rename after each commit. It is not fsynced: after a
 *	crash an older cursor only makes the copier read lines again, and
 *	usv_log's unique (node, md5(line)) turns those into no-ops (a line
 *	holds its time and spool id, so two different results never share
 *	one). The file under the cursor is found by inode: results.jsonl,
 *	or one of results.jsonl.1 ... .N after rotations; a rotated file is
 *	finished, then the next newer one is read from its start.
 *
 *	One transaction per batch of lines (USV_RESULTS_DB_BATCH, fewer at
 *	the end of the file). Per instance line: the usv_log row (ON
 *	CONFLICT DO NOTHING; a conflict means the line was copied, and the
 *	rest is skipped), the usv_instance row (upsert), and, when what the
 *	study counts changed (sig: outcome, most probable class,
 *	uncertain, technologist's label, agreement, protocol, study), the
 *	study's seq and last_change. Lines with no SOP Instance or Study
 *	UID (files that could not be read) only get their usv_log row.
 *
 *	Study pass: one study per transaction, claimed with FOR UPDATE SKIP
 *	LOCKED, so nodes never wait for each other and never write the same
 *	revision; the row lock also makes a copier that touches the study
 *	wait until the record is committed, after which its change makes
 *	the study dirty again. If the transaction fails after the study
 *	SRs were put, the next try puts the same SOP Instance UIDs again
 *	(usv_study_build_line): the PACS receives one object, maybe twice.
 *
 *	Deadlocks between copiers of different nodes (two batches touching
 *	the same studies in another order) are avoided by creating and then
 *	locking the study rows of a batch in study UID order before anything
 *	else. A statement that fails on a live connection (a lock conflict
 *	all the same) rolls the transaction back and the pass is tried again;
 *	a lost connection is dropped and reconnected with a backoff.
 */
#include "results_db.h"

#include "usv/err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define CURSOR_FILE "results.db-cursor"
#define LINE_MAX_BYTES (1u << 20)
#define READ_CHUNK (1u << 20)
#define MAX_ROTATED 1000
#define RETRY_MAX_S 30.0
#define STUDIES_PER_PASS 200
#define STUDY_RETRY_S 10.0          /* a study whose record failed waits this long */
#define MAX_HELD 64                 /* such studies remembered */
#define NODE_ALIVE_S "30"           /* a node whose last pass is older is taken for down */
#define HEARTBEAT_S 5.0             /* usv_node.last_seen is refreshed this often */
#define LOCK_KEY "7537566965770001" /* pg_advisory_xact_lock key of the migration */

/* Migrations: schema version i + 1 is reached by migrations[i]. */
static const char *const migrations[] = {
    "CREATE TABLE usv_log ("
    " id bigserial PRIMARY KEY,"
    " tx xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    " node text NOT NULL,"
    " kind text NOT NULL CHECK (kind IN ('instance', 'study')),"
    " study_uid text NOT NULL,"
    " line text NOT NULL);"
    "CREATE INDEX usv_log_tx ON usv_log (tx, id);"
    "CREATE UNIQUE INDEX usv_log_line ON usv_log (node, md5(line));"
    "CREATE TABLE usv_instance ("
    " sop_instance_uid text PRIMARY KEY,"
    " study_uid text NOT NULL,"
    " node text NOT NULL,"
    " spool_id text NOT NULL,"
    " outcome text NOT NULL,"
    " label text,"
    " top_label text,"
    " technologist_label text,"
    " agrees boolean,"
    " uncertain boolean NOT NULL,"
    " protocol text,"
    " time timestamptz NOT NULL,"
    " sig text NOT NULL,"
    " line text NOT NULL);"
    "CREATE INDEX usv_instance_study ON usv_instance (study_uid);"
    "CREATE TABLE usv_study ("
    " study_uid text PRIMARY KEY,"
    " seq bigint NOT NULL DEFAULT 0,"
    " written_seq bigint NOT NULL DEFAULT 0,"
    " revision integer NOT NULL DEFAULT 0,"
    " last_change timestamptz NOT NULL DEFAULT now(),"
    " written_time timestamptz);"
    "CREATE INDEX usv_study_dirty ON usv_study (last_change) WHERE seq > written_seq;"
    "CREATE TABLE usv_study_record ("
    " study_uid text NOT NULL,"
    " revision integer NOT NULL,"
    " time timestamptz NOT NULL DEFAULT now(),"
    " node text NOT NULL,"
    " line text NOT NULL,"
    " PRIMARY KEY (study_uid, revision));",
    /* 2: nodes' last pass, so that a study whose done instances are on
     * live nodes is left to them (they hold the study SR's source) */
    "CREATE TABLE IF NOT EXISTS usv_node ("
    " node text PRIMARY KEY,"
    " last_seen timestamptz NOT NULL);",
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])
_Static_assert(N_MIGRATIONS == USV_RESULTS_DB_SCHEMA, "one migration per schema version");

struct cursor {
	unsigned long long ino;
	unsigned long long off;
};

struct usv_results_db {
	struct usv_results_db_env env;
	char *dsn;
	char node[256];
	char dir[PATH_MAX];
	PGconn *pg;
	struct cursor cur;
	double retry_at, backoff;
	double beat_at; /* next usv_node heartbeat (monotonic) */
	char last_err[256];

	pthread_mutex_t mu; /* stats, wake flag */
	pthread_cond_t cv;
	struct usv_results_db_stats st;
	int wake, stop, have_thread;
	pthread_t thread;
	pthread_mutex_t run_mu; /* one pass at a time */
	char *buf;              /* READ_CHUNK + 1 */
	struct {
		char uid[128];
		double until; /* monotonic */
	} held[MAX_HELD];     /* studies whose record failed: skipped until then */
};

static void dlog(struct usv_results_db *db, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void dlog(struct usv_results_db *db, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!db->env.log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	db->env.log(db->env.ctx, level, buf);
}

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The first line of libpq's message, without its newline. */
static const char *pg_msg(PGconn *pg, const PGresult *res, char *buf, size_t len)
{
	const char *m = res ? PQresultErrorMessage(res) : NULL;
	if (!m || !*m)
		m = pg ? PQerrorMessage(pg) : "no connection";
	snprintf(buf, len, "%s", m && *m ? m : "unknown error");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

/* ---- statements --------------------------------------------------------- */

struct q {
	PGresult *res;
	char err[256];
};

/* Runs sql with n text parameters; 0 when it returned status ok (or
 * PGRES_COMMAND_OK/TUPLES_OK), else -EIO with q->err. q->res is kept for
 * the caller (PQclear through q_done). */
static int q_run(PGconn *pg, struct q *q, const char *sql, int n, const char *const *params)
{
	/* without parameters: the simple protocol (several statements) */
	q->res = n ? PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0) : PQexec(pg, sql);
	ExecStatusType s = PQresultStatus(q->res);
	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
		return 0;
	pg_msg(pg, q->res, q->err, sizeof q->err);
	return -EIO;
}

static void q_done(struct q *q)
{
	PQclear(q->res);
	q->res = NULL;
}

/* Runs sql and discards the result; -EIO with the message in err. */
static int exec1(PGconn *pg, const char *sql, int n, const char *const *params, char *err,
                 size_t errlen)
{
	struct q q = {0};
	int r = q_run(pg, &q, sql, n, params);
	if (r < 0)
		snprintf(err, errlen, "%s", q.err);
	q_done(&q);
	return r;
}

/* ---- connection and schema --------------------------------------------- */

static int migrate(PGconn *pg, char *err, size_t errlen)
{
	struct q q = {0};
	int r, version = 0;

	r = exec1(pg, "BEGIN", 0, NULL, err, errlen);
	if (r == 0)
		r = exec1(pg, "SELECT pg_advisory_xact_lock(" LOCK_KEY ")", 0, NULL, err, errlen);
	if (r == 0)
		r = exec1(pg, "CREATE TABLE IF NOT EXISTS usv_schema (version integer NOT NULL)", 0,
		          NULL, err, errlen);
	if (r == 0) {
		r = q_run(pg, &q, "SELECT version FROM usv_schema", 0, NULL);
		if (r < 0)
			snprintf(err, errlen, "%s", q.err);
		else if (PQntuples(q.res) > 0)
			version = atoi(PQgetvalue(q.res, 0, 0));
		q_done(&q);
	}
	if (r == 0 && version > USV_RESULTS_DB_SCHEMA) {
		snprintf(err, errlen,
		         "the database's schema version %d is newer than this usviewd's (%d): "
		         "upgrade usviewd",
		         version, USV_RESULTS_DB_SCHEMA);
		r = -EPROTO;
	}
	for (int v = version; r == 0 && v < USV_RESULTS_DB_SCHEMA; v++)
		r = exec1(pg, migrations[v], 0, NULL, err, errlen);
	if (r == 0 && version < USV_RESULTS_DB_SCHEMA) {
		char vs[16];
		const char *p[] = {vs};
		snprintf(vs, sizeof vs, "%d", USV_RESULTS_DB_SCHEMA);
		r = exec1(pg, "DELETE FROM usv_schema", 0, NULL, err, errlen);
		if (r == 0)
			r = exec1(pg, "INSERT INTO usv_schema (version) VALUES ($1::integer)", 1, p,
			          err, errlen);
	}
	if (r == 0)
		r = exec1(pg, "COMMIT", 0, NULL, err, errlen);
	else
		PQclear(PQexec(pg, "ROLLBACK"));
	return r;
}

/* Connects with defaults that keep a dead server from hanging a pass
 * (the connection string may override them). */
static PGconn *pg_connect(const char *dsn, const char *appname)
{
	const char *const keys[] = {
	    "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
	    "keepalives_count", "application_name", "dbname",          NULL};
	const char *const vals[] = {"5", "1", "10", "3", "3", appname, dsn, NULL};
	return PQconnectdbParams(keys, vals, 1);
}

static void db_drop(struct usv_results_db *db, const char *why);

static int db_connect(struct usv_results_db *db)
{
	char app[300], err[256] = "";
	int r;

	if (db->pg)
		return 0;
	snprintf(app, sizeof app, "usviewd %s", db->node);
	db->pg = pg_connect(db->dsn, app);
	if (!db->pg)
		return -ENOMEM;
	if (PQstatus(db->pg) != CONNECTION_OK) {
		pg_msg(db->pg, NULL, err, sizeof err);
		r = -ECONNREFUSED;
	} else {
		r = migrate(db->pg, err, sizeof err);
	}
	if (r < 0) {
		db_drop(db, err);
		return r;
	}
	dlog(db, LOG_NOTICE, "results database: connected as node %s (schema version %d)", db->node,
	     USV_RESULTS_DB_SCHEMA);
	db->last_err[0] = '\0';
	pthread_mutex_lock(&db->mu);
	db->st.up = 1;
	pthread_mutex_unlock(&db->mu);
	return 0;
}

/* Logs why (once while it stays the same), closes the connection, counts
 * an error. */
static void db_drop(struct usv_results_db *db, const char *why)
{
	if (db->pg) {
		if (strcmp(why, db->last_err) != 0)
			dlog(db, LOG_ERR,
			     "results database: %s; results wait in results.jsonl, retrying", why);
		snprintf(db->last_err, sizeof db->last_err, "%s", why);
		PQfinish(db->pg);
		db->pg = NULL;
	}
	pthread_mutex_lock(&db->mu);
	db->st.up = 0;
	db->st.errors++;
	pthread_mutex_unlock(&db->mu);
}

/* ---- cursor ------------------------------------------------------------ */

static int cursor_load(struct usv_results_db *db)
{
	char p[PATH_MAX + 32];
	FILE *f;

	snprintf(p, sizeof p, "%s/" CURSOR_FILE, db->dir);
	f = fopen(p, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	if (fscanf(f, "%llu %llu", &db->cur.ino, &db->cur.off) != 2)
		db->cur.ino = db->cur.off = 0; /* unreadable: copy again (no-ops) */
	fclose(f);
	return 0;
}

static int cursor_save(struct usv_results_db *db)
{
	char p[PATH_MAX + 32], t[PATH_MAX + 32];
	FILE *f;

	snprintf(p, sizeof p, "%s/" CURSOR_FILE, db->dir);
	snprintf(t, sizeof t, "%s/." CURSOR_FILE ".tmp", db->dir);
	f = fopen(t, "we");
	if (!f)
		return -errno;
	fprintf(f, "%llu %llu\n", db->cur.ino, db->cur.off);
	if (fclose(f) != 0 || rename(t, p) != 0) {
		int e = -errno;
		unlink(t);
		return e;
	}
	return 0;
}

/* results.jsonl (k = 0) or results.jsonl.k */
static void index_path(const struct usv_results_db *db, int k, char *p, size_t len)
{
	if (k == 0)
		snprintf(p, len, "%s/results.jsonl", db->dir);
	else
		snprintf(p, len, "%s/results.jsonl.%d", db->dir, k);
}

/* The index file that holds the cursor: *k (0 = current) and its size,
 * after moving the cursor where needed (first start: the oldest file;
 * a finished rotated file: the next newer one; a file rotated away:
 * the oldest one left, the loss counted). 0, or -ENOENT when there is
 * no results.jsonl yet. */
static int locate(struct usv_results_db *db, int *k, off_t *size)
{
	char p[PATH_MAX + 32];
	struct stat st;
	int oldest = 0;

	for (int pass = 0; pass < 2 * MAX_ROTATED + 4; pass++) {
		oldest = 0;
		for (int i = 0; i <= MAX_ROTATED; i++) {
			index_path(db, i, p, sizeof p);
			if (stat(p, &st) != 0) {
				if (i == 0)
					return -ENOENT;
				break;
			}
			oldest = i;
			if ((unsigned long long)st.st_ino == db->cur.ino) {
				if (i > 0 && db->cur.off >= (unsigned long long)st.st_size) {
					/* finished: the next newer file, from its start */
					struct stat nst;
					index_path(db, i - 1, p, sizeof p);
					if (stat(p, &nst) != 0)
						break; /* rotating right now: look again */
					db->cur.ino = (unsigned long long)nst.st_ino;
					db->cur.off = 0;
					goto again;
				}
				if (db->cur.off > (unsigned long long)st.st_size)
					db->cur.off = 0; /* truncated by hand: start over */
				*k = i;
				*size = st.st_size;
				return 0;
			}
		}
		/* not found: the first start, or rotated away */
		index_path(db, oldest, p, sizeof p);
		if (stat(p, &st) != 0)
			continue;
		if (db->cur.ino) {
			dlog(db, LOG_ERR,
			     "results database: the file holding the copy cursor was rotated away "
			     "before it was copied; lines are missing from the database "
			     "(spool.index_keep too small for the time the database was down)");
			pthread_mutex_lock(&db->mu);
			db->st.lost++;
			pthread_mutex_unlock(&db->mu);
		}
		db->cur.ino = (unsigned long long)st.st_ino;
		db->cur.off = 0;
	again:;
	}
	return -EAGAIN;
}

static void update_backlog(struct usv_results_db *db)
{
	char p[PATH_MAX + 32];
	struct stat st;
	uint64_t backlog = 0;
	int found = 0;

	int n = 0; /* rotated files: .1 .. .n */
	while (n < MAX_ROTATED) {
		index_path(db, n + 1, p, sizeof p);
		if (access(p, F_OK) != 0)
			break;
		n++;
	}
	/* oldest first: everything newer than the cursor's file counts */
	for (int i = n; i >= 0; i--) {
		index_path(db, i, p, sizeof p);
		if (stat(p, &st) != 0)
			continue;
		if ((unsigned long long)st.st_ino == db->cur.ino) {
			found = 1;
			if ((unsigned long long)st.st_size > db->cur.off)
				backlog += (uint64_t)st.st_size - db->cur.off;
		} else if (found) {
			backlog += (uint64_t)st.st_size;
		}
	}
	pthread_mutex_lock(&db->mu);
	db->st.backlog_bytes = backlog;
	pthread_mutex_unlock(&db->mu);
}

/* ---- copying ----------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

/* What the study record counts of an instance line. */
static void instance_sig(const cJSON *o, const char *top, char *sig, size_t len)
{
	const cJSON *agrees = cJSON_GetObjectItemCaseSensitive(o, "agrees");
	const cJSON *unc = cJSON_GetObjectItemCaseSensitive(o, "uncertain");
	snprintf(sig, len, "%s|%s|%s|%d|%s|%s|%s|%s", jstr(o, "study_uid"), jstr(o, "outcome"), top,
	         cJSON_IsTrue(unc), jstr(o, "technologist_label"),
	         cJSON_IsBool(agrees) ? (cJSON_IsTrue(agrees) ? "t" : "f") : "-",
	         jstr(o, "protocol"), jstr(o, "sop_class_uid"));
}

/* Copies one line inside the batch's transaction. 0 (copied or known),
 * 1 (a duplicate), -EIO. A line that is not an object with "kind" is
 * logged and skipped (0). */
static int copy_line(struct usv_results_db *db, const char *line, char *err, size_t errlen)
{
	cJSON *o = cJSON_Parse(line);
	struct q q = {0};
	int r = 0;

	if (!cJSON_IsObject(o)) {
		dlog(db, LOG_WARNING,
		     "results database: a line of results.jsonl is not JSON; skipped");
		cJSON_Delete(o);
		return 0;
	}
	const char *kind = jstr(o, "kind");
	if (!*kind)
		kind = "instance"; /* lines written before the QA keys */
	if (strcmp(kind, "instance") != 0) {
		/* study lines of the spool's own tracker (before this backend
		 * was chosen) are not copied: the database computes its own */
		cJSON_Delete(o);
		return 0;
	}
	const char *study = jstr(o, "study_uid"), *sop = jstr(o, "sop_instance_uid");
	const char *p1[] = {db->node, kind, study, line};
	r = q_run(db->pg, &q,
	          "INSERT INTO usv_log (node, kind, study_uid, line) VALUES ($1, $2, $3, $4) "
	          "ON CONFLICT (node, md5(line)) DO NOTHING",
	          4, p1);
	if (r == 0 && strcmp(PQcmdTuples(q.res), "0") == 0)
		r = 1; /* copied before */
	if (r < 0)
		snprintf(err, errlen, "%s", q.err);
	q_done(&q);
	if (r != 0 || !*study || !*sop) {
		cJSON_Delete(o);
		return r;
	}

	const cJSON *topk = cJSON_GetObjectItemCaseSensitive(o, "topk");
	const char *top = jstr(cJSON_GetArrayItem(topk, 0), "label");
	const cJSON *agrees = cJSON_GetObjectItemCaseSensitive(o, "agrees");
	const cJSON *proto = cJSON_GetObjectItemCaseSensitive(o, "protocol");
	char sig[1024], old_study[256] = "";
	int changed = 1;

	if (!strcmp(jstr(o, "outcome"), "done") && !*top)
		top = jstr(o, "label");
	instance_sig(o, top, sig, sizeof sig);
	const char *p2[] = {sop};
	r = q_run(db->pg, &q,
	          "SELECT sig, study_uid FROM usv_instance WHERE sop_instance_uid = $1 FOR UPDATE",
	          1, p2);
	if (r == 0 && PQntuples(q.res) > 0) {
		changed = strcmp(PQgetvalue(q.res, 0, 0), sig) != 0;
		snprintf(old_study, sizeof old_study, "%s", PQgetvalue(q.res, 0, 1));
	}
	if (r < 0)
		snprintf(err, errlen, "%s", q.err);
	q_done(&q);
	if (r == 0) {
		const char *time = jstr(o, "time");
		const char *p3[] = {
		    sop,
		    study,
		    db->node,
		    jstr(o, "spool_id"),
		    jstr(o, "outcome"),
		    jstr(o, "label"),
		    *top ? top : NULL,
		    *jstr(o, "technologist_label") ? jstr(o, "technologist_label") : NULL,
		    cJSON_IsBool(agrees) ? (cJSON_IsTrue(agrees) ? "true" : "false") : NULL,
		    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "uncertain")) ? "true"
		                                                                   : "false",
		    cJSON_IsString(proto) ? proto->valuestring : NULL,
		    *time ? time : "epoch",
		    sig,
		    line};
		r = exec1(db->pg,
		          "INSERT INTO usv_instance (sop_instance_uid, study_uid, node, spool_id, "
		          "outcome, label, top_label, technologist_label, agrees, uncertain, "
		          "protocol, time, sig, line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
		          "$9::boolean, $10::boolean, $11, $12::timestamptz, $13, $14) "
		          "ON CONFLICT (sop_instance_uid) DO UPDATE SET study_uid = "
		          "EXCLUDED.study_uid, node = EXCLUDED.node, spool_id = EXCLUDED.spool_id, "
		          "outcome = EXCLUDED.outcome, label = EXCLUDED.label, top_label = "
		          "EXCLUDED.top_label, technologist_label = EXCLUDED.technologist_label, "
		          "agrees = EXCLUDED.agrees, uncertain = EXCLUDED.uncertain, protocol = "
		          "EXCLUDED.protocol, time = EXCLUDED.time, sig = EXCLUDED.sig, line = "
		          "EXCLUDED.line",
		          14, p3, err, errlen);
	}
	const char *bump =
	    "INSERT INTO usv_study (study_uid, seq, last_change) VALUES ($1, 1, now()) "
	    "ON CONFLICT (study_uid) DO UPDATE SET seq = usv_study.seq + 1, "
	    "last_change = now()";
	if (r == 0 && changed) {
		const char *p4[] = {study};
		r = exec1(db->pg, bump, 1, p4, err, errlen);
	}
	if (r == 0 && changed && old_study[0] && strcmp(old_study, study) != 0) {
		const char *p5[] = {old_study}; /* it lost an instance */
		r = exec1(db->pg, bump, 1, p5, err, errlen);
	}
	cJSON_Delete(o);
	return r;
}

/* Takes the study rows of a batch's lines in UID order (no deadlocks
 * between nodes copying the same studies). */
static int lock_studies(struct usv_results_db *db, char **lines, size_t n, char *err, size_t errlen)
{
	cJSON *arr = cJSON_CreateArray();
	int r;

	if (!arr)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		/* cheap: the study UID without parsing the whole line */
		const char *s = strstr(lines[i], "\"study_uid\":\"");
		if (!s)
			continue;
		s += 13;
		size_t len = strcspn(s, "\"");
		if (len == 0 || len >= 128)
			continue;
		char uid[128];
		memcpy(uid, s, len);
		uid[len] = '\0';
		cJSON_AddItemToArray(arr, cJSON_CreateString(uid));
	}
	char *json = cJSON_PrintUnformatted(arr);
	cJSON_Delete(arr);
	if (!json)
		return -ENOMEM;
	const char *p[] = {json};
	/* new studies first (in UID order: an insert locks its row too),
	 * then every row of the batch in UID order */
	r = exec1(db->pg,
	          "INSERT INTO usv_study (study_uid) SELECT u FROM (SELECT DISTINCT "
	          "json_array_elements_text($1::json) AS u) s ORDER BY u ON CONFLICT DO NOTHING",
	          1, p, err, errlen);
	if (r == 0)
		r = exec1(db->pg,
		          "SELECT 1 FROM usv_study WHERE study_uid IN (SELECT "
		          "json_array_elements_text($1::json)) ORDER BY study_uid FOR UPDATE",
		          1, p, err, errlen);
	free(json);
	return r;
}

/* Copies the next batch of complete lines at the cursor. 0 with *n lines
 * (0: nothing new), or an error (the connection is then dropped). */
static int copy_batch(struct usv_results_db *db, unsigned *n)
{
	char p[PATH_MAX + 32], err[256] = "";
	char *lines[USV_RESULTS_DB_BATCH];
	size_t nl = 0, used = 0;
	off_t size;
	int k, r, fd;
	unsigned copied = 0, dups = 0;

	*n = 0;
	r = locate(db, &k, &size);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if ((unsigned long long)size <= db->cur.off)
		return 0;
	index_path(db, k, p, sizeof p);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -errno; /* rotated meanwhile: next pass */
	struct stat st;
	if (fstat(fd, &st) != 0 || (unsigned long long)st.st_ino != db->cur.ino) {
		close(fd);
		return 0;
	}
	ssize_t got = pread(fd, db->buf, READ_CHUNK, (off_t)db->cur.off);
	close(fd);
	if (got < 0)
		return -errno;
	db->buf[got] = '\0';
	while (nl < USV_RESULTS_DB_BATCH) {
		char *nlp = memchr(db->buf + used, '\n', (size_t)got - used);
		if (!nlp)
			break;
		*nlp = '\0';
		if (nlp > db->buf + used)
			lines[nl++] = db->buf + used;
		used = (size_t)(nlp - db->buf) + 1;
	}
	if (nl == 0 && used == 0) {
		if ((size_t)got >= READ_CHUNK) {
			/* a line longer than the reader takes: skip it */
			dlog(db, LOG_WARNING,
			     "results database: a line of %s over %u bytes skipped", p, READ_CHUNK);
			db->cur.off += (unsigned long long)got;
			return cursor_save(db);
		}
		return 0; /* a line still being written */
	}
	if (nl == 0) { /* only empty lines */
		db->cur.off += used;
		return cursor_save(db);
	}
	r = exec1(db->pg, "BEGIN", 0, NULL, err, sizeof err);
	if (r == 0)
		r = lock_studies(db, lines, nl, err, sizeof err);
	for (size_t i = 0; r == 0 && i < nl; i++) {
		int c = copy_line(db, lines[i], err, sizeof err);
		if (c < 0)
			r = c;
		else if (c == 1)
			dups++;
		else
			copied++;
	}
	if (r == 0)
		r = exec1(db->pg, "COMMIT", 0, NULL, err, sizeof err);
	if (r < 0) {
		if (PQstatus(db->pg) == CONNECTION_OK) {
			/* e.g. a deadlock or serialisation failure: the batch is
			 * tried again on the same connection */
			PQclear(PQexec(db->pg, "ROLLBACK"));
			dlog(db, LOG_WARNING, "results database: copy: %s; retrying",
			     err[0] ? err : usv_strerror(r));
			pthread_mutex_lock(&db->mu);
			db->st.errors++;
			pthread_mutex_unlock(&db->mu);
		} else {
			db_drop(db, err[0] ? err : usv_strerror(r));
		}
		return r;
	}
	db->cur.off += used;
	r = cursor_save(db);
	if (r < 0)
		dlog(db, LOG_WARNING,
		     "results database: %s/" CURSOR_FILE ": %s (lines will be "
		     "looked at again)",
		     db->dir, usv_strerror(r));
	pthread_mutex_lock(&db->mu);
	db->st.lines += copied;
	db->st.duplicates += dups;
	pthread_mutex_unlock(&db->mu);
	*n = (unsigned)nl;
	return 0;
}

/* ---- study records ------------------------------------------------------- */

/* Writes the record of one due study, if there is one. 1 written, 0 none
 * due, negative: error (rolled back). */
static int study_one(struct usv_results_db *db, int quiet)
{
	char qs[32], err[256] = "", uid[256] = "", *line = NULL;
	struct q q = {0};
	long long seq = 0;
	unsigned rev = 0;
	cJSON *state = NULL, *insts;
	int r;

	snprintf(qs, sizeof qs, "%d", quiet);
	cJSON *held = cJSON_CreateArray();
	double now = now_mono();
	for (int i = 0; held && i < MAX_HELD; i++)
		if (db->held[i].uid[0] && db->held[i].until > now)
			cJSON_AddItemToArray(held, cJSON_CreateString(db->held[i].uid));
	char *held_json = held ? cJSON_PrintUnformatted(held) : NULL;
	cJSON_Delete(held);
	if (!held_json)
		return -ENOMEM;
	r = exec1(db->pg, "BEGIN", 0, NULL, err, sizeof err);
	if (r < 0) {
		free(held_json);
		goto fail;
	}
	const char *p1[] = {qs, db->node, held_json};
	r = q_run(db->pg, &q,
	          "SELECT study_uid, seq, revision FROM usv_study s WHERE seq > written_seq AND "
	          "last_change <= now() - make_interval(secs => $1::integer) AND (EXISTS (SELECT 1 "
	          "FROM usv_instance i WHERE i.study_uid = s.study_uid AND i.node = $2 AND "
	          "i.outcome = 'done') OR NOT EXISTS (SELECT 1 FROM usv_instance i JOIN usv_node n "
	          "ON n.node = i.node WHERE i.study_uid = s.study_uid AND i.outcome = 'done' AND "
	          "n.last_seen > now() - make_interval(secs => " NODE_ALIVE_S "))) AND study_uid "
	          "NOT IN (SELECT json_array_elements_text($3::json)) ORDER BY last_change LIMIT 1 "
	          "FOR UPDATE SKIP LOCKED",
	          3, p1);
	free(held_json);
	if (r < 0) {
		snprintf(err, sizeof err, "%s", q.err);
		q_done(&q);
		goto fail;
	}
	if (PQntuples(q.res) == 0) {
		q_done(&q);
		r = exec1(db->pg, "COMMIT", 0, NULL, err, sizeof err);
		return r < 0 ? (db_drop(db, err), r) : 0;
	}
	snprintf(uid, sizeof uid, "%s", PQgetvalue(q.res, 0, 0));
	seq = atoll(PQgetvalue(q.res, 0, 1));
	rev = (unsigned)atoi(PQgetvalue(q.res, 0, 2)) + 1;
	q_done(&q);

	const char *p2[] = {uid};
	r = q_run(db->pg, &q,
	          "SELECT node, line FROM usv_instance WHERE study_uid = $1 ORDER BY time, "
	          "sop_instance_uid",
	          1, p2);
	if (r < 0) {
		snprintf(err, sizeof err, "%s", q.err);
		q_done(&q);
		goto fail;
	}
	state = cJSON_CreateObject();
	insts = state ? cJSON_AddArrayToObject(state, "instances") : NULL;
	if (!insts) {
		q_done(&q);
		r = -ENOMEM;
		goto fail;
	}
	cJSON_AddStringToObject(state, "study_uid", uid);
	for (int i = 0; i < PQntuples(q.res); i++) {
		cJSON *l = cJSON_Parse(PQgetvalue(q.res, i, 1));
		cJSON *it = l ? usv_study_instance_from_line(l) : NULL;
		cJSON_Delete(l);
		if (!it)
			continue;
		if (strcmp(PQgetvalue(q.res, i, 0), db->node) != 0) {
			/* another node's spool id means nothing here */
			cJSON_ReplaceItemInObjectCaseSensitive(it, "spool_id",
			                                       cJSON_CreateString(""));
		}
		cJSON_AddItemToArray(insts, it);
	}
	q_done(&q);
	r = usv_study_build_line(db->env.study, state, rev, now_wall(), &line);
	if (r < 0) {
		snprintf(err, sizeof err, "study %s: %s", uid, usv_strerror(r));
		goto fail;
	}
	char revs[16], seqs[32];
	snprintf(revs, sizeof revs, "%u", rev);
	snprintf(seqs, sizeof seqs, "%lld", seq);
	const char *p3[] = {uid, revs, db->node, line};
	r = exec1(db->pg,
	          "INSERT INTO usv_study_record (study_uid, revision, node, line) VALUES ($1, "
	          "$2::integer, $3, $4)",
	          4, p3, err, sizeof err);
	if (r == 0) {
		const char *p4[] = {db->node, uid, line};
		r = exec1(
		    db->pg,
		    "INSERT INTO usv_log (node, kind, study_uid, line) VALUES ($1, 'study', $2, "
		    "$3)",
		    3, p4, err, sizeof err);
	}
	if (r == 0) {
		const char *p5[] = {uid, revs, seqs};
		r = exec1(db->pg,
		          "UPDATE usv_study SET revision = $2::integer, written_seq = $3::bigint, "
		          "written_time = now() WHERE study_uid = $1",
		          3, p5, err, sizeof err);
	}
	if (r == 0)
		r = exec1(db->pg, "COMMIT", 0, NULL, err, sizeof err);
	if (r < 0)
		goto fail;
	free(line);
	cJSON_Delete(state);
	pthread_mutex_lock(&db->mu);
	db->st.studies++;
	pthread_mutex_unlock(&db->mu);
	return 1;
fail:
	free(line);
	cJSON_Delete(state);
	if (PQstatus(db->pg) != CONNECTION_OK) {
		db_drop(db, err[0] ? err : usv_strerror(r));
	} else {
		/* a statement failed (a lock conflict), or not the database (an
		 * outbox, memory): roll back, keep the connection, try again */
		PQclear(PQexec(db->pg, "ROLLBACK"));
		dlog(db, LOG_ERR, "results database: study record: %s; retrying in %.0f s",
		     err[0] ? err : usv_strerror(r), STUDY_RETRY_S);
		if (uid[0]) { /* the others go first meanwhile */
			int k = 0;
			for (int i = 1; i < MAX_HELD; i++)
				if (db->held[i].until < db->held[k].until)
					k = i;
			snprintf(db->held[k].uid, sizeof db->held[k].uid, "%s", uid);
			db->held[k].until = now_mono() + STUDY_RETRY_S;
		}
		pthread_mutex_lock(&db->mu);
		db->st.errors++;
		pthread_mutex_unlock(&db->mu);
	}
	return r;
}

/* ---- passes -------------------------------------------------------------- */

int usv_results_db_run(struct usv_results_db *db, unsigned *copied, unsigned *written)
{
	unsigned nc = 0, nw = 0;
	int r;

	if (copied)
		*copied = 0;
	if (written)
		*written = 0;
	if (!db)
		return -EINVAL;
	pthread_mutex_lock(&db->run_mu);
	r = db_connect(db);
	while (r == 0) {
		unsigned n;
		r = copy_batch(db, &n);
		nc += n;
		if (n == 0)
			break;
	}
	if (r == 0 && now_mono() >= db->beat_at) {
		char err[256] = "";
		const char *p[] = {db->node};
		r = exec1(db->pg,
		          "INSERT INTO usv_node (node, last_seen) VALUES ($1, now()) ON CONFLICT "
		          "(node) DO UPDATE SET last_seen = now()",
		          1, p, err, sizeof err);
		if (r < 0)
			db_drop(db, err);
		else
			db->beat_at = now_mono() + HEARTBEAT_S;
	}
	if (r == 0 && db->env.study) {
		int quiet = db->env.quiet_s ? db->env.quiet_s(db->env.ctx) : 300;
		for (int i = 0; i < STUDIES_PER_PASS; i++) {
			int w = study_one(db, quiet < 0 ? 0 : quiet);
			if (w <= 0) {
				if (w < 0)
					r = w;
				break;
			}
			nw++;
		}
	}
	update_backlog(db);
	pthread_mutex_unlock(&db->run_mu);
	if (copied)
		*copied = nc;
	if (written)
		*written = nw;
	return r;
}

static void *db_thread(void *arg)
{
	struct usv_results_db *db = arg;

	for (;;) {
		pthread_mutex_lock(&db->mu);
		while (!db->stop && !db->wake) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			if (pthread_cond_timedwait(&db->cv, &db->mu, &ts) == ETIMEDOUT)
				break;
		}
		int stop = db->stop;
		db->wake = 0;
		pthread_mutex_unlock(&db->mu);
		if (stop)
			break;
		if (now_mono() < db->retry_at)
			continue;
		int r = usv_results_db_run(db, NULL, NULL);
		if (r < 0 && !db->pg) {
			db->backoff = db->backoff > 0 ? db->backoff * 2 : 1.0;
			if (db->backoff > RETRY_MAX_S)
				db->backoff = RETRY_MAX_S;
			db->retry_at = now_mono() + db->backoff;
		} else {
			db->backoff = 0;
			db->retry_at = 0;
		}
	}
	return NULL;
}

int usv_results_db_open(const struct usv_results_db_env *env, struct usv_results_db **out,
                        char *errbuf, size_t errlen)
{
	struct usv_results_db *db;
	int r;

	if (!env || !env->spool_dir || !env->dsn || !*env->dsn || !out)
		return usv_seterr(errbuf, errlen, -EINVAL, "results database: invalid arguments");
	db = calloc(1, sizeof *db);
	if (!db)
		return usv_seterr(errbuf, errlen, -ENOMEM, "results database: out of memory");
	db->env = *env;
	db->env.spool_dir = NULL;
	db->env.dsn = NULL;
	db->env.node = NULL;
	db->dsn = strdup(env->dsn);
	db->buf = malloc(READ_CHUNK + 1);
	pthread_mutex_init(&db->mu, NULL);
	pthread_mutex_init(&db->run_mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&db->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (!db->dsn || !db->buf) {
		usv_results_db_free(db);
		return usv_seterr(errbuf, errlen, -ENOMEM, "results database: out of memory");
	}
	if (snprintf(db->dir, sizeof db->dir, "%s", env->spool_dir) >= (int)sizeof db->dir) {
		usv_results_db_free(db);
		return usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: path too long",
		                  env->spool_dir);
	}
	if (env->node && *env->node)
		snprintf(db->node, sizeof db->node, "%s", env->node);
	else if (gethostname(db->node, sizeof db->node - 1) != 0 || !db->node[0])
		snprintf(db->node, sizeof db->node, "usviewd");
	r = cursor_load(db);
	if (r < 0) {
		usv_seterr(errbuf, errlen, r, "%s/" CURSOR_FILE ": %s", db->dir, usv_strerror(r));
		usv_results_db_free(db);
		return r;
	}
	update_backlog(db);
	if (!env->no_thread) {
		r = -pthread_create(&db->thread, NULL, db_thread, db);
		if (r < 0) {
			usv_seterr(errbuf, errlen, r, "results database: thread: %s",
			           usv_strerror(r));
			usv_results_db_free(db);
			return r;
		}
		db->have_thread = 1;
	}
	*out = db;
	return 0;
}

void usv_results_db_wake(struct usv_results_db *db)
{
	if (!db)
		return;
	pthread_mutex_lock(&db->mu);
	db->wake = 1;
	pthread_cond_signal(&db->cv);
	pthread_mutex_unlock(&db->mu);
}

void usv_results_db_stats(struct usv_results_db *db, struct usv_results_db_stats *st)
{
	if (!st)
		return;
	memset(st, 0, sizeof *st);
	if (!db)
		return;
	pthread_mutex_lock(&db->mu);
	*st = db->st;
	pthread_mutex_unlock(&db->mu);
}

void usv_results_db_free(struct usv_results_db *db)
{
	if (!db)
		return;
	if (db->have_thread) {
		pthread_mutex_lock(&db->mu);
		db->stop = 1;
		pthread_cond_signal(&db->cv);
		pthread_mutex_unlock(&db->mu);
		pthread_join(db->thread, NULL);
	}
	if (db->pg)
		PQfinish(db->pg);
	pthread_cond_destroy(&db->cv);
	pthread_mutex_destroy(&db->mu);
	pthread_mutex_destroy(&db->run_mu);
	free(db->dsn);
	free(db->buf);
	free(db);
}

/* ---- reader ----------------------------------------------------------- */

struct usv_results_db_reader {
	char *dsn;
	PGconn *pg;
	char tx[32]; /* the last row read: (tx, id) */
	char id[32];
};

int usv_results_db_reader_new(const char *dsn, struct usv_results_db_reader **out)
{
	struct usv_results_db_reader *rd;

	if (!dsn || !out)
		return -EINVAL;
	rd = calloc(1, sizeof *rd);
	if (!rd || !(rd->dsn = strdup(dsn))) {
		free(rd);
		return -ENOMEM;
	}
	snprintf(rd->tx, sizeof rd->tx, "0");
	snprintf(rd->id, sizeof rd->id, "0");
	*out = rd;
	return 0;
}

int usv_results_db_reader_next(struct usv_results_db_reader *rd, size_t max,
                               void (*take)(void *ctx, const char *line, size_t len), void *ctx,
                               char *errbuf, size_t errlen)
{
	char lim[32];

	if (!rd || !take)
		return -EINVAL;
	snprintf(lim, sizeof lim, "%zu", max ? max : 1);
	/* a connection the server dropped (a restart) fails its next query:
	 * one new connection is tried at once, so the caller sees the
	 * database's current state, not the error */
	for (int attempt = 0; attempt < 2; attempt++) {
		struct q q = {0};
		int fresh = !rd->pg;
		if (!rd->pg) {
			rd->pg = pg_connect(rd->dsn, "usviewd QA page");
			if (!rd->pg)
				return -ENOMEM;
			if (PQstatus(rd->pg) != CONNECTION_OK) {
				char m[256];
				usv_seterr(errbuf, errlen, -EIO, "results database: %s",
				           pg_msg(rd->pg, NULL, m, sizeof m));
				PQfinish(rd->pg);
				rd->pg = NULL;
				return -EIO;
			}
		}
		const char *p[] = {rd->tx, rd->id, lim};
		if (q_run(rd->pg, &q,
		          "SELECT tx::text, id, line FROM usv_log WHERE (tx, id) > ($1::xid8, "
		          "$2::bigint) AND tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY "
		          "tx, id LIMIT $3::integer",
		          3, p) < 0) {
			usv_seterr(errbuf, errlen, -EIO, "results database: %s", q.err);
			q_done(&q);
			PQfinish(rd->pg);
			rd->pg = NULL;
			if (fresh)
				return -EIO; /* a new connection failed: no second try */
			continue;
		}
		int n = PQntuples(q.res);
		for (int i = 0; i < n; i++)
			take(ctx, PQgetvalue(q.res, i, 2), (size_t)PQgetlength(q.res, i, 2));
		if (n > 0) {
			snprintf(rd->tx, sizeof rd->tx, "%s", PQgetvalue(q.res, n - 1, 0));
			snprintf(rd->id, sizeof rd->id, "%s", PQgetvalue(q.res, n - 1, 1));
		}
		q_done(&q);
		return n;
	}
	return -EIO;
}

void usv_results_db_reader_free(struct usv_results_db_reader *rd)
{
	if (!rd)
		return;
	if (rd->pg)
		PQfinish(rd->pg);
	free(rd->dsn);
	free(rd);
}
