/*
 * NAME
 *	test_dcm_scp.c - the storage SCP (dcm_scp.cpp) through its C API
 *
 * DESCRIPTION
 *	Starts usv_scp on a loopback port with a sink that writes into a
 *	private temporary folder (tmp/ and incoming/ as in the spool) and
 *	talks to it with the SCU of dcm_scu.h and, where the SCU cannot
 *	hold an association open, with a hand-made A-ASSOCIATE-RQ on a raw
 *	socket. Checked:
 *	- configuration checks (ranges, AE title, sink, bind address);
 *	- C-ECHO is answered and reported (on_assoc, statistics);
 *	- C-STORE of a real file ($USV_SHARED_DIR/data/dicom/us): the sink
 *	  holds the data set byte for byte as in the source (behind a new
 *	  meta header), on_stored / on_instance / on_assoc carry the right
 *	  UIDs, AE titles, address, sizes and status, tmp/ is left empty;
 *	- a wrong called AE, a calling AE missing from the allowed peers, and
 *	  a listed AE from another address are refused, and the records say
 *	  why; usv_scp_set_access changes the decision of a running SCP;
 *	- a failing sink (commit, tmp file, low space) answers 0xA700, never
 *	  success, stores nothing and leaves no file behind;
 *	- max_assoc: with every worker holding an association a further one
 *	  is rejected "local limit exceeded", and accepted again once a
 *	  worker is free;
 *	- several SCUs storing at once (run by the ThreadSanitizer build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "usv/dcm_scp.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define US_IMAGE_STORAGE "1.2.840.10008.5.1.4.1.1.6.1"
/* A real US image whose data set is already encoded as DCMTK's SCU sends it
 * (no undefined-length sequences, no group lengths), so that the bytes the
 * SCP stores can be compared with the file's. */
#define SAMPLE_FILE "data/dicom/us/pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm"
#define MAX_RECORDS 64

/* ---- the sink: tmp/ and incoming/ under a private folder ---- */

struct sink_state {
	char dir[512];
	pthread_mutex_t mu;
	int n_tmp, n_commit, n_discard, n_low, next_id;
	int fail_tmp, fail_commit, low; /* what the next calls do */
};

static struct sink_state sink_st = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int sink_tmp_create(void *ctx, char *path, size_t pathlen)
{
	struct sink_state *s = ctx;
	int fail;

	pthread_mutex_lock(&s->mu);
	s->n_tmp++;
	fail = s->fail_tmp;
	pthread_mutex_unlock(&s->mu);
	if (fail)
		return -ENOSPC;
	if ((size_t)snprintf(path, pathlen, "%s/tmp/rcv-XXXXXX", s->dir) >= pathlen)
		return -ENAMETOOLONG;
	int fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static int sink_commit(void *ctx, const char *tmp_path, char *id, size_t idlen)
{
	struct sink_state *s = ctx;
	char dst[PATH_MAX];
	int fail, n;

	pthread_mutex_lock(&s->mu);
	s->n_commit++;
	fail = s->fail_commit;
	n = s->next_id++;
	pthread_mutex_unlock(&s->mu);
	if (fail)
		return -EIO;
	snprintf(id, idlen, "inst-%03d", n);
	snprintf(dst, sizeof dst, "%s/incoming/%s.dcm", s->dir, id);
	if (rename(tmp_path, dst))
		return -errno;
	return 0;
}

static void sink_discard(void *ctx, const char *tmp_path)
{
	struct sink_state *s = ctx;

	pthread_mutex_lock(&s->mu);
	s->n_discard++;
	pthread_mutex_unlock(&s->mu);
	unlink(tmp_path);
}

static int sink_low_space(void *ctx, uint64_t watermark)
{
	struct sink_state *s = ctx;
	int low;

	pthread_mutex_lock(&s->mu);
	s->n_low++;
	low = s->low && watermark > 0;
	pthread_mutex_unlock(&s->mu);
	return low;
}

static const usv_scp_sink sink = {
    .ctx = &sink_st,
    .tmp_create = sink_tmp_create,
    .commit = sink_commit,
    .discard = sink_discard,
    .low_space = sink_low_space,
};

/* ---- the callbacks: copies of every record, under one lock ---- */

struct assoc_rec {
	char peer[64], calling[17], called[17], outcome[256];
	int accepted;
	unsigned n_stored, n_failed, n_echo;
	uint64_t bytes;
};

struct inst_rec {
	char peer[64], calling[17], sop_class[65], sop_instance[65], spool_id[64], detail[256];
	uint64_t bytes;
	unsigned status;
};

struct stored_rec {
	char id[64], sop_class[65], sop_instance[65], ts[65], calling[17], called[17], peer[64];
	uint64_t bytes;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n_assoc, n_inst, n_stored;
	struct assoc_rec assoc[MAX_RECORDS];
	struct inst_rec inst[MAX_RECORDS];
	struct stored_rec stored[MAX_RECORDS];
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "(null)");
}

