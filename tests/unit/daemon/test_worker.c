/*
 * NAME
 *	test_worker.c - the worker pool over a real spool (daemon/worker.c)
 *
 * DESCRIPTION
 *	A spool in a temporary directory; real ultrasound files from
 *	$USV_SHARED_DIR/data/dicom/us (see its MANIFEST.tsv) and a truncated
 *	copy of one of them are committed to incoming/; a pool of one worker
 *	with a tiny in-memory model (conv, global pool, FC, softmax; the
 *	shape of tests/integration/daemon/make_model.c) classifies them.
 *	Asserted:
 *	- each good instance ends in done/ with one results.jsonl line whose
 *	  outputs follow the routing rules, and every destination's outbox
 *	  holds the expected number of files (SR-only, tagged with a SOP-class
 *	  filter, SR+tagged with a filter that only a multi-frame image meets);
 *	- the truncated one ends in failed/ with a reason file that says why;
 *	  a file with a valid meta header and no data set fails too, and its
 *	  index line still names its SOP Class and Instance UIDs;
 *	- usv_dcm_read_meta_uids (dicom/) on a good file, on a meta header
 *	  followed by junk, on a file without preamble and on a missing file;
 *	- nothing is left in active/ or incoming/ (also after stop);
 *	- new settings given between batches (other destinations, top_k)
 *	  apply to the next batch.
 *	Skipped when the shared data are not there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "results_index.h"
#include "results_route.h"
#include "spool.h"
#include "worker.h"
#include "usv/err.h"
#include "usv/dcm_meta.h"
#include "usv/dicom.h"
#include "usv/nn.h"

#define US_IMAGE "1.2.840.10008.5.1.4.1.1.6.1"
#define US_MULTI "1.2.840.10008.5.1.4.1.1.3.1"

/* single-frame US Image Storage: RGB uncompressed; grey JPEG lossless */
#define FILE_A "pydicom-data__US1_UNCR.dcm"
#define FILE_B "pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm"
/* US Multi-frame Image Storage, RGB, 8 frames */
#define FILE_C "dicomParser__IM00001.implicit_little_endian.dcm"

static char root[PATH_MAX];
static char data_dir[PATH_MAX];

/* The settings the pool reads at the start of every batch. */
static struct {
	pthread_mutex_t mu;
	struct usv_worker_settings set;
	unsigned long gets;
	int outputs;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void get_settings(void *ctx, struct usv_worker_settings *out)
{
	(void)ctx;
	pthread_mutex_lock(&T.mu);
	*out = T.set;
	T.gets++;
	pthread_mutex_unlock(&T.mu);
}

static void on_output(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&T.mu);
	T.outputs++;
	pthread_mutex_unlock(&T.mu);
}

static unsigned long gets(void)
{
	pthread_mutex_lock(&T.mu);
	unsigned long n = T.gets;
	pthread_mutex_unlock(&T.mu);
	return n;
}

/* ---- a tiny model ---- */

