/*
 * NAME
 *	dcm_prepare.c - DICOM file to network input (decode, exclude, crop, resize)
 *
 * DESCRIPTION
 *	See usv/dcm_prepare.h. Shared by the daemon's workers, `usview
 *	preview` and the training import, so that training and inference see
 *	the same pixels.
 */
#include "usv/dcm_prepare.h"

#include "usv/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void usv_prepare_opts_init(usv_prepare_opts *o)
{
	memset(o, 0, sizeof *o);
	o->rules = NULL;
	o->frames = USV_FRAMES_FIRST;
	o->every_n = 1;
	o->max_frames = 64;
	o->colour_threshold = 0.02;
	o->chroma_min = 60;
	o->out_size = 256;
	o->to_grey = 0;
	o->frame = -1;
	o->keep_full = 0;
}

void usv_prepared_free(usv_prepared *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nframes; i++) {
		usv_image_free(p->frames[i].img);
		usv_image_free(p->frames[i].full);
	}
	free(p->frames);
	free(p);
}

/* Share of pixels whose channel spread max - min reaches chroma_min. */
static double colour_share(const usv_image *img, int chroma_min)
{
	if (img->c != 3)
		return 0.0;
	size_t n = (size_t)img->w * (size_t)img->h, hits = 0;
	const uint8_t *p = img->px;
	for (size_t i = 0; i < n; i++, p += 3) {
		int mx = p[0], mn = p[0];
		if (p[1] > mx)
			mx = p[1];
		if (p[1] < mn)
			mn = p[1];
		if (p[2] > mx)
			mx = p[2];
		if (p[2] < mn)
			mn = p[2];
		if (mx - mn >= chroma_min)
			hits++;
	}
	return n ? (double)hits / (double)n : 0.0;
}

/* Grey (c = 1) to c = 3 by replication; colour to grey x 3 when to_grey. */
static int to_rgb(usv_image *src, int to_grey, usv_image **out)
{
	if (src->c == 3 && !to_grey) {
		*out = src;
		return 0;
	}
	if (src->c == 3) {
		int rc = usv_image_to_grey(src, 3, out);
		usv_image_free(src);
		return rc;
	}
	usv_image *o = NULL;
	int rc = usv_image_new(src->w, src->h, 3, &o);
	if (rc) {
		usv_image_free(src);
		return rc;
	}
	size_t n = (size_t)src->w * (size_t)src->h;
	for (size_t i = 0; i < n; i++)
		o->px[3 * i] = o->px[3 * i + 1] = o->px[3 * i + 2] = src->px[i];
	usv_image_free(src);
	*out = o;
	return 0;
}

static int select_frames(const usv_prepare_opts *o, int nf, int *idx, int cap)
{
	int n = 0;
	if (o->frame >= 0) {
		if (o->frame >= nf)
			return -EINVAL;
		idx[n++] = o->frame;
		return n;
	}
	switch (o->frames) {
	case USV_FRAMES_FIRST:
		idx[n++] = 0;
		break;
	case USV_FRAMES_MIDDLE:
		idx[n++] = nf / 2;
		break;
	case USV_FRAMES_EVERY_NTH:
	case USV_FRAMES_ALL: {
		int step = o->frames == USV_FRAMES_ALL ? 1 : o->every_n;
		for (int f = 0; f < nf && n < cap; f += step)
			idx[n++] = f;
		break;
	}
	default:
		return -EINVAL;
	}
	return n;
}