static int on_stored(void *ctx, const char *spool_id, const usv_stored_info *info)
{
	(void)ctx;
	pthread_mutex_lock(&rec.mu);
	if (rec.n_stored < MAX_RECORDS) {
		struct stored_rec *r = &rec.stored[rec.n_stored];
		copy(r->id, sizeof r->id, spool_id);
		copy(r->sop_class, sizeof r->sop_class, info->sop_class_uid);
		copy(r->sop_instance, sizeof r->sop_instance, info->sop_instance_uid);
		copy(r->ts, sizeof r->ts, info->transfer_syntax);
		copy(r->calling, sizeof r->calling, info->calling_aet);
		copy(r->called, sizeof r->called, info->called_aet);
		copy(r->peer, sizeof r->peer, info->peer_addr);
		r->bytes = info->bytes;
	}
	rec.n_stored++;
	pthread_cond_broadcast(&rec.cv);
	pthread_mutex_unlock(&rec.mu);
	return 0;
}

static void on_assoc(void *ctx, const usv_scp_assoc_record *a)
{
	(void)ctx;
	pthread_mutex_lock(&rec.mu);
	if (rec.n_assoc < MAX_RECORDS) {
		struct assoc_rec *r = &rec.assoc[rec.n_assoc];
		copy(r->peer, sizeof r->peer, a->peer_addr);
		copy(r->calling, sizeof r->calling, a->calling_aet);
		copy(r->called, sizeof r->called, a->called_aet);
		copy(r->outcome, sizeof r->outcome, a->outcome);
		r->accepted = a->accepted;
		r->n_stored = a->n_stored;
		r->n_failed = a->n_failed;
		r->n_echo = a->n_echo;
		r->bytes = a->bytes;
	}
	rec.n_assoc++;
	pthread_cond_broadcast(&rec.cv);
	pthread_mutex_unlock(&rec.mu);
}

static void on_instance(void *ctx, const usv_scp_instance_record *i)
{
	(void)ctx;
	pthread_mutex_lock(&rec.mu);
	if (rec.n_inst < MAX_RECORDS) {
		struct inst_rec *r = &rec.inst[rec.n_inst];
		copy(r->peer, sizeof r->peer, i->peer_addr);
		copy(r->calling, sizeof r->calling, i->calling_aet);
		copy(r->sop_class, sizeof r->sop_class, i->sop_class_uid);
		copy(r->sop_instance, sizeof r->sop_instance, i->sop_instance_uid);
		copy(r->spool_id, sizeof r->spool_id, i->spool_id);
		copy(r->detail, sizeof r->detail, i->detail);
		r->bytes = i->bytes;
		r->status = i->status;
	}
	rec.n_inst++;
	pthread_cond_broadcast(&rec.cv);
	pthread_mutex_unlock(&rec.mu);
}

static const usv_scp_callbacks cbs = {
    .ctx = NULL,
    .on_stored = on_stored,
    .on_assoc = on_assoc,
    .on_instance = on_instance,
};

/* Waits until at least n association records exist (10 s at most); returns
 * the count. on_assoc fires after the association ends, which may be a
 * little after the SCU has returned. */
static int wait_assoc(int n)
{
	struct timespec until;
	int got;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&rec.mu);
	while (rec.n_assoc < n)
		if (pthread_cond_timedwait(&rec.cv, &rec.mu, &until) == ETIMEDOUT)
			break;
	got = rec.n_assoc;
	pthread_mutex_unlock(&rec.mu);
	return got;
}

/* ---- files and folders ---- */

static const char *shared(void)
{
	const char *s = getenv("USV_SHARED_DIR");
	return s ? s : "../shared";
}

static int count_files(const char *sub)
{
	char path[PATH_MAX];
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof path, "%s/%s", sink_st.dir, sub);
	DIR *d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void remove_files(const char *sub)
{
	char path[PATH_MAX];
	struct dirent *e;

	snprintf(path, sizeof path, "%s/%s", sink_st.dir, sub);
	DIR *d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			char f[PATH_MAX + 256];
			snprintf(f, sizeof f, "%s/%s", path, e->d_name);
			unlink(f);
		}
	closedir(d);
}

static unsigned char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	unsigned char *b = malloc((size_t)n);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/*
 * Part-10 meta header (explicit VR little endian, group 0002) of a file:
 * returns the offset of the data set behind it and copies the Media Storage
 * SOP Instance UID and the Transfer Syntax UID. An independent reading of
 * the bytes, so that the SCP's output is not checked with its own parser.
 */