static const char *const labels[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"};

static int add_tensor(usv_netdef *def, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
                      int64_t d)
{
	int64_t shape[4] = {a, b, c, d};
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	float *w = malloc(n * sizeof *w);
	if (!w)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		w[i] = 0.05f * (float)((i * 7 + 3) % 11) - 0.25f;
	int r = usv_netdef_add_tensor(def, name, ndim, shape, w);
	free(w);
	return r;
}

static usv_model *tiny_model(void)
{
	usv_netdef *def = NULL;
	usv_model *model = NULL;
	usv_layer_def l;
	usv_model_meta m;
	char err[USV_ERRBUF] = "", path[PATH_MAX + 64];
	int r;

	assert_int_equal(usv_netdef_new(&def), 0);
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "conv1");
	l.type = USV_LAYER_CONV;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "data");
	l.num_output = 4;
	l.kernel_h = l.kernel_w = 3;
	l.stride_h = l.stride_w = 4;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = 1;
	l.group = 1;
	l.has_bias = 1;
	l.act = USV_ACT_RELU;
	r = usv_netdef_add_layer(def, &l);
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "pool");
	l.type = USV_LAYER_GLOBAL_AVEPOOL;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "conv1");
	r = r ? r : usv_netdef_add_layer(def, &l);
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "fc");
	l.type = USV_LAYER_FC;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "pool");
	l.num_output = 11;
	l.has_bias = 1;
	r = r ? r : usv_netdef_add_layer(def, &l);
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "prob");
	l.type = USV_LAYER_SOFTMAX;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "fc");
	r = r ? r : usv_netdef_add_layer(def, &l);
	r = r ? r : add_tensor(def, "conv1.weight", 4, 4, 3, 3, 3);
	r = r ? r : add_tensor(def, "conv1.bias", 1, 4, 1, 1, 1);
	r = r ? r : add_tensor(def, "fc.weight", 2, 11, 4, 1, 1);
	r = r ? r : add_tensor(def, "fc.bias", 1, 11, 1, 1, 1);
	memset(&m, 0, sizeof m);
	snprintf(m.arch, sizeof m.arch, "custom");
	snprintf(m.name, sizeof m.name, "worker test model");
	m.input_c = 3;
	m.input_h = m.input_w = 32;
	m.resize_h = m.resize_w = 128;
	m.channel_order = USV_RGB;
	m.scale = 1.0f / 128;
	m.mean_rgb[0] = m.mean_rgb[1] = m.mean_rgb[2] = 128;
	m.n_labels = 11;
	m.labels = labels;
	m.output_layer = "prob";
	m.output_is_prob = 1;
	r = r ? r : usv_netdef_set_meta(def, &m);
	r = r ? r : usv_netdef_validate(def, err, sizeof err);
	/* through a file: the load records the SHA-256 every SR carries */
	snprintf(path, sizeof path, "%s/model.usvm", root);
	r = r ? r : usv_netdef_write(def, path, err, sizeof err);
	r = r ? r : usv_model_load(path, &model, err, sizeof err);
	if (r < 0)
		fail_msg("model: %d %s", r, err);
	usv_netdef_free(def);
	return model;
}

/* ---- spool helpers ---- */

static size_t count_dir(const char *sub, const char *suffix)
{
	char p[PATH_MAX + 64];
	size_t n = 0, sl = strlen(suffix);
	struct dirent *e;
	DIR *d;

	snprintf(p, sizeof p, "%s/%s", root, sub);
	d = opendir(p);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] != '.' && l >= sl && !strcmp(e->d_name + l - sl, suffix))
			n++;
	}
	closedir(d);
	return n;
}

/* Commits len bytes to incoming/. */
static void enqueue_bytes(usv_spool *sp, const unsigned char *data, size_t len,
                          char id[USV_SPOOL_ID_LEN])
{
	char tmp[PATH_MAX];
	int fd = -1;

	assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	assert_int_equal(usv_spool_commit(sp, tmp, id, USV_SPOOL_ID_LEN), 0);
}

