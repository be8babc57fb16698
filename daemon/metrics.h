/*
 * NAME
 *	metrics.h - usviewd counters and the loopback HTTP endpoint
 *	(/metrics in Prometheus text format 0.0.4, /healthz)
 *
 * DESCRIPTION
 *	A usv_metrics holds the process counters (atomics, updated from any
 *	thread) and the classification latency histogram. usv_metrics_render()
 *	writes every family with # HELP and # TYPE lines; a caller callback
 *	appends the families whose values are read at scrape time (queue
 *	depths, outbox depths, sender counters) with usv_metrics_family() and
 *	plain sample lines.
 *
 *	Families always present:
 *	  usview_associations_total{result="accepted"|"rejected"}   counter
 *	  usview_instances_total{outcome="received"|"refused"|"done"|
 *	                         "failed"|"excluded"}               counter
 *	  usview_results_total{kind="sr"|"tagged"}                  counter
 *	  usview_inference_batches_total, usview_inference_images_total counter
 *	  usview_classification_latency_seconds   histogram (_bucket{le},
 *	                         _sum, _count): claim to results written
 *	  usview_model_info{sha256,arch,name} 1                     gauge
 *	  usview_start_time_seconds                                  gauge
 *
 *	usv_http_start() serves GET /metrics and GET /healthz with
 *	libmicrohttpd (internal polling thread, at most 16 connections, 10 s
 *	timeout) on one address (loopback by default, see http.bind).
 *	/healthz answers 200 "ok" when the health callback returns 0, else
 *	503 with its reason. A route (usv_http_set_route, e.g. the QA pages
 *	of qa_web.h) serves one path prefix. Other paths: 404; other
 *	methods: 405.
 *
 * CONTRACTS
 *	usv_metrics_new(&m) / usv_metrics_free(m): caller owns; NULL-safe free.
 *	usv_metrics_inc(m, counter, n): thread-safe.
 *	usv_metrics_observe_latency(m, seconds): thread-safe.
 *	usv_metrics_set_model(m, sha256, arch, name): before serving.
 *	usv_metrics_qa(m, label, agrees, uncertain): one classified instance
 *		with the model's most probable class label; agrees 1 / 0 when
 *		the technologist's label agrees / disagrees, -1 when there is
 *		none; uncertain 1 when below model.min_confidence. Thread-safe.
 *		Families usview_label_agreements_total{class, result="agree"|
 *		"disagree"} and usview_uncertain_total{class} (at most 64
 *		classes, the rest as class="other").
 *	usv_metrics_render(m, extra, ctx, &text, &len): caller frees text.
 *	usv_metrics_family(f, name, type, help): writes the # HELP/# TYPE pair.
 *	usv_http_start(bind, port, m, extra, health, ctx, &h, errbuf, errlen):
 *		bind is a numeric IPv4 address. 0, -EINVAL, -EADDRINUSE-like
 *		failure as -EIO with a message. usv_http_stop(h): NULL-safe.
 *	usv_http_set_route(h, prefix, fn, ctx): GET/HEAD requests whose path
 *		is prefix or starts with prefix + "/" go to fn (one route;
 *		fn NULL removes it). Thread-safe; may be called while serving.
 *		fn runs in the server's thread, one request at a time; it
 *		fills *rep (body malloc()ed, handed over to the server) and
 *		returns 0, or returns a negative code for a plain 500.
 */
#ifndef USV_METRICS_H
#define USV_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum usv_counter {
	USV_C_ASSOC_ACCEPTED = 0,
	USV_C_ASSOC_REJECTED,
	USV_C_INST_RECEIVED,
	USV_C_INST_REFUSED,
	USV_C_INST_DONE,
	USV_C_INST_FAILED,
	USV_C_INST_EXCLUDED,
	USV_C_RESULT_SR,
	USV_C_RESULT_TAGGED,
	USV_C_BATCHES,
	USV_C_BATCH_IMAGES,
	USV_C_COUNT
};

#define USV_METRICS_MAX_CLASSES 64

struct usv_metrics;
struct usv_http;

/* Appends scrape-time families; returns 0 or a negative code. */
typedef int (*usv_metrics_extra_fn)(void *ctx, FILE *f);
/* 0 when healthy, else negative with a one-line reason. */
typedef int (*usv_health_fn)(void *ctx, char *why, size_t whylen);

int usv_metrics_new(struct usv_metrics **out);
void usv_metrics_free(struct usv_metrics *m);
void usv_metrics_inc(struct usv_metrics *m, enum usv_counter c, uint64_t n);
uint64_t usv_metrics_get(struct usv_metrics *m, enum usv_counter c);
void usv_metrics_observe_latency(struct usv_metrics *m, double seconds);
void usv_metrics_qa(struct usv_metrics *m, const char *label, int agrees, int uncertain);
void usv_metrics_set_model(struct usv_metrics *m, const char *sha256, const char *arch,
                           const char *name);
int usv_metrics_render(struct usv_metrics *m, usv_metrics_extra_fn extra, void *ctx, char **text,
                       size_t *len);
void usv_metrics_family(FILE *f, const char *name, const char *type, const char *help);

/* One request as a route sees it; every string is borrowed for the call. */
struct usv_http_request {
	const char *url;    /* path, without the query string */
	const char *method; /* "GET" or "HEAD" */
	void *conn;         /* private to the server */
};

/* Value of a query argument (URL-decoded) or of a request header; NULL
 * when absent. Borrowed for the duration of the route call. */
const char *usv_http_arg(const struct usv_http_request *rq, const char *name);
const char *usv_http_header(const struct usv_http_request *rq, const char *name);

#define USV_HTTP_MAX_HEADERS 6

struct usv_http_reply {
	unsigned status;
	const char *type; /* Content-Type; static */
	char *body;       /* malloc()ed; owned by the server once fn returns */
	size_t len;
	int nheaders;
	const char *header_name[USV_HTTP_MAX_HEADERS]; /* static */
	char header_value[USV_HTTP_MAX_HEADERS][160];
};

typedef int (*usv_http_route_fn)(void *ctx, const struct usv_http_request *rq,
                                 struct usv_http_reply *rep);

int usv_http_start(const char *bind, int port, struct usv_metrics *m, usv_metrics_extra_fn extra,
                   usv_health_fn health, void *ctx, struct usv_http **out, char *errbuf,
                   size_t errlen);
void usv_http_set_route(struct usv_http *h, const char *prefix, usv_http_route_fn fn, void *ctx);
void usv_http_stop(struct usv_http *h);

#endif