static size_t meta_end(const unsigned char *b, size_t len, char *inst, char *ts)
{
	size_t p = 132;

	assert_true(len > 132 && memcmp(b + 128, "DICM", 4) == 0);
	while (p + 8 <= len && (b[p] | b[p + 1] << 8) == 0x0002) {
		unsigned el = b[p + 2] | b[p + 3] << 8;
		char vr[3] = {(char)b[p + 4], (char)b[p + 5], 0};
		size_t vlen, hdr;
		if (!strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "UN") ||
		    !strcmp(vr, "SQ") || !strcmp(vr, "UT")) {
			assert_true(p + 12 <= len);
			vlen = (size_t)b[p + 8] | (size_t)b[p + 9] << 8 | (size_t)b[p + 10] << 16 |
			       (size_t)b[p + 11] << 24;
			hdr = 12;
		} else {
			vlen = (size_t)(b[p + 6] | b[p + 7] << 8);
			hdr = 8;
		}
		assert_true(p + hdr + vlen <= len);
		char *dst = el == 0x0003 ? inst : el == 0x0010 ? ts : NULL;
		if (dst) {
			assert_true(vlen <= 64);
			size_t n = vlen;
			memcpy(dst, b + p + hdr, n);
			dst[n] = 0;
			while (n > 0 && (dst[n - 1] == 0 || dst[n - 1] == ' '))
				dst[--n] = 0;
		}
		p += hdr + vlen;
	}
	return p;
}

/* ---- SCP and SCU set-up ---- */

static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void base_config(usv_scp_config *cfg)
{
	usv_scp_config_init(cfg);
	cfg->bind_addr = "127.0.0.1";
	cfg->aet = "USVIEW";
	cfg->acse_timeout_s = 5;
	cfg->dimse_timeout_s = 20;
}

/* Starts the SCP on a free loopback port (cfg->port is set). */
static usv_scp *start(usv_scp_config *cfg)
{
	char err[USV_ERRBUF] = "";
	usv_scp *scp = NULL;
	int rc = -EADDRINUSE;

	for (int i = 0; i < 20 && rc == -EADDRINUSE; i++) {
		cfg->port = free_port();
		rc = usv_scp_start(cfg, &cbs, &sink, &scp, err, sizeof err);
	}
	if (rc)
		fail_msg("usv_scp_start: %s (%s)", err, usv_strerror(rc));
	return scp;
}

static usv_scu_peer peer_of(const usv_scp_config *cfg, const char *called, const char *calling)
{
	usv_scu_peer p;

	memset(&p, 0, sizeof p);
	p.called_ae = called;
	p.host = "127.0.0.1";
	p.port = (uint16_t)cfg->port;
	p.calling_ae = calling;
	p.acse_timeout_s = 5;
	p.dimse_timeout_s = 20;
	return p;
}

/* Clears records, sink behaviour and folders before each test. */
static int reset(void **state)
{
	(void)state;
	pthread_mutex_lock(&rec.mu);
	rec.n_assoc = rec.n_inst = rec.n_stored = 0;
	pthread_mutex_unlock(&rec.mu);
	pthread_mutex_lock(&sink_st.mu);
	sink_st.n_tmp = sink_st.n_commit = sink_st.n_discard = sink_st.n_low = 0;
	sink_st.fail_tmp = sink_st.fail_commit = sink_st.low = 0;
	pthread_mutex_unlock(&sink_st.mu);
	remove_files("tmp");
	remove_files("incoming");
	return 0;
}

/* ---- tests ---- */

static void test_config_checks(void **state)
{
	usv_scp_config cfg;
	usv_scp *scp = NULL;
	char err[USV_ERRBUF];
	(void)state;

	usv_scp_config_init(&cfg);
	assert_int_equal(cfg.port, 11112);
	assert_string_equal(cfg.aet, "USVIEW");
	assert_int_equal(cfg.max_assoc, 4);
	assert_int_equal(cfg.acse_timeout_s, 10);
	assert_int_equal(cfg.dimse_timeout_s, 60);
	assert_int_equal(cfg.max_pdu, 65536);
	assert_int_equal(cfg.npeers, 0);
	assert_true(cfg.min_free_bytes == 0);

	struct {
		int port, max_assoc, acse, dimse;
		unsigned max_pdu;
		const char *aet, *bind;
	} bad[] = {
	    {0, 4, 10, 60, 65536, "USVIEW", NULL},
	    {65536, 4, 10, 60, 65536, "USVIEW", NULL},
	    {11112, 0, 10, 60, 65536, "USVIEW", NULL},
	    {11112, 65, 10, 60, 65536, "USVIEW", NULL},
	    {11112, 4, 0, 60, 65536, "USVIEW", NULL},
	    {11112, 4, 10, 3601, 65536, "USVIEW", NULL},
	    {11112, 4, 10, 60, 4095, "USVIEW", NULL},
	    {11112, 4, 10, 60, 131073, "USVIEW", NULL},
	    {11112, 4, 10, 60, 65536, "", NULL},
	    {11112, 4, 10, 60, 65536, "SEVENTEEN_CHARS_X", NULL},
	    {11112, 4, 10, 60, 65536, "A\\B", NULL},
	    {11112, 4, 10, 60, 65536, NULL, NULL},
	    {free_port(), 4, 10, 60, 65536, "USVIEW", "localhost"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		usv_scp_config_init(&cfg);
		cfg.port = bad[i].port;
		cfg.max_assoc = bad[i].max_assoc;
		cfg.acse_timeout_s = bad[i].acse;
		cfg.dimse_timeout_s = bad[i].dimse;
		cfg.max_pdu = bad[i].max_pdu;
		cfg.aet = bad[i].aet;
		cfg.bind_addr = bad[i].bind;
		err[0] = 0;
		assert_int_equal(usv_scp_start(&cfg, &cbs, &sink, &scp, err, sizeof err), -EINVAL);
		assert_null(scp);
		assert_true(err[0] != 0);
	}

	/* every sink function is required */
	base_config(&cfg);
	cfg.port = free_port();
	usv_scp_sink partial = sink;
	partial.commit = NULL;
	assert_int_equal(usv_scp_start(&cfg, &cbs, &partial, &scp, err, sizeof err), -EINVAL);
	assert_int_equal(usv_scp_start(&cfg, &cbs, NULL, &scp, err, sizeof err), -EINVAL);
	/* extra SOP classes must be UIDs */
	const char *extra[] = {"1.2.3", "not.a.uid"};
	cfg.extra_sop_classes = extra;
	cfg.nextra = 2;
	assert_int_equal(usv_scp_start(&cfg, &cbs, &sink, &scp, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "not.a.uid"));
	assert_null(scp);
	/* a busy port is reported as such */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fd, 1), 0);
	cfg.nextra = 0;
	assert_int_equal(usv_scp_start(&cfg, &cbs, &sink, &scp, err, sizeof err), -EADDRINUSE);
	assert_null(scp);
	close(fd);
	usv_scp_stop(NULL);
}