int usv_dcm_prepare(const char *path, const usv_prepare_opts *opts, usv_prepared **out,
                    char *reason, size_t reasonlen)
{
	usv_prepare_opts def;
	if (!opts) {
		usv_prepare_opts_init(&def);
		opts = &def;
	}
	if (!path || !out)
		return usv_seterr(reason, reasonlen, -EINVAL, "usv_dcm_prepare: bad arguments");
	if (opts->max_frames < 1 || opts->out_size < 16 || opts->out_size > 1024 ||
	    opts->chroma_min < 1 || opts->chroma_min > 255 ||
	    (opts->frames == USV_FRAMES_EVERY_NTH && opts->every_n < 1) ||
	    (opts->nrules && !opts->rules))
		return usv_seterr(reason, reasonlen, -EINVAL, "%s: bad preparation options", path);

	usv_dcm *h = NULL;
	int rc = usv_dcm_open(path, &h, reason, reasonlen);
	if (rc)
		return rc;
	const usv_dcm_info *in = usv_dcm_get_info(h);
	usv_prepared *p = NULL;
	int *idx = NULL;
	char why[256];

	if (in->modality[0] && strcmp(in->modality, "US")) {
		rc = usv_seterr(reason, reasonlen, -USV_ERR_EXCLUDED, "%s: modality %s is not US",
		                path, in->modality);
		goto fail;
	}
	if (!in->has_pixel_data) {
		rc = usv_seterr(reason, reasonlen, -USV_ERR_EXCLUDED, "%s: no pixel data", path);
		goto fail;
	}
	if (!usv_dcm_can_decode(h, why, sizeof why)) {
		rc = usv_seterr(reason, reasonlen, -USV_ERR_UNSUPPORTED, "%s: %s", path, why);
		goto fail;
	}
	p = calloc(1, sizeof *p);
	int cap = opts->max_frames < in->frames ? opts->max_frames : in->frames;
	idx = calloc((size_t)cap + 1, sizeof *idx);
	if (!p || !idx) {
		rc = usv_seterr(reason, reasonlen, -ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	p->info = *in;
	int nsel = select_frames(opts, in->frames, idx, cap);
	if (nsel < 1) {
		rc = usv_seterr(reason, reasonlen, -EINVAL, "%s: frame %d not in 0..%d", path,
		                opts->frame, in->frames - 1);
		goto fail;
	}
	p->frames = calloc((size_t)nsel, sizeof *p->frames);
	if (!p->frames) {
		rc = usv_seterr(reason, reasonlen, -ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	size_t nrules = opts->nrules;
	const usv_crop_rule *rules = opts->rules;
	if (!rules)
		rules = usv_crop_default_rules(&nrules);
	usv_crop_attrs attrs = {in->manufacturer, in->model,   in->rows,
	                        in->cols,         in->regions, in->nregions};
	rc = usv_crop_choose(rules, nrules, &attrs, &p->crop, &p->crop_source, &p->crop_rule);
	if (rc) {
		usv_seterr(reason, reasonlen, rc, "%s: no crop box", path);
		goto fail;
	}
	for (int k = 0; k < nsel; k++) {
		usv_image *full = NULL, *crop = NULL, *rgb = NULL, *small = NULL;
		rc = usv_dcm_decode_frame(h, idx[k], &full, reason, reasonlen);
		if (rc)
			goto fail;
		rc = usv_image_crop(full, p->crop.x, p->crop.y, p->crop.w, p->crop.h, &crop);
		if (!opts->keep_full || (opts->keep_full == 2 && k > 0)) {
			usv_image_free(full);
			full = NULL;
		}
		if (rc) {
			usv_image_free(full);
			usv_seterr(reason, reasonlen, rc, "%s: crop failed", path);
			goto fail;
		}
		double share = colour_share(crop, opts->chroma_min);
		if (opts->colour_threshold >= 0 && share > opts->colour_threshold) {
			usv_image_free(crop);
			usv_image_free(full);
			rc =
			    usv_seterr(reason, reasonlen, -USV_ERR_EXCLUDED,
			               "%s: colour overlay: %.1f%% saturated colour pixels in crop "
			               "(frame %d, limit %.1f%%)",
			               path, 100.0 * share, idx[k], 100.0 * opts->colour_threshold);
			goto fail;
		}
		rc = to_rgb(crop, opts->to_grey, &rgb);
		if (!rc) {
			rc = usv_image_resize_area(rgb, opts->out_size, opts->out_size, &small);
			usv_image_free(rgb);
		}
		if (rc) {
			usv_image_free(full);
			usv_seterr(reason, reasonlen, rc, "%s: resize failed", path);
			goto fail;
		}
		p->frames[k].index = idx[k];
		p->frames[k].full = full;
		p->frames[k].img = small;
		p->frames[k].colour_share = share;
		p->nframes++;
	}
	free(idx);
	usv_dcm_free(h);
	*out = p;
	return 0;
fail:
	free(idx);
	usv_prepared_free(p);
	usv_dcm_free(h);
	return rc;
}
