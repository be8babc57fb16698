/*
 * NAME
 *	metrics.c - Prometheus text exposition and /healthz over libmicrohttpd
 *
 * DESCRIPTION
 *	See metrics.h. Counters are C11 atomics; the histogram (fixed
 *	buckets, cumulative on output as the format requires) sits under a
 *	mutex. Label values are escaped (backslash, double quote, newline).
 */
#include "metrics.h"

#include "usv/err.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

struct usv_metrics {
	_Atomic uint64_t c[USV_C_COUNT];
	pthread_mutex_t lock;
	uint64_t hist[NBUCKETS + 1]; /* last: above the largest bound */
	uint64_t hist_count;
	double hist_sum;
	char sha256[65], arch[32], name[128];
	double start_time;
	/* QA, under lock: by the model's class */
	int nqa;
	struct {
		char label[64];
		uint64_t agree, disagree, uncertain;
	} qa[USV_METRICS_MAX_CLASSES];
	uint64_t qa_other[3]; /* classes beyond the table */
};

struct usv_http {
	struct MHD_Daemon *d;
	struct usv_metrics *m;
	usv_metrics_extra_fn extra;
	usv_health_fn health;
	void *ctx;
	pthread_mutex_t route_mu; /* guards the three below */
	char route_prefix[64];
	usv_http_route_fn route;
	void *route_ctx;
};

int usv_metrics_new(struct usv_metrics **out)
{
	struct usv_metrics *m = calloc(1, sizeof *m);
	struct timespec ts;

	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	m->start_time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	*out = m;
	return 0;
}

void usv_metrics_free(struct usv_metrics *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void usv_metrics_inc(struct usv_metrics *m, enum usv_counter c, uint64_t n)
{
	if (m && c < USV_C_COUNT)
		atomic_fetch_add(&m->c[c], n);
}

uint64_t usv_metrics_get(struct usv_metrics *m, enum usv_counter c)
{
	return m && c < USV_C_COUNT ? atomic_load(&m->c[c]) : 0;
}

void usv_metrics_observe_latency(struct usv_metrics *m, double seconds)
{
	size_t i = 0;

	if (!m)
		return;
	while (i < NBUCKETS && seconds > buckets[i])
		i++;
	pthread_mutex_lock(&m->lock);
	m->hist[i]++;
	m->hist_count++;
	m->hist_sum += seconds;
	pthread_mutex_unlock(&m->lock);
}

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

void usv_metrics_set_model(struct usv_metrics *m, const char *sha256, const char *arch,
                           const char *name)
{
	pthread_mutex_lock(&m->lock);
	copy(m->sha256, sizeof m->sha256, sha256);
	copy(m->arch, sizeof m->arch, arch);
	copy(m->name, sizeof m->name, name);
	pthread_mutex_unlock(&m->lock);
}

void usv_metrics_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*v, f);
	}
}

void usv_metrics_qa(struct usv_metrics *m, const char *label, int agrees, int uncertain)
{
	if (!m || !label || (agrees < 0 && !uncertain))
		return;
	pthread_mutex_lock(&m->lock);
	int i = 0;
	while (i < m->nqa && strcmp(m->qa[i].label, label))
		i++;
	if (i == m->nqa && m->nqa < USV_METRICS_MAX_CLASSES &&
	    strlen(label) < sizeof m->qa[0].label) {
		snprintf(m->qa[i].label, sizeof m->qa[i].label, "%s", label);
		m->nqa++;
	}
	uint64_t *agree = i < m->nqa ? &m->qa[i].agree : &m->qa_other[0];
	uint64_t *disagree = i < m->nqa ? &m->qa[i].disagree : &m->qa_other[1];
	uint64_t *unc = i < m->nqa ? &m->qa[i].uncertain : &m->qa_other[2];
	if (agrees > 0)
		(*agree)++;
	else if (agrees == 0)
		(*disagree)++;
	if (uncertain)
		(*unc)++;
	pthread_mutex_unlock(&m->lock);
}