static void test_echo(void **state)
{
	usv_scp_config cfg;
	usv_scu_result res;
	usv_scp_stats st;
	char err[USV_ERRBUF];
	(void)state;

	base_config(&cfg);
	usv_scp *scp = start(&cfg);
	usv_scu_peer p = peer_of(&cfg, "USVIEW", "TESTSCU");
	assert_int_equal(usv_scu_echo(&p, &res, err, sizeof err), 0);
	assert_int_equal(res.outcome, USV_SCU_SUCCESS);
	assert_int_equal(res.status, 0);
	assert_int_equal(wait_assoc(1), 1);
	usv_scp_get_stats(scp, &st);
	usv_scp_stop(scp);

	assert_true(st.echo == 1 && st.assoc_accepted == 1 && st.assoc_rejected == 0);
	assert_true(st.stored == 0 && st.store_failed == 0);
	assert_int_equal(rec.n_assoc, 1);
	assert_int_equal(rec.n_inst, 0);
	assert_int_equal(rec.assoc[0].accepted, 1);
	assert_string_equal(rec.assoc[0].outcome, "released");
	assert_string_equal(rec.assoc[0].calling, "TESTSCU");
	assert_string_equal(rec.assoc[0].called, "USVIEW");
	assert_string_equal(rec.assoc[0].peer, "127.0.0.1");
	assert_int_equal(rec.assoc[0].n_echo, 1);
	assert_int_equal(rec.assoc[0].n_stored, 0);
	assert_int_equal(sink_st.n_tmp, 0);
}

