/*
 * NAME
 *	results_route.c - destinations from the configuration, the routing
 *	rule, and the one path of result files into the outboxes
 *
 * DESIGN
 *	A destination is built from the configuration in exactly one place
 *	(dest_from_config below); usviewd builds a usv_routes at start and
 *	at each reload and hands the same value to the sender and, inside the
 *	worker settings, to the workers. So the SOP-class filter, the kinds
 *	and the calling AE title cannot differ between "what the workers put
 *	into an outbox" and "what the sender believes the outbox is for".
 *
 *	usv_route_put() visits destinations in order and, per destination,
 *	the objects in the caller's order (the worker passes SRs frame by
 *	frame, then tagged copies), so the results index lists outputs in
 *	the same order as before the module existed. Each file is written to
 *	tmp/ first and renamed into the outbox; with USV_ROUTE_SYNC_LATER the
 *	directory fsync is left to one usv_route_sync() per batch, which is
 *	what keeps a worker batch at one fsync per outbox directory.
 */
#include "results_route.h"

#include "spool.h"
#include "worker.h"
#include "usv/config.h"
#include "usv/dcm_ae.h"
#include "usv/err.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- destinations ----------------------------------------------------- */

void usv_dest_defaults(usv_dest *d)
{
	if (!d)
		return;
	if (!d->kinds)
		d->kinds = USV_DEST_SR | USV_DEST_TAGGED;
	if (!d->max_attempts)
		d->max_attempts = 10;
	if (d->max_age_s <= 0)
		d->max_age_s = 72.0 * 3600.0;
	if (d->backoff_base_s <= 0)
		d->backoff_base_s = 30.0;
	if (d->backoff_max_s <= 0)
		d->backoff_max_s = 3600.0;
	if (d->acse_timeout_s <= 0)
		d->acse_timeout_s = 10;
	if (d->dimse_timeout_s <= 0)
		d->dimse_timeout_s = 60;
}

int usv_dest_check(const usv_dest *d, char *errbuf, size_t errlen)
{
	char why[128];
	uint32_t i;

	if (!d)
		return usv_seterr(errbuf, errlen, -EINVAL, "destination: NULL");
	if (!memchr(d->name, 0, sizeof d->name) || !usv_spool_dest_ok(d->name))
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "destination: invalid name (use [A-Za-z0-9_.-], 1..64)");
	if (!memchr(d->called_ae, 0, sizeof d->called_ae) ||
	    usv_dcm_ae_check(d->called_ae, why, sizeof why) < 0)
		return usv_seterr(errbuf, errlen, -EINVAL, "destination %s: invalid AE title",
		                  d->name);
	if (!memchr(d->calling_ae, 0, sizeof d->calling_ae) ||
	    usv_dcm_ae_check(d->calling_ae, why, sizeof why) < 0)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "destination %s: invalid calling AE title", d->name);
	if (!memchr(d->host, 0, sizeof d->host) || !d->host[0])
		return usv_seterr(errbuf, errlen, -EINVAL, "destination %s: no host", d->name);
	if (d->port == 0)
		return usv_seterr(errbuf, errlen, -EINVAL, "destination %s: port 0", d->name);
	if (d->kinds & ~(USV_DEST_SR | USV_DEST_TAGGED | USV_DEST_STUDY_SR))
		return usv_seterr(errbuf, errlen, -EINVAL, "destination %s: unknown kinds",
		                  d->name);
	if (d->nsop > USV_DEST_MAX_SOP)
		return usv_seterr(errbuf, errlen, -EINVAL, "destination %s: too many SOP classes",
		                  d->name);
	for (i = 0; i < d->nsop; i++)
		if (!memchr(d->sop_classes[i], 0, sizeof d->sop_classes[i]) ||
		    !d->sop_classes[i][0])
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "destination %s: empty SOP class", d->name);
	if (!memchr(d->tls_ca_file, 0, sizeof d->tls_ca_file) ||
	    !memchr(d->tls_certificate, 0, sizeof d->tls_certificate) ||
	    !memchr(d->tls_private_key, 0, sizeof d->tls_private_key) ||
	    !d->tls_certificate[0] != !d->tls_private_key[0] ||
	    (d->tls_certificate[0] && !d->tls_ca_file[0]) || d->tls_profile < 0 ||
	    d->tls_profile > 2)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "destination %s: invalid TLS settings (a ca_file is needed; "
		                  "certificate and private key go together)",
		                  d->name);
	if (!(d->backoff_base_s > 0) || !(d->backoff_max_s >= d->backoff_base_s) ||
	    !(d->max_age_s > 0) || d->max_attempts == 0 || d->max_attempts > 1000000 ||
	    d->acse_timeout_s <= 0 || d->acse_timeout_s > 3600 || d->dimse_timeout_s <= 0 ||
	    d->dimse_timeout_s > 3600)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "destination %s: invalid retry or timeout settings", d->name);
	return 0;
}