/* A shared file in memory; *len its size. */
static unsigned char *slurp(const char *name, size_t *len)
{
	char src[PATH_MAX + 256];
	struct stat st;
	unsigned char *buf;
	FILE *f;

	snprintf(src, sizeof src, "%s/%s", data_dir, name);
	f = fopen(src, "rbe");
	assert_non_null(f);
	assert_int_equal(fstat(fileno(f), &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
	fclose(f);
	*len = (size_t)st.st_size;
	return buf;
}

/* Commits the first limit bytes (0: all) of a shared file to incoming/. */
static void enqueue(usv_spool *sp, const char *name, size_t limit, char id[USV_SPOOL_ID_LEN])
{
	size_t len;
	unsigned char *buf = slurp(name, &len);

	enqueue_bytes(sp, buf, limit && limit < len ? limit : len, id);
	free(buf);
}

/* The file meta header of a shared file (explicit VR little endian after
 * the preamble; its group length is the first element) followed by bytes
 * that are no DICOM data set at all. */
static void enqueue_meta_only(usv_spool *sp, const char *name, char id[USV_SPOOL_ID_LEN])
{
	size_t len;
	unsigned char *buf = slurp(name, &len);

	assert_true(len > 144 && !memcmp(buf + 128, "DICM", 4) && !memcmp(buf + 136, "UL", 2));
	size_t glen = (size_t)buf[140] | (size_t)buf[141] << 8 | (size_t)buf[142] << 16 |
	              (size_t)buf[143] << 24;
	size_t end = 144 + glen;
	assert_true(end + 64 <= len);
	memset(buf + end, 0xff, 64);
	enqueue_bytes(sp, buf, end + 64, id);
	free(buf);
}

static size_t file_size(const char *name)
{
	char p[PATH_MAX + 256];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", data_dir, name);
	assert_int_equal(stat(p, &st), 0);
	return (size_t)st.st_size;
}

/* Waits until done/ + failed/ + excluded/ hold n instances. */
static void wait_finished(usv_spool *sp, size_t n)
{
	for (int i = 0; i < 1200; i++) {
		size_t d = 0, f = 0, x = 0;
		usv_spool_count(sp, USV_SPOOL_DONE, &d);
		usv_spool_count(sp, USV_SPOOL_FAILED, &f);
		usv_spool_count(sp, USV_SPOOL_EXCLUDED, &x);
		if (d + f + x >= n)
			return;
		usleep(50000);
	}
	fail_msg("instances not finished after 60 s");
}

/* results.jsonl as parsed lines (at most max). */
static size_t read_index(cJSON **lines, size_t max)
{
	char p[PATH_MAX + 64], *text, *s, *nl;
	size_t n = 0;
	FILE *f;
	long len;

	snprintf(p, sizeof p, "%s/results.jsonl", root);
	f = fopen(p, "re");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	for (s = text; *s && n < max; s = nl + 1) {
		nl = strchr(s, '\n');
		assert_non_null(nl); /* every line complete */
		*nl = 0;
		lines[n] = cJSON_Parse(s);
		assert_non_null(lines[n]);
		n++;
	}
	free(text);
	return n;
}

/* results.jsonl to stderr, for the log of a failing run */
static void dump_index(void)
{
	char p[PATH_MAX + 64], buf[4096];
	size_t n;
	FILE *f;

	snprintf(p, sizeof p, "%s/results.jsonl", root);
	f = fopen(p, "re");
	if (!f)
		return;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		fwrite(buf, 1, n, stderr);
	fclose(f);
}

static const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static const cJSON *line_for(cJSON **lines, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(jstr(lines[i], "spool_id"), id))
			return lines[i];
	fail_msg("no index line for %s", id);
	return NULL;
}

/* The outputs of a line as "dest:kind" joined by spaces, in order. */
static void outputs_of(const cJSON *line, char *buf, size_t len)
{
	const cJSON *outs = cJSON_GetObjectItemCaseSensitive(line, "outputs"), *o;
	size_t used = 0;

	buf[0] = 0;
	assert_true(cJSON_IsArray(outs));
	cJSON_ArrayForEach(o, outs)
	{
		used += (size_t)snprintf(buf + used, len - used, "%s%s:%s", used ? " " : "",
		                         jstr(o, "destination"), jstr(o, "kind"));
		assert_true(strlen(jstr(o, "sop_instance_uid")) > 0);
	}
}

static int topk_len(const cJSON *line)
{
	return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(line, "topk"));
}

static usv_dest dest(const char *name, unsigned kinds, const char *sop)
{
	usv_dest d;

	memset(&d, 0, sizeof d);
	snprintf(d.name, sizeof d.name, "%s", name);
	strcpy(d.called_ae, "PACS");
	strcpy(d.calling_ae, "USVIEW");
	strcpy(d.host, "127.0.0.1");
	d.port = 104;
	d.kinds = kinds;
	if (sop) {
		d.nsop = 1;
		snprintf(d.sop_classes[0], sizeof d.sop_classes[0], "%s", sop);
	}
	usv_dest_defaults(&d);
	return d;
}