static void render_qa(struct usv_metrics *m, FILE *f)
{
	usv_metrics_family(f, "usview_label_agreements_total", "counter",
	                   "Instances with a technologist's label, by the model's class and "
	                   "whether the two agree.");
	for (int i = 0; i <= m->nqa; i++) {
		const char *l = i < m->nqa ? m->qa[i].label : "other";
		uint64_t a = i < m->nqa ? m->qa[i].agree : m->qa_other[0];
		uint64_t d = i < m->nqa ? m->qa[i].disagree : m->qa_other[1];
		if (i == m->nqa && !a && !d)
			continue;
		fputs("usview_label_agreements_total{class=\"", f);
		label_value(f, l);
		fprintf(f, "\",result=\"agree\"} %llu\n", (unsigned long long)a);
		fputs("usview_label_agreements_total{class=\"", f);
		label_value(f, l);
		fprintf(f, "\",result=\"disagree\"} %llu\n", (unsigned long long)d);
	}
	usv_metrics_family(f, "usview_uncertain_total", "counter",
	                   "Instances whose top probability was below model.min_confidence, by "
	                   "the model's most probable class.");
	for (int i = 0; i <= m->nqa; i++) {
		const char *l = i < m->nqa ? m->qa[i].label : "other";
		uint64_t u = i < m->nqa ? m->qa[i].uncertain : m->qa_other[2];
		if (i == m->nqa && !u)
			continue;
		fputs("usview_uncertain_total{class=\"", f);
		label_value(f, l);
		fprintf(f, "\"} %llu\n", (unsigned long long)u);
	}
}

int usv_metrics_render(struct usv_metrics *m, usv_metrics_extra_fn extra, void *ctx, char **text,
                       size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	int r = 0;

	if (!f)
		return -ENOMEM;
	usv_metrics_family(f, "usview_associations_total", "counter",
	                   "DICOM associations that ended, by negotiation result.");
	fprintf(f, "usview_associations_total{result=\"accepted\"} %llu\n",
	        (unsigned long long)usv_metrics_get(m, USV_C_ASSOC_ACCEPTED));
	fprintf(f, "usview_associations_total{result=\"rejected\"} %llu\n",
	        (unsigned long long)usv_metrics_get(m, USV_C_ASSOC_REJECTED));
	usv_metrics_family(f, "usview_instances_total", "counter",
	                   "Instances by outcome: received (stored in the spool), refused (C-STORE "
	                   "failed), done, failed, excluded.");
	static const struct {
		const char *name;
		enum usv_counter c;
	} outcomes[] = {{"received", USV_C_INST_RECEIVED},
	                {"refused", USV_C_INST_REFUSED},
	                {"done", USV_C_INST_DONE},
	                {"failed", USV_C_INST_FAILED},
	                {"excluded", USV_C_INST_EXCLUDED}};
	for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
		fprintf(f, "usview_instances_total{outcome=\"%s\"} %llu\n", outcomes[i].name,
		        (unsigned long long)usv_metrics_get(m, outcomes[i].c));
	usv_metrics_family(f, "usview_results_total", "counter",
	                   "Result objects written into outboxes, by kind.");
	fprintf(f, "usview_results_total{kind=\"sr\"} %llu\n",
	        (unsigned long long)usv_metrics_get(m, USV_C_RESULT_SR));
	fprintf(f, "usview_results_total{kind=\"tagged\"} %llu\n",
	        (unsigned long long)usv_metrics_get(m, USV_C_RESULT_TAGGED));
	usv_metrics_family(f, "usview_inference_batches_total", "counter",
	                   "Batched inference runs.");
	fprintf(f, "usview_inference_batches_total %llu\n",
	        (unsigned long long)usv_metrics_get(m, USV_C_BATCHES));
	usv_metrics_family(f, "usview_inference_images_total", "counter",
	                   "Images classified by batched inference runs.");
	fprintf(f, "usview_inference_images_total %llu\n",
	        (unsigned long long)usv_metrics_get(m, USV_C_BATCH_IMAGES));

	pthread_mutex_lock(&m->lock);
	usv_metrics_family(f, "usview_classification_latency_seconds", "histogram",
	                   "Time from claiming an instance to its results being queued.");
	uint64_t cum = 0;
	for (size_t i = 0; i < NBUCKETS; i++) {
		cum += m->hist[i];
		fprintf(f, "usview_classification_latency_seconds_bucket{le=\"%g\"} %llu\n",
		        buckets[i], (unsigned long long)cum);
	}
	cum += m->hist[NBUCKETS];
	fprintf(f, "usview_classification_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
	        (unsigned long long)cum);
	fprintf(f, "usview_classification_latency_seconds_sum %.6f\n", m->hist_sum);
	fprintf(f, "usview_classification_latency_seconds_count %llu\n",
	        (unsigned long long)m->hist_count);
	usv_metrics_family(f, "usview_model_info", "gauge", "The loaded model (value 1).");
	fputs("usview_model_info{sha256=\"", f);
	label_value(f, m->sha256);
	fputs("\",arch=\"", f);
	label_value(f, m->arch);
	fputs("\",name=\"", f);
	label_value(f, m->name);
	fputs("\"} 1\n", f);
	render_qa(m, f);
	pthread_mutex_unlock(&m->lock);
	usv_metrics_family(f, "usview_start_time_seconds", "gauge",
	                   "Start time of the process since the epoch.");
	fprintf(f, "usview_start_time_seconds %.3f\n", m->start_time);
	if (extra)
		r = extra(ctx, f);
	if (fclose(f) != 0 && r == 0)
		r = -ENOMEM;
	if (r < 0) {
		free(buf);
		return r;
	}
	*text = buf;
	if (len)
		*len = n;
	return 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result r;

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	r = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return r;
}