static void test_store(void **state)
{
	usv_scp_config cfg;
	usv_scu_result res;
	usv_scp_stats st;
	char err[USV_ERRBUF], src[PATH_MAX], dst[PATH_MAX];
	char src_inst[65] = "", src_ts[65] = "", dst_inst[65] = "", dst_ts[65] = "";
	size_t slen, dlen;
	(void)state;

	snprintf(src, sizeof src, "%s/%s", shared(), SAMPLE_FILE);
	unsigned char *sb = read_all(src, &slen);
	size_t soff = meta_end(sb, slen, src_inst, src_ts);
	assert_true(src_inst[0] && src_ts[0]);

	base_config(&cfg);
	usv_scp *scp = start(&cfg);
	usv_scu_peer p = peer_of(&cfg, "USVIEW", "MODALITY1");
	assert_int_equal(usv_scu_store(&p, src, &res, err, sizeof err), 0);
	assert_int_equal(res.outcome, USV_SCU_SUCCESS);
	assert_int_equal(res.status, 0);
	assert_int_equal(wait_assoc(1), 1);
	usv_scp_get_stats(scp, &st);
	usv_scp_stop(scp);

	/* what reached the sink: one committed file, nothing left in tmp/ */
	assert_int_equal(count_files("incoming"), 1);
	assert_int_equal(count_files("tmp"), 0);
	assert_int_equal(sink_st.n_tmp, 1);
	assert_int_equal(sink_st.n_commit, 1);
	assert_int_equal(sink_st.n_discard, 0);
	assert_int_equal(rec.n_stored, 1);
	snprintf(dst, sizeof dst, "%s/incoming/%s.dcm", sink_st.dir, rec.stored[0].id);
	unsigned char *db = read_all(dst, &dlen);
	size_t doff = meta_end(db, dlen, dst_inst, dst_ts);
	assert_string_equal(dst_inst, src_inst);
	assert_string_equal(dst_ts, src_ts);
	/* the data set itself is byte-identical */
	assert_int_equal(dlen - doff, slen - soff);
	assert_memory_equal(db + doff, sb + soff, slen - soff);

	/* on_stored */
	const struct stored_rec *s = &rec.stored[0];
	assert_string_equal(s->id, "inst-000");
	assert_string_equal(s->sop_class, US_IMAGE_STORAGE);
	assert_string_equal(s->sop_instance, src_inst);
	assert_string_equal(s->ts, src_ts);
	assert_string_equal(s->calling, "MODALITY1");
	assert_string_equal(s->called, "USVIEW");
	assert_string_equal(s->peer, "127.0.0.1");
	assert_int_equal(s->bytes, dlen);
	/* on_instance */
	assert_int_equal(rec.n_inst, 1);
	const struct inst_rec *in = &rec.inst[0];
	assert_int_equal(in->status, 0);
	assert_string_equal(in->spool_id, s->id);
	assert_string_equal(in->sop_class, US_IMAGE_STORAGE);
	assert_string_equal(in->sop_instance, src_inst);
	assert_string_equal(in->calling, "MODALITY1");
	assert_string_equal(in->peer, "127.0.0.1");
	assert_string_equal(in->detail, "");
	assert_int_equal(in->bytes, dlen);
	/* on_assoc and the counters */
	const struct assoc_rec *a = &rec.assoc[0];
	assert_int_equal(a->accepted, 1);
	assert_string_equal(a->outcome, "released");
	assert_int_equal(a->n_stored, 1);
	assert_int_equal(a->n_failed, 0);
	assert_int_equal(a->bytes, dlen);
	assert_true(st.stored == 1 && st.store_failed == 0 && st.bytes == dlen);
	assert_true(st.assoc_accepted == 1 && st.assoc_rejected == 0);
	free(sb);
	free(db);
}

/* Index of the first association record from calling AE ae that was
 * accepted (accepted = 1) or not (0), or -1. */
static int assoc_find(const char *ae, int accepted)
{
	int found = -1;

	pthread_mutex_lock(&rec.mu);
	for (int i = 0; i < rec.n_assoc && i < MAX_RECORDS && found < 0; i++)
		if (!strcmp(rec.assoc[i].calling, ae) && rec.assoc[i].accepted == accepted)
			found = i;
	pthread_mutex_unlock(&rec.mu);
	return found;
}

/* Sets what the sink's next calls do (read by the SCP's threads). */
static void sink_set(int fail_tmp, int fail_commit, int low)
{
	pthread_mutex_lock(&sink_st.mu);
	sink_st.fail_tmp = fail_tmp;
	sink_st.fail_commit = fail_commit;
	sink_st.low = low;
	pthread_mutex_unlock(&sink_st.mu);
}