static int setup(void **state)
{
	const char *shared = getenv("USV_SHARED_DIR");
	char err[USV_ERRBUF];

	(void)state;
	snprintf(data_dir, sizeof data_dir, "%s/data/dicom/us", shared ? shared : "../shared");
	snprintf(root, sizeof root, "/tmp/usv-worker-XXXXXX");
	assert_non_null(mkdtemp(root));
	assert_int_equal(usv_dcm_global_init(err, sizeof err), 0);
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 32];

	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	usv_dcm_global_cleanup();
	return 0;
}

static void test_pool(void **state)
{
	char a[USV_SPOOL_ID_LEN], b[USV_SPOOL_ID_LEN], c[USV_SPOOL_ID_LEN], bad[USV_SPOOL_ID_LEN],
	    junk[USV_SPOOL_ID_LEN], b2[USV_SPOOL_ID_LEN], err[USV_ERRBUF] = "", outs[512];
	struct usv_results_index *index = NULL;
	struct usv_worker_pool *pool = NULL;
	usv_spool *sp = NULL;
	usv_model *model;
	cJSON *lines[16];
	size_t n, k;
	(void)state;

	if (access(data_dir, R_OK) != 0) {
		fprintf(stderr, "no %s: skipped\n", data_dir);
		skip();
	}
	model = tiny_model();
	assert_int_equal(usv_spool_open(root, &sp, err, sizeof err), 0);
	assert_int_equal(usv_results_index_open(root, &index, err, sizeof err), 0);

	/* three good instances and a truncated copy of the first */
	enqueue(sp, FILE_A, 0, a);
	enqueue(sp, FILE_B, 0, b);
	enqueue(sp, FILE_C, 0, c);
	enqueue(sp, FILE_A, file_size(FILE_A) * 6 / 10, bad);
	enqueue_meta_only(sp, FILE_B, junk);

	memset(&T.set, 0, sizeof T.set);
	T.set.frames = USV_FRAMES_FIRST;
	T.set.every_n = 1;
	T.set.colour_threshold = -1; /* C is colour Doppler: classify it anyway */
	T.set.top_k = 3;
	T.set.batch_wait_ms = 20;
	T.set.routes.dests[T.set.routes.n++] = dest("sr-all", USV_DEST_SR, NULL);
	T.set.routes.dests[T.set.routes.n++] = dest("us-tagged", USV_DEST_TAGGED, US_IMAGE);
	T.set.routes.dests[T.set.routes.n++] =
	    dest("multi", USV_DEST_SR | USV_DEST_TAGGED, US_MULTI);

	struct usv_worker_env env = {
	    .spool = sp,
	    .model = model,
	    .index = index,
	    .workers = 1,
	    .batch_size = 4,
	    .threads = 1,
	    .get_settings = get_settings,
	    .on_output = on_output,
	    .software_version = "test",
	};
	assert_int_equal(usv_worker_pool_start(&env, &pool, err, sizeof err), 0);
	usv_worker_pool_wake(pool);
	wait_finished(sp, 5);
	if (getenv("USV_TEST_VERBOSE"))
		dump_index();

	size_t cnt;
	assert_int_equal(usv_spool_count(sp, USV_SPOOL_DONE, &cnt), 0);
	assert_int_equal(cnt, 3);
	assert_int_equal(usv_spool_count(sp, USV_SPOOL_FAILED, &cnt), 0);
	assert_int_equal(cnt, 2);
	assert_int_equal(count_dir("failed", ".reason"), 2);
	/* SR of every image; tagged copies of the two US images; the
	 * multi-frame filter takes only C's tagged copy (not SRs) */
	assert_int_equal(count_dir("outbox/sr-all", ".dcm"), 3);
	assert_int_equal(count_dir("outbox/us-tagged", ".dcm"), 2);
	assert_int_equal(count_dir("outbox/multi", ".dcm"), 1);
	assert_int_equal(count_dir("tmp", ""), 0);

	n = read_index(lines, 16);
	assert_int_equal(n, 5);
	const cJSON *la = line_for(lines, n, a), *lb = line_for(lines, n, b),
	            *lc = line_for(lines, n, c), *lbad = line_for(lines, n, bad),
	            *ljunk = line_for(lines, n, junk);
	assert_string_equal(jstr(la, "outcome"), "done");
	assert_string_equal(jstr(lb, "outcome"), "done");
	assert_string_equal(jstr(lc, "outcome"), "done");
	outputs_of(la, outs, sizeof outs);
	assert_string_equal(outs, "sr-all:sr us-tagged:tagged");
	outputs_of(lb, outs, sizeof outs);
	assert_string_equal(outs, "sr-all:sr us-tagged:tagged");
	outputs_of(lc, outs, sizeof outs);
	assert_string_equal(outs, "sr-all:sr multi:tagged");
	assert_string_equal(jstr(lc, "sop_class_uid"), US_MULTI);
	assert_int_equal(topk_len(la), 3);

	/* the truncated copy: failed, with the reason in the index and in
	 * failed/<id>.reason, and the UID read from its meta header */
	assert_string_equal(jstr(lbad, "outcome"), "failed");
	assert_true(strlen(jstr(lbad, "reason")) > 0);
	assert_string_equal(jstr(lbad, "sop_instance_uid"), jstr(la, "sop_instance_uid"));
	{
		char p[PATH_MAX + 64], reason[1024] = "";
		snprintf(p, sizeof p, "%s/failed/%s.reason", root, bad);
		FILE *f = fopen(p, "re");
		assert_non_null(f);
		size_t rl = fread(reason, 1, sizeof reason - 1, f);
		fclose(f);
		assert_true(rl > 0);
		reason[rl] = 0;
		assert_non_null(strstr(reason, jstr(lbad, "reason")));
	}
	/* no data set worth the name: still named by the UIDs of its meta
	 * header */
	assert_string_equal(jstr(ljunk, "outcome"), "failed");
	assert_non_null(strstr(jstr(ljunk, "reason"), junk));
	assert_string_equal(jstr(ljunk, "sop_instance_uid"), jstr(lb, "sop_instance_uid"));
	assert_string_equal(jstr(ljunk, "sop_class_uid"), US_IMAGE);
	assert_string_equal(jstr(ljunk, "study_uid"), "");
	for (k = 0; k < n; k++)
		cJSON_Delete(lines[k]);
	assert_int_equal(usv_spool_count(sp, USV_SPOOL_ACTIVE, &cnt), 0);
	assert_int_equal(cnt, 0);
	assert_int_equal(usv_spool_count(sp, USV_SPOOL_INCOMING, &cnt), 0);
	assert_int_equal(cnt, 0);
	pthread_mutex_lock(&T.mu);
	assert_true(T.outputs >= 1);
	pthread_mutex_unlock(&T.mu);

	/* new settings between batches: the next batch uses them */
	pthread_mutex_lock(&T.mu);
	T.set.top_k = 2;
	memset(&T.set.routes, 0, sizeof T.set.routes);
	T.set.routes.dests[T.set.routes.n++] = dest("late", USV_DEST_TAGGED, NULL);
	unsigned long seen = T.gets;
	pthread_mutex_unlock(&T.mu);
	for (int i = 0; i < 200 && gets() <= seen; i++) /* idle workers re-read each second */
		usleep(20000);
	assert_true(gets() > seen);
	enqueue(sp, FILE_B, 0, b2);
	usv_worker_pool_wake(pool);
	wait_finished(sp, 6);
	assert_int_equal(count_dir("outbox/late", ".dcm"), 1);
	assert_int_equal(count_dir("outbox/sr-all", ".dcm"), 3);
	assert_int_equal(count_dir("outbox/us-tagged", ".dcm"), 2);
	n = read_index(lines, 16);
	assert_int_equal(n, 6);
	const cJSON *lb2 = line_for(lines, n, b2);
	assert_string_equal(jstr(lb2, "outcome"), "done");
	outputs_of(lb2, outs, sizeof outs);
	assert_string_equal(outs, "late:tagged");
	assert_int_equal(topk_len(lb2), 2);
	for (k = 0; k < n; k++)
		cJSON_Delete(lines[k]);

	usv_worker_pool_stop(pool);
	assert_int_equal(usv_spool_count(sp, USV_SPOOL_ACTIVE, &cnt), 0);
	assert_int_equal(cnt, 0);
	assert_int_equal(usv_spool_count(sp, USV_SPOOL_DONE, &cnt), 0);
	assert_int_equal(cnt, 4);
	usv_results_index_close(index);
	usv_spool_free(sp);
	usv_model_free(model);
}