int usv_route_wants(const usv_dest *d, unsigned kind, const char *sop_class)
{
	unsigned kinds;
	uint32_t i;

	if (!d)
		return 0;
	kinds = d->kinds ? d->kinds : (USV_DEST_SR | USV_DEST_TAGGED);
	if (!(kinds & kind))
		return 0;
	if (d->nsop == 0 || !sop_class)
		return 1;
	for (i = 0; i < d->nsop && i < USV_DEST_MAX_SOP; i++)
		if (strcmp(d->sop_classes[i], sop_class) == 0)
			return 1;
	return 0;
}

/* The one mapping of a configured destination to a usv_dest. */
static int dest_from_config(const struct usv_config *cfg, const struct usv_config_dest *c,
                            usv_dest *d, char *errbuf, size_t errlen)
{
	if (c->port <= 0 || c->port > 65535 || c->n_sop_classes < 0 ||
	    c->n_sop_classes > USV_DEST_MAX_SOP || c->max_attempts < 0 ||
	    c->backoff_initial_s < 0 || c->backoff_max_s < 0 || c->max_age_h < 0)
		return usv_seterr(errbuf, errlen, -EINVAL, "destination %s: value out of range",
		                  c->name);
	memset(d, 0, sizeof *d);
	snprintf(d->name, sizeof d->name, "%s", c->name);
	snprintf(d->called_ae, sizeof d->called_ae, "%s", c->ae_title);
	snprintf(d->host, sizeof d->host, "%s", c->host);
	d->port = (uint16_t)c->port;
	snprintf(d->calling_ae, sizeof d->calling_ae, "%s", cfg->listen.ae_title);
	d->kinds = ((c->send & USV_CFG_SEND_SR) ? USV_DEST_SR : 0) |
	           ((c->send & USV_CFG_SEND_TAGGED) ? USV_DEST_TAGGED : 0) |
	           ((c->send & USV_CFG_SEND_STUDY_SR) ? USV_DEST_STUDY_SR : 0);
	d->nsop = (uint32_t)c->n_sop_classes;
	for (int i = 0; i < c->n_sop_classes; i++)
		snprintf(d->sop_classes[i], sizeof d->sop_classes[i], "%s", c->sop_classes[i]);
	d->max_attempts = (uint32_t)c->max_attempts;
	d->backoff_base_s = c->backoff_initial_s;
	d->backoff_max_s = c->backoff_max_s;
	d->max_age_s = c->max_age_h * 3600.0;
	d->acse_timeout_s = cfg->listen.acse_timeout;
	d->dimse_timeout_s = cfg->listen.dimse_timeout;
	snprintf(d->tls_ca_file, sizeof d->tls_ca_file, "%s", c->tls.ca_file);
	snprintf(d->tls_certificate, sizeof d->tls_certificate, "%s", c->tls.certificate);
	snprintf(d->tls_private_key, sizeof d->tls_private_key, "%s", c->tls.private_key);
	d->tls_profile = c->tls.profile;
	usv_dest_defaults(d);
	return usv_dest_check(d, errbuf, errlen);
}