static void test_reject_called_ae(void **state)
{
	usv_scp_config cfg;
	usv_scu_result res;
	usv_scp_stats st;
	char err[USV_ERRBUF], src[PATH_MAX];
	(void)state;

	base_config(&cfg);
	usv_scp *scp = start(&cfg);
	usv_scu_peer p = peer_of(&cfg, "NOTUSVIEW", "TESTSCU");
	assert_int_equal(usv_scu_echo(&p, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(res.outcome, USV_SCU_RETRY);
	assert_int_equal(res.status, USV_SCU_NO_STATUS);
	snprintf(src, sizeof src, "%s/%s", shared(), SAMPLE_FILE);
	assert_true(usv_scu_store(&p, src, &res, err, sizeof err) != 0);
	assert_int_not_equal(res.outcome, USV_SCU_SUCCESS);
	assert_int_equal(wait_assoc(2), 2);
	usv_scp_get_stats(scp, &st);
	usv_scp_stop(scp);

	for (int i = 0; i < 2; i++) {
		assert_int_equal(rec.assoc[i].accepted, 0);
		assert_string_equal(rec.assoc[i].outcome,
		                    "rejected: called AE title not recognised: NOTUSVIEW");
		assert_string_equal(rec.assoc[i].called, "NOTUSVIEW");
		assert_string_equal(rec.assoc[i].calling, "TESTSCU");
		assert_int_equal(rec.assoc[i].n_echo, 0);
	}
	assert_true(st.assoc_rejected == 2 && st.assoc_accepted == 0 && st.echo == 0);
	assert_int_equal(rec.n_inst, 0);
	assert_int_equal(rec.n_stored, 0);
	assert_int_equal(sink_st.n_tmp, 0);
	assert_int_equal(count_files("incoming"), 0);
}

static void test_reject_calling_ae(void **state)
{
	usv_scp_config cfg;
	usv_scu_result res;
	usv_scp_stats st;
	char err[USV_ERRBUF], src[PATH_MAX];
	usv_scp_peer peers[2];
	(void)state;

	memset(peers, 0, sizeof peers);
	strcpy(peers[0].aet, "MODALITY"); /* from anywhere */
	strcpy(peers[1].aet, "ULTRA");    /* only from another address */
	strcpy(peers[1].addr, "192.0.2.7");
	base_config(&cfg);
	cfg.peers = peers;
	cfg.npeers = 2;
	usv_scp *scp = start(&cfg);

	usv_scu_peer stranger = peer_of(&cfg, "USVIEW", "STRANGER");
	usv_scu_peer modality = peer_of(&cfg, "USVIEW", "MODALITY");
	usv_scu_peer ultra = peer_of(&cfg, "USVIEW", "ULTRA");
	snprintf(src, sizeof src, "%s/%s", shared(), SAMPLE_FILE);
	assert_int_equal(usv_scu_store(&stranger, src, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(res.outcome, USV_SCU_RETRY);
	assert_int_equal(usv_scu_echo(&ultra, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(usv_scu_echo(&modality, &res, err, sizeof err), 0);
	assert_int_equal(wait_assoc(3), 3);

	int i = assoc_find("STRANGER", 0);
	assert_true(i >= 0);
	assert_string_equal(rec.assoc[i].outcome,
	                    "rejected: calling AE title not accepted: STRANGER from 127.0.0.1");
	i = assoc_find("ULTRA", 0);
	assert_true(i >= 0);
	assert_string_equal(rec.assoc[i].outcome,
	                    "rejected: calling AE title not accepted: ULTRA from 127.0.0.1");
	i = assoc_find("MODALITY", 1);
	assert_true(i >= 0);
	assert_int_equal(rec.assoc[i].n_echo, 1);
	assert_int_equal(sink_st.n_tmp, 0);
	assert_int_equal(rec.n_stored, 0);

	/* a reload: now only STRANGER, from this address */
	usv_scp_peer now[1];
	memset(now, 0, sizeof now);
	strcpy(now[0].aet, "STRANGER");
	strcpy(now[0].addr, "127.0.0.1");
	assert_int_equal(usv_scp_set_access(scp, now, 1, 0, err, sizeof err), 0);
	assert_int_equal(usv_scp_set_access(scp, now, USV_SCP_MAX_PEERS + 1, 0, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(usv_scu_store(&stranger, src, &res, err, sizeof err), 0);
	assert_int_equal(res.outcome, USV_SCU_SUCCESS);
	assert_int_equal(usv_scu_echo(&modality, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(wait_assoc(5), 5);
	usv_scp_get_stats(scp, &st);
	usv_scp_stop(scp);

	i = assoc_find("STRANGER", 1);
	assert_true(i >= 3);
	assert_int_equal(rec.assoc[i].n_stored, 1);
	assert_true(assoc_find("MODALITY", 0) >= 3);
	assert_true(st.assoc_accepted == 2 && st.assoc_rejected == 3 && st.stored == 1);
	assert_int_equal(count_files("incoming"), 1);
}

static void test_sink_fails(void **state)
{
	usv_scp_config cfg;
	usv_scu_result res;
	usv_scp_stats st;
	char err[USV_ERRBUF], src[PATH_MAX];
	(void)state;

	snprintf(src, sizeof src, "%s/%s", shared(), SAMPLE_FILE);
	base_config(&cfg);
	usv_scp *scp = start(&cfg);
	usv_scu_peer p = peer_of(&cfg, "USVIEW", "TESTSCU");

	/* 1: the commit fails (spool I/O error) */
	sink_set(0, 1, 0);
	assert_int_equal(usv_scu_store(&p, src, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(res.outcome, USV_SCU_RETRY);
	assert_int_equal(res.status, 0xA700);
	assert_int_equal(wait_assoc(1), 1);

	/* 2: no tmp file can be created */
	sink_set(1, 0, 0);
	assert_int_equal(usv_scu_store(&p, src, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(res.status, 0xA700);
	assert_int_equal(wait_assoc(2), 2);

	/* 3: free space below the watermark (set on the running SCP) */
	sink_set(0, 0, 1);
	assert_int_equal(usv_scp_set_access(scp, NULL, 0, 1u << 20, err, sizeof err), 0);
	assert_int_equal(usv_scu_store(&p, src, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(res.status, 0xA700);
	assert_int_equal(wait_assoc(3), 3);
	usv_scp_get_stats(scp, &st);
	usv_scp_stop(scp);

	assert_int_equal(rec.n_inst, 3);
	assert_int_equal(rec.n_stored, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rec.inst[i].status, 0xA700);
		assert_string_equal(rec.inst[i].spool_id, "");
		assert_int_equal(rec.assoc[i].n_failed, 1);
		assert_int_equal(rec.assoc[i].n_stored, 0);
	}
	assert_non_null(strstr(rec.inst[0].detail, "spool commit: "));
	assert_true(rec.inst[0].bytes > 0);
	assert_non_null(strstr(rec.inst[1].detail, "spool: "));
	assert_string_equal(rec.inst[2].detail, "free disk space below watermark");
	assert_int_equal(sink_st.n_tmp, 2); /* no tmp file tried when space is low */
	assert_int_equal(sink_st.n_commit, 1);
	assert_int_equal(sink_st.n_discard, 1);
	assert_true(sink_st.n_low >= 1);
	assert_int_equal(count_files("tmp"), 0);
	assert_int_equal(count_files("incoming"), 0);
	assert_true(st.stored == 0 && st.store_failed == 3 && st.bytes == 0);
}

/* ---- a raw association that stays open ---- */

static size_t put_ae(unsigned char *b, const char *ae)
{
	memset(b, ' ', 16);
	memcpy(b, ae, strlen(ae));
	return 16;
}

static size_t put_item(unsigned char *b, unsigned type, const char *uid)
{
	size_t n = strlen(uid);
	b[0] = (unsigned char)type;
	b[1] = 0;
	b[2] = (unsigned char)(n >> 8);
	b[3] = (unsigned char)n;
	memcpy(b + 4, uid, n);
	return 4 + n;
}

/* Connects and negotiates a Verification association by hand; returns the
 * socket, left open (the SCP worker stays busy until it closes), or -1
 * when the association was not accepted (A-ASSOCIATE-AC, PDU type 2). */
static int raw_associate(int port, const char *called, const char *calling)
{
	unsigned char pdu[512], *b = pdu + 6;
	size_t n = 0;

	b[n++] = 0x00; /* protocol version 1 */
	b[n++] = 0x01;
	b[n++] = 0;
	b[n++] = 0;
	n += put_ae(b + n, called);
	n += put_ae(b + n, calling);
	memset(b + n, 0, 32);
	n += 32;
	n += put_item(b + n, 0x10, "1.2.840.10008.3.1.1.1");
	/* presentation context 1: Verification, implicit VR little endian */
	unsigned char *pc = b + n;
	size_t pn = 4;
	pc[pn++] = 1;
	pc[pn++] = 0;
	pc[pn++] = 0;
	pc[pn++] = 0;
	pn += put_item(pc + pn, 0x30, "1.2.840.10008.1.1");
	pn += put_item(pc + pn, 0x40, "1.2.840.10008.1.2");
	pc[0] = 0x20;
	pc[1] = 0;
	pc[2] = (unsigned char)((pn - 4) >> 8);
	pc[3] = (unsigned char)(pn - 4);
	n += pn;
	/* user information: maximum length 16384, implementation class UID */
	unsigned char *ui = b + n;
	size_t un = 4;
	ui[un++] = 0x51;
	ui[un++] = 0;
	ui[un++] = 0;
	ui[un++] = 4;
	ui[un++] = 0;
	ui[un++] = 0;
	ui[un++] = 0x40;
	ui[un++] = 0;
	un += put_item(ui + un, 0x52, "1.2.826.0.1.3680043.9.9999.1");
	ui[0] = 0x50;
	ui[1] = 0;
	ui[2] = (unsigned char)((un - 4) >> 8);
	ui[3] = (unsigned char)(un - 4);
	n += un;
	pdu[0] = 0x01;
	pdu[1] = 0;
	pdu[2] = (unsigned char)(n >> 24);
	pdu[3] = (unsigned char)(n >> 16);
	pdu[4] = (unsigned char)(n >> 8);
	pdu[5] = (unsigned char)n;

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(send(fd, pdu, n + 6, MSG_NOSIGNAL), (ssize_t)(n + 6));
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	unsigned char type = 0;
	if (poll(&pf, 1, 10000) != 1 || recv(fd, &type, 1, 0) != 1 || type != 0x02) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_max_assoc(void **state)
{
	usv_scp_config cfg;
	usv_scu_result res;
	usv_scp_stats st;
	char err[USV_ERRBUF];
	int held[2];
	(void)state;

	base_config(&cfg);
	cfg.max_assoc = 2;
	usv_scp *scp = start(&cfg);
	held[0] = raw_associate(cfg.port, "USVIEW", "HOLDER1");
	assert_true(held[0] >= 0);
	held[1] = raw_associate(cfg.port, "USVIEW", "HOLDER2");
	assert_true(held[1] >= 0);

	/* both workers busy: refused transient, the SCU is told to retry */
	usv_scu_peer p = peer_of(&cfg, "USVIEW", "THIRD");
	assert_int_equal(usv_scu_echo(&p, &res, err, sizeof err), -EAGAIN);
	assert_int_equal(res.outcome, USV_SCU_RETRY);
	assert_int_equal(wait_assoc(1), 1);
	assert_string_equal(rec.assoc[0].calling, "THIRD");
	assert_int_equal(rec.assoc[0].accepted, 0);
	assert_string_equal(rec.assoc[0].outcome,
	                    "rejected: all workers busy (local limit exceeded)");
	usv_scp_get_stats(scp, &st);
	assert_true(st.assoc_busy == 1 && st.assoc_active == 2 && st.echo == 0);

	/* one worker comes free when its peer goes away (the worker notices
	 * the closed connection, records it, then waits for work again) */
	close(held[0]);
	int rc = -1;
	for (int i = 0; i < 100 && rc; i++) {
		rc = usv_scu_echo(&p, &res, err, sizeof err);
		if (rc)
			usleep(100 * 1000);
	}
	assert_int_equal(rc, 0);
	usv_scp_get_stats(scp, &st);
	assert_true(st.assoc_busy >= 1 && st.echo == 1);
	/* the other one is still held */
	assert_int_equal(assoc_find("HOLDER2", 1), -1);
	close(held[1]);
	usv_scp_stop(scp);
	assert_true(assoc_find("HOLDER1", 1) >= 0);
	assert_true(assoc_find("HOLDER2", 1) >= 0);
	assert_true(assoc_find("THIRD", 1) >= 0);
}

/* ---- several SCUs at once ---- */

#define PAR_THREADS 4
#define PAR_STORES 3

struct par_arg {
	usv_scu_peer peer;
	const char *path;
	int ok;
};

static void *par_main(void *arg)
{
	struct par_arg *a = arg;
	usv_scu_result res;
	char err[USV_ERRBUF];

	for (int i = 0; i < PAR_STORES; i++) {
		/* a worker is back for new work only after it has recorded the
		 * last association, so a quick next one may find all busy and be
		 * refused transient; the sender retries those, so does this */
		int rc = -EAGAIN;
		for (int t = 0; t < 100 && rc == -EAGAIN; t++) {
			rc = usv_scu_store(&a->peer, a->path, &res, err, sizeof err);
			if (rc == -EAGAIN)
				usleep(20 * 1000);
		}
		if (rc == 0)
			a->ok++;
	}
	return NULL;
}

static void test_parallel_stores(void **state)
{
	usv_scp_config cfg;
	usv_scp_stats st;
	pthread_t th[PAR_THREADS];
	struct par_arg args[PAR_THREADS];
	char src[PATH_MAX];
	(void)state;

	snprintf(src, sizeof src, "%s/%s", shared(), SAMPLE_FILE);
	base_config(&cfg);
	cfg.max_assoc = PAR_THREADS;
	usv_scp *scp = start(&cfg);
	for (int i = 0; i < PAR_THREADS; i++) {
		args[i].peer = peer_of(&cfg, "USVIEW", "PARALLEL");
		args[i].path = src;
		args[i].ok = 0;
		assert_int_equal(pthread_create(&th[i], NULL, par_main, &args[i]), 0);
	}
	for (int i = 0; i < PAR_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	usv_scp_get_stats(scp, &st);
	usv_scp_stop(scp);

	for (int i = 0; i < PAR_THREADS; i++)
		assert_int_equal(args[i].ok, PAR_STORES);
	assert_int_equal(count_files("incoming"), PAR_THREADS * PAR_STORES);
	assert_int_equal(count_files("tmp"), 0);
	assert_int_equal(rec.n_stored, PAR_THREADS * PAR_STORES);
	assert_true(st.stored == PAR_THREADS * PAR_STORES);
	assert_int_equal(rec.n_assoc, PAR_THREADS * PAR_STORES + (int)st.assoc_busy);
}

static int setup(void **state)
{
	char err[USV_ERRBUF], sub[PATH_MAX + 16];
	const char *t = getenv("TMPDIR");
	(void)state;

	snprintf(sink_st.dir, sizeof sink_st.dir, "%s/usv-scp-XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(sink_st.dir))
		return -1;
	snprintf(sub, sizeof sub, "%s/tmp", sink_st.dir);
	if (mkdir(sub, 0700))
		return -1;
	snprintf(sub, sizeof sub, "%s/incoming", sink_st.dir);
	if (mkdir(sub, 0700))
		return -1;
	/* a peer closing first must not kill the test (as in usviewd) */
	signal(SIGPIPE, SIG_IGN);
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usv_dcm_global_init: %s\n", err);
		return -1;
	}
	return usv_scu_global_init(5);
}

static int teardown(void **state)
{
	char sub[PATH_MAX + 16];
	(void)state;

	remove_files("tmp");
	remove_files("incoming");
	snprintf(sub, sizeof sub, "%s/tmp", sink_st.dir);
	rmdir(sub);
	snprintf(sub, sizeof sub, "%s/incoming", sink_st.dir);
	rmdir(sub);
	rmdir(sink_st.dir);
	usv_dcm_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_config_checks, reset),
	    cmocka_unit_test_setup(test_echo, reset),
	    cmocka_unit_test_setup(test_store, reset),
	    cmocka_unit_test_setup(test_reject_called_ae, reset),
	    cmocka_unit_test_setup(test_reject_calling_ae, reset),
	    cmocka_unit_test_setup(test_sink_fails, reset),
	    cmocka_unit_test_setup(test_max_assoc, reset),
	    cmocka_unit_test_setup(test_parallel_stores, reset),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