static void test_meta_uids(void **state)
{
	char cls[65], inst[65], err[USV_ERRBUF], p[PATH_MAX + 64];
	char id[USV_SPOOL_ID_LEN];
	usv_spool *sp = NULL;
	(void)state;

	if (access(data_dir, R_OK) != 0)
		skip();
	snprintf(p, sizeof p, "%s/%s", data_dir, FILE_B);
	assert_int_equal(
	    usv_dcm_read_meta_uids(p, cls, sizeof cls, inst, sizeof inst, err, sizeof err), 0);
	assert_string_equal(cls, US_IMAGE);
	assert_string_equal(inst,
	                    "1.2.826.0.1.3680043.2.1143.7710860250658251928326281926167748476");
	/* too small a buffer for the instance UID: not found */
	assert_int_equal(usv_dcm_read_meta_uids(p, cls, sizeof cls, inst, 10, err, sizeof err),
	                 -USV_ERR_FORMAT);

	/* the meta header followed by junk, through the spool */
	assert_int_equal(usv_spool_open(root, &sp, err, sizeof err), 0);
	enqueue_meta_only(sp, FILE_B, id);
	usv_spool_path(sp, USV_SPOOL_INCOMING, id, p, sizeof p);
	memset(inst, 0, sizeof inst);
	assert_int_equal(
	    usv_dcm_read_meta_uids(p, cls, sizeof cls, inst, sizeof inst, err, sizeof err), 0);
	assert_string_equal(inst,
	                    "1.2.826.0.1.3680043.2.1143.7710860250658251928326281926167748476");
	usv_spool_free(sp);

	/* no preamble: the model file is no DICOM */
	snprintf(p, sizeof p, "%s/notdicom", root);
	FILE *f = fopen(p, "we");
	assert_non_null(f);
	for (int i = 0; i < 300; i++)
		fputc('x', f);
	fclose(f);
	strcpy(inst, "untouched");
	assert_int_equal(
	    usv_dcm_read_meta_uids(p, cls, sizeof cls, inst, sizeof inst, err, sizeof err),
	    -USV_ERR_FORMAT);
	assert_string_equal(inst, "untouched");
	assert_non_null(strstr(err, "notdicom"));
	snprintf(p, sizeof p, "%s/missing.dcm", root);
	assert_int_equal(
	    usv_dcm_read_meta_uids(p, cls, sizeof cls, inst, sizeof inst, err, sizeof err),
	    -ENOENT);
	assert_int_equal(usv_dcm_read_meta_uids(NULL, cls, sizeof cls, inst, sizeof inst, NULL, 0),
	                 -EINVAL);
}

static void test_bad_env(void **state)
{
	struct usv_worker_pool *pool = NULL;
	struct usv_worker_env env;
	char err[USV_ERRBUF] = "";
	(void)state;

	memset(&env, 0, sizeof env);
	env.workers = 1;
	env.batch_size = 1;
	/* no spool, model or settings callback */
	assert_int_equal(usv_worker_pool_start(&env, &pool, err, sizeof err), -EINVAL);
	assert_null(pool);
	assert_true(err[0] != 0);
	usv_worker_pool_stop(NULL); /* NULL-safe */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_env),
	    cmocka_unit_test_setup_teardown(test_meta_uids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