int usv_routes_from_config(const struct usv_config *cfg, struct usv_routes *out, char *errbuf,
                           size_t errlen)
{
	struct usv_routes r;

	if (!cfg || !out)
		return usv_seterr(errbuf, errlen, -EINVAL, "routes: invalid arguments");
	if (cfg->n_destinations < 0 || cfg->n_destinations > USV_ROUTE_MAX_DESTS)
		return usv_seterr(errbuf, errlen, -EINVAL, "routes: %d destinations (at most %d)",
		                  cfg->n_destinations, USV_ROUTE_MAX_DESTS);
	memset(&r, 0, sizeof r);
	for (int i = 0; i < cfg->n_destinations; i++) {
		int rc = dest_from_config(cfg, &cfg->destinations[i], &r.dests[i], errbuf, errlen);
		if (rc < 0)
			return rc;
		for (int j = 0; j < i; j++)
			if (!strcmp(r.dests[j].name, r.dests[i].name))
				return usv_seterr(errbuf, errlen, -EINVAL,
				                  "destination %s: name used twice",
				                  r.dests[i].name);
		r.n++;
	}
	*out = r;
	return 0;
}

/* ---- outboxes --------------------------------------------------------- */

int usv_route_put(struct usv_spool *sp, const struct usv_routes *routes,
                  const struct usv_route_object *objs, size_t nobj, unsigned flags,
                  usv_route_write_fn write, void *ctx, struct usv_route_report *report,
                  char *errbuf, size_t errlen)
{
	struct usv_route_report rep = {0, 0, 0, 0};
	int r = 0;

	if (!sp || !routes || (nobj && !objs) || !write || routes->n > USV_ROUTE_MAX_DESTS) {
		r = usv_seterr(errbuf, errlen, -EINVAL, "routes: invalid arguments");
		goto out;
	}
	for (size_t i = 0; i < routes->n; i++) {
		const usv_dest *d = &routes->dests[i];
		for (size_t k = 0; k < nobj; k++) {
			char tmp[PATH_MAX], name[USV_SPOOL_ID_LEN];

			if (!usv_route_wants(d, objs[k].kind, objs[k].sop_class))
				continue;
			rep.failed_dest = i;
			rep.failed_obj = k;
			r = usv_spool_tmp_create(sp, NULL, tmp, sizeof tmp);
			if (r < 0) {
				usv_seterr(errbuf, errlen, r, "spool tmp: %s", usv_strerror(r));
				goto out;
			}
			r = write(ctx, d, i, k, tmp, errbuf, errlen);
			if (r < 0) {
				usv_spool_discard(sp, tmp);
				goto out;
			}
			r = (flags & USV_ROUTE_SYNC_LATER)
			        ? usv_spool_outbox_add(sp, d->name, tmp, name, sizeof name)
			        : usv_spool_outbox_put(sp, d->name, tmp, name, sizeof name);
			if (r < 0) {
				usv_spool_discard(sp, tmp);
				usv_seterr(errbuf, errlen, r, "outbox %s: %s", d->name,
				           usv_strerror(r));
				goto out;
			}
			if (i < 32)
				rep.used |= UINT32_C(1) << i;
			rep.nput++;
		}
	}
out:
	if (report)
		*report = rep;
	return r < 0 ? r : 0;
}