const char *usv_http_arg(const struct usv_http_request *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *usv_http_header(const struct usv_http_request *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

void usv_http_set_route(struct usv_http *h, const char *prefix, usv_http_route_fn fn, void *ctx)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->route_mu);
	snprintf(h->route_prefix, sizeof h->route_prefix, "%s", fn && prefix ? prefix : "");
	h->route = fn && prefix ? fn : NULL;
	h->route_ctx = ctx;
	pthread_mutex_unlock(&h->route_mu);
}

/* The route's answer, when url is under its prefix; MHD_NO with *taken 0
 * otherwise. */
static enum MHD_Result routed(struct usv_http *h, struct MHD_Connection *c, const char *url,
                              const char *method, int *taken)
{
	struct usv_http_reply rep;
	struct usv_http_request rq = {.url = url, .method = method, .conn = c};
	usv_http_route_fn fn;
	void *ctx;
	size_t n;

	pthread_mutex_lock(&h->route_mu);
	fn = h->route;
	ctx = h->route_ctx;
	n = strlen(h->route_prefix);
	*taken = fn && !strncmp(url, h->route_prefix, n) && (url[n] == 0 || url[n] == '/');
	pthread_mutex_unlock(&h->route_mu);
	if (!*taken)
		return MHD_NO;
	memset(&rep, 0, sizeof rep);
	if (fn(ctx, &rq, &rep) < 0 || rep.status == 0) {
		free(rep.body);
		return reply(c, 500, "text/plain", (char *)"internal error\n", 15,
		             MHD_RESPMEM_PERSISTENT);
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    rep.len, rep.body ? rep.body : (char *)"",
	    rep.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(rep.body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", rep.type ? rep.type : "text/plain");
	for (int i = 0; i < rep.nheaders && i < USV_HTTP_MAX_HEADERS; i++)
		if (rep.header_name[i])
			MHD_add_response_header(resp, rep.header_name[i], rep.header_value[i]);
	enum MHD_Result r = MHD_queue_response(c, rep.status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
	struct usv_http *h = cls;

	(void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(c, 405, "text/plain", (char *)"method not allowed\n", 19,
		             MHD_RESPMEM_PERSISTENT);
	if (!strcmp(url, "/metrics")) {
		char *text = NULL;
		size_t len = 0;
		if (usv_metrics_render(h->m, h->extra, h->ctx, &text, &len) < 0)
			return reply(c, 500, "text/plain", (char *)"render failed\n", 14,
			             MHD_RESPMEM_PERSISTENT);
		return reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
		             MHD_RESPMEM_MUST_FREE);
	}
	if (!strcmp(url, "/healthz")) {
		char why[256] = "unhealthy", body[300];
		int ok = h->health ? h->health(h->ctx, why, sizeof why) : 0;
		int n = snprintf(body, sizeof body, "%s\n", ok == 0 ? "ok" : why);
		return reply(c, ok == 0 ? 200 : 503, "text/plain", body, (size_t)n,
		             MHD_RESPMEM_MUST_COPY);
	}
	int taken = 0;
	enum MHD_Result rr = routed(h, c, url, method, &taken);
	if (taken)
		return rr;
	return reply(c, 404, "text/plain", (char *)"not found\n", 10, MHD_RESPMEM_PERSISTENT);
}

int usv_http_start(const char *bind, int port, struct usv_metrics *m, usv_metrics_extra_fn extra,
                   usv_health_fn health, void *ctx, struct usv_http **out, char *errbuf,
                   size_t errlen)
{
	struct sockaddr_in sin;
	struct usv_http *h;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (port < 1 || port > 65535 || inet_pton(AF_INET, bind, &sin.sin_addr) != 1)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "http: %s:%d: not a numeric IPv4 address and port", bind, port);
	h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->m = m;
	h->extra = extra;
	h->health = health;
	h->ctx = ctx;
	pthread_mutex_init(&h->route_mu, NULL);
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, handle,
	                        h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!h->d) {
		pthread_mutex_destroy(&h->route_mu);
		free(h);
		return usv_seterr(errbuf, errlen, -EIO,
		                  "http: cannot listen on %s:%d (address in use?)", bind, port);
	}
	*out = h;
	return 0;
}

void usv_http_stop(struct usv_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	pthread_mutex_destroy(&h->route_mu);
	free(h);
}