int usv_route_sync(struct usv_spool *sp, const struct usv_routes *routes, uint32_t used,
                   uint32_t *bad, char *errbuf, size_t errlen)
{
	int rc = 0;

	if (!sp || !routes)
		return usv_seterr(errbuf, errlen, -EINVAL, "routes: invalid arguments");
	for (size_t i = 0; i < routes->n && i < 32; i++) {
		if (!(used & (UINT32_C(1) << i)))
			continue;
		int r = usv_spool_outbox_sync(sp, routes->dests[i].name);
		if (r < 0) {
			if (bad)
				*bad |= UINT32_C(1) << i;
			rc = usv_seterr(errbuf, errlen, r, "outbox %s: %s", routes->dests[i].name,
			                usv_strerror(r));
		}
	}
	return rc;
}

/* ---- worker settings -------------------------------------------------- */

static int frames_policy(int cfg_policy, enum usv_frame_policy *out)
{
	switch (cfg_policy) {
	case USV_CFG_FRAMES_FIRST:
		*out = USV_FRAMES_FIRST;
		return 0;
	case USV_CFG_FRAMES_MIDDLE:
		*out = USV_FRAMES_MIDDLE;
		return 0;
	case USV_CFG_FRAMES_EVERY_NTH:
		*out = USV_FRAMES_EVERY_NTH;
		return 0;
	case USV_CFG_FRAMES_ALL:
		*out = USV_FRAMES_ALL;
		return 0;
	default:
		return -EINVAL;
	}
}

int usv_worker_settings_from_config(const struct usv_config *cfg, struct usv_worker_settings *out,
                                    char *errbuf, size_t errlen)
{
	struct usv_worker_settings *s;
	int r;

	if (!cfg || !out)
		return usv_seterr(errbuf, errlen, -EINVAL, "worker settings: invalid arguments");
	if (cfg->n_crop < 0 || cfg->n_crop > USV_WORKER_MAX_CROPS)
		return usv_seterr(errbuf, errlen, -EINVAL, "crop: %d rules (at most %d)",
		                  cfg->n_crop, USV_WORKER_MAX_CROPS);
	/* about 40 KiB: kept off the (worker-sized) stack */
	s = calloc(1, sizeof *s);
	if (!s)
		return usv_seterr(errbuf, errlen, -ENOMEM, "worker settings: out of memory");
	r = frames_policy(cfg->frames.policy, &s->frames);
	if (r < 0) {
		usv_seterr(errbuf, errlen, r, "frames.policy: unknown value %d",
		           cfg->frames.policy);
		goto out;
	}
	for (int i = 0; i < cfg->n_crop; i++) {
		const struct usv_config_crop *c = &cfg->crop[i];
		struct usv_worker_crop *w = &s->crops[i];
		snprintf(w->manufacturer, sizeof w->manufacturer, "%s", c->manufacturer);
		snprintf(w->model, sizeof w->model, "%s", c->model);
		w->rows = c->rows;
		w->cols = c->cols;
		w->centred = c->x < 0 || c->y < 0;
		w->box = (usv_box){c->x < 0 ? 0 : c->x, c->y < 0 ? 0 : c->y, c->width, c->height};
	}
	s->ncrops = (size_t)cfg->n_crop;
	s->every_n = cfg->frames.n;
	s->colour_threshold = cfg->exclusion.colour_fraction;
	s->top_k = cfg->model.top_k;
	s->batch_wait_ms = cfg->model.batch_wait_ms;
	s->min_confidence = cfg->model.min_confidence;
	s->test_views = cfg->model.test_views;
	s->qa_labels = cfg->qa.labels != 0;
	s->qa_ocr = cfg->qa.ocr != 0;
	if (strlen(cfg->qa.tessdata) >= sizeof s->qa_tessdata) {
		r = usv_seterr(errbuf, errlen, -EINVAL, "qa.tessdata: path longer than %zu bytes",
		               sizeof s->qa_tessdata - 1);
		goto out;
	}
	snprintf(s->qa_tessdata, sizeof s->qa_tessdata, "%s", cfg->qa.tessdata);
	r = usv_routes_from_config(cfg, &s->routes, errbuf, errlen);
	if (r == 0)
		*out = *s;
out:
	free(s);
	return r;
}
