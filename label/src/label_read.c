/*
 * NAME
 *	label_read.c - the label of one instance from its attributes and its
 *	burned-in annotations
 *
 * DESCRIPTION
 *	See usv/label_read.h. One prepare (decode, crop, resize) per file;
 *	OCR and the caliper search look at the first selected frame as
 *	decoded, before the crop.
 */
#include "usv/label_read.h"

#include "usv/err.h"
#include "usv/ocr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct usv_label_reader {
	const usv_label_table *table;
	usv_ocr *ocr;
	usv_prepare_opts prep;
	int keep_image;
	int labels_only; /* no caliper search; OCR only when no attribute before it maps */
};

/* The label sources by name, in the order they are tried. */
#define SRC_VIEW_CODE "dicom:ViewCodeSequence"
#define SRC_COMMENTS "dicom:ImageComments"
#define SRC_PROTOCOL "dicom:ProtocolName"
#define SRC_OCR "ocr"
#define SRC_SERIES "dicom:SeriesDescription"
#define SRC_ACQ "dicom:AcquisitionProtocolDescription"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void copy_str(char *dst, size_t len, const char *src)
{
	if (!len)
		return;
	size_t n = src ? strlen(src) : 0;
	if (n >= len)
		n = len - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = 0;
}

void usv_label_reader_opts_init(usv_label_reader_opts *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof *o);
	o->ocr = 1;
}

int usv_label_reader_new(const usv_label_reader_opts *opts, usv_label_reader **out, char *err,
                         size_t errlen)
{
	if (!opts || !out || !opts->table)
		return usv_seterr(err, errlen, -EINVAL, "label reader: no label table");
	usv_label_reader *r = calloc(1, sizeof *r);
	if (!r)
		return usv_seterr(err, errlen, -ENOMEM, "label reader: out of memory");
	r->table = opts->table;
	if (opts->prep)
		r->prep = *opts->prep;
	else
		usv_prepare_opts_init(&r->prep);
	r->prep.keep_full = 1;
	r->keep_image = opts->keep_image != 0;
	r->labels_only = opts->labels_only != 0;
	if (opts->ocr) {
		int rc = usv_ocr_new(opts->tessdata, &r->ocr, err, errlen);
		if (rc) {
			free(r);
			return rc;
		}
		/* labels only: words read before answer a line (ocr.h) */
		if (r->labels_only && usv_ocr_set_word_cache(r->ocr, 1) < 0) {
			usv_ocr_free(r->ocr);
			free(r);
			return usv_seterr(err, errlen, -ENOMEM, "label reader: out of memory");
		}
	}
	*out = r;
	return 0;
}

void usv_label_reader_free(usv_label_reader *r)
{
	if (!r)
		return;
	usv_ocr_free(r->ocr);
	free(r);
}

void usv_label_result_clear(usv_label_result *res)
{
	if (!res)
		return;
	usv_image_free(res->img);
	res->img = NULL;
}

const char *usv_label_excl_name(enum usv_label_excl kind)
{
	switch (kind) {
	case USV_LABEL_EXCL_COLOUR:
		return "colour";
	case USV_LABEL_EXCL_MEASUREMENT:
		return "measurement";
	case USV_LABEL_EXCL_POLICY:
		return "policy";
	default:
		return "";
	}
}

/* Records a string that named no single class (once per instance). */
static void add_unmapped(usv_label_result *res, const char *norm, const char *source,
                         enum usv_label_match m)
{
	if (!norm[0] || res->nunmapped >= USV_LABEL_MAX_UNMAPPED)
		return;
	for (size_t i = 0; i < res->nunmapped; i++)
		if (!strcmp(res->unmapped[i].text, norm))
			return;
	usv_label_unmapped *u = &res->unmapped[res->nunmapped++];
	copy_str(u->text, sizeof u->text, norm);
	copy_str(u->source, sizeof u->source, source);
	u->match = m;
}

/* The running decision over the sources. */
typedef struct pick {
	int cls; /* class of the first source that mapped, -1 */
	const char *source;
	int ambiguous; /* some text mapped to more than one class */
	int text;      /* some source had text */
} pick;

static void note(pick *k, int cls, enum usv_label_match m, const char *source)
{
	if (m == USV_LABEL_MAPPED && cls >= 0 && k->cls < 0) {
		k->cls = cls;
		k->source = source;
	}
	if (m == USV_LABEL_AMBIGUOUS)
		k->ambiguous = 1;
	if (m != USV_LABEL_EMPTY)
		k->text = 1;
}

/* Maps one DICOM attribute; record != 0: a coded / protocol attribute whose
 * unmapped text may go to the report. */
static void map_attr(const usv_label_reader *r, usv_label_result *res, pick *k, const char *text,
                     const char *source, int record)
{
	int cls = -1;
	enum usv_label_match m = USV_LABEL_EMPTY;
	char norm[USV_LABEL_UNMAPPED_LEN];
	norm[0] = 0;
	if (usv_label_map(r->table, text, &cls, &m, norm, sizeof norm))
		return;
	note(k, cls, m, source);
	if (record && (m == USV_LABEL_UNMAPPED || m == USV_LABEL_AMBIGUOUS))
		add_unmapped(res, norm, source, m);
}

static void copy_info(usv_label_result *res, const usv_dcm_info *in)
{
	copy_str(res->sop_instance_uid, sizeof res->sop_instance_uid, in->sop_instance_uid);
	copy_str(res->study_uid, sizeof res->study_uid, in->study_uid);
	copy_str(res->manufacturer, sizeof res->manufacturer, in->manufacturer);
	copy_str(res->model, sizeof res->model, in->model);
	res->frames = in->frames;
}

/* Index of the area holding the centre of b, or the first that overlaps. */
static size_t area_of(const usv_box *areas, size_t n, const usv_box *b)
{
	int cx = b->x + b->w / 2, cy = b->y + b->h / 2;
	for (size_t a = 0; a < n; a++)
		if (cx >= areas[a].x && cx < areas[a].x + areas[a].w && cy >= areas[a].y &&
		    cy < areas[a].y + areas[a].h)
			return a;
	for (size_t a = 0; a < n; a++)
		if (b->x < areas[a].x + areas[a].w && areas[a].x < b->x + b->w &&
		    b->y < areas[a].y + areas[a].h && areas[a].y < b->y + b->h)
			return a;
	return 0;
}

/* The frame with every pixel outside the annotation areas black, and the
 * box around the areas: one OCR pass reads a text line whole even where it
 * crosses from one area into the next (typed text at a corner of the
 * ultrasound box), and nothing outside the areas is ever seen. */
static int mask_areas(const usv_image *full, const usv_box *areas, size_t n, usv_image **out,
                      usv_box *bbox)
{
	usv_image *m = NULL;
	int rc = usv_image_new(full->w, full->h, full->c, &m);
	if (rc)
		return rc;
	memset(m->px, 0, (size_t)full->w * (size_t)full->h * (size_t)full->c);
	int x0 = full->w, y0 = full->h, x1 = 0, y1 = 0;
	for (size_t a = 0; a < n; a++) {
		const usv_box *b = &areas[a];
		for (int y = b->y; y < b->y + b->h; y++) {
			size_t off = ((size_t)y * (size_t)full->w + (size_t)b->x) * (size_t)full->c;
			memcpy(m->px + off, full->px + off, (size_t)b->w * (size_t)full->c);
		}
		x0 = b->x < x0 ? b->x : x0;
		y0 = b->y < y0 ? b->y : y0;
		x1 = b->x + b->w > x1 ? b->x + b->w : x1;
		y1 = b->y + b->h > y1 ? b->y + b->h : y1;
	}
	*bbox = (usv_box){x0, y0, x1 - x0, y1 - y0};
	*out = m;
	return 0;
}

/* OCR of the annotation areas: measurement lines counted, the first class
 * that a line (or an area's joined lines) maps to in *ocls, -1 when none
 * or when two disagree (*conflict). */
static int read_areas(usv_label_reader *r, const usv_prepared *p, const usv_image *full,
                      usv_label_result *res, int *ocls, int *conflict, char *err, size_t errlen)
{
	size_t nrules = 0, nareas = 0, n = 0;
	const usv_annot_rule *rules = usv_label_table_annot_rules(r->table, &nrules);
	usv_crop_attrs attrs = {p->info.manufacturer, p->info.model,   p->info.rows,
	                        p->info.cols,         p->info.regions, p->info.nregions};
	usv_box areas[USV_ANNOT_MAX_AREAS], bbox;
	*ocls = -1;
	*conflict = 0;
	int rc =
	    usv_annot_areas(rules, nrules, &attrs, &p->crop, areas, USV_ANNOT_MAX_AREAS, &nareas);
	if (rc)
		return usv_seterr(err, errlen, rc, "annotation areas: %s", usv_strerror(rc));
	if (!nareas)
		return 0;
	usv_ocr_line *lines = malloc(USV_OCR_MAX_LINES * sizeof *lines);
	usv_image *masked = NULL;
	double t0 = now_ms();
	if (!lines || mask_areas(full, areas, nareas, &masked, &bbox)) {
		free(lines);
		return usv_seterr(err, errlen, -ENOMEM, "out of memory");
	}
	rc = usv_ocr_read_box(r->ocr, masked, &bbox, lines, USV_OCR_MAX_LINES, &n, err, errlen);
	usv_image_free(masked);
	res->ms_ocr += now_ms() - t0;
	if (rc) {
		free(lines);
		return rc;
	}
	t0 = now_ms();
	res->ocr_lines = (int)n;
	for (size_t a = 0; a < nareas; a++) {
		char joined[USV_LABEL_MAX_TEXT];
		size_t jl = 0;
		int area_cls = -1, area_conflict = 0, nlines = 0;
		joined[0] = 0;
		for (size_t i = 0; i < n; i++) {
			if (area_of(areas, nareas, &lines[i].box) != a)
				continue;
			nlines++;
			const char *t = lines[i].text;
			if (usv_label_is_measurement_text(t)) {
				res->measurement_lines++;
				continue;
			}
			size_t tl = strlen(t);
			if (tl && jl + tl + 2 < sizeof joined) {
				if (jl)
					joined[jl++] = ' ';
				memcpy(joined + jl, t, tl);
				jl += tl;
				joined[jl] = 0;
			}
			int cls = -1;
			enum usv_label_match m = USV_LABEL_EMPTY;
			if (usv_label_map(r->table, t, &cls, &m, NULL, 0) || m != USV_LABEL_MAPPED)
				continue;
			if (area_cls < 0)
				area_cls = cls;
			else if (cls != area_cls)
				area_conflict = 1;
		}
		if (!nlines)
			continue;
		if (area_cls < 0 && jl) {
			int cls = -1;
			enum usv_label_match m = USV_LABEL_EMPTY;
			if (!usv_label_map(r->table, joined, &cls, &m, NULL, 0) &&
			    m == USV_LABEL_MAPPED)
				area_cls = cls;
		}
		if (area_cls < 0) {
			/* nothing in this area named a view: its strings go to
			 * the report (normalised, never the raw text) */
			for (size_t i = 0; i < n; i++) {
				const char *t = lines[i].text;
				if (area_of(areas, nareas, &lines[i].box) != a ||
				    usv_label_is_measurement_text(t))
					continue;
				int cls = -1;
				enum usv_label_match m = USV_LABEL_EMPTY;
				char norm[USV_LABEL_UNMAPPED_LEN];
				norm[0] = 0;
				if (!usv_label_map(r->table, t, &cls, &m, norm, sizeof norm) &&
				    (m == USV_LABEL_UNMAPPED || m == USV_LABEL_AMBIGUOUS))
					add_unmapped(res, norm, SRC_OCR, m);
			}
		}
		if (area_conflict)
			*conflict = 1;
		if (area_cls >= 0) {
			if (*ocls < 0)
				*ocls = area_cls;
			else if (*ocls != area_cls)
				*conflict = 1;
		}
	}
	res->ms_map += now_ms() - t0;
	free(lines);
	if (*conflict)
		*ocls = -1;
	return 0;
}

/* 1 when one of the attributes tried before OCR maps to exactly one class
 * (its label then wins whatever OCR reads). */
static int attr_label_before_ocr(const usv_label_reader *r, const usv_dcm_info *in)
{
	const char *texts[3] = {in->view_code_meaning, in->image_comments, in->protocol_name};
	for (size_t i = 0; i < 3; i++) {
		int cls = -1;
		enum usv_label_match m = USV_LABEL_EMPTY;
		if (!usv_label_map(r->table, texts[i], &cls, &m, NULL, 0) &&
		    m == USV_LABEL_MAPPED && cls >= 0)
			return 1;
	}
	return 0;
}

/* The sources in order over info (and the OCR verdict), into res. */
static void decide(usv_label_reader *r, const usv_dcm_info *in, int have_ocr, int ocls,
                   int oconflict, usv_label_result *res)
{
	double t0 = now_ms();
	pick k = {.cls = -1};
	map_attr(r, res, &k, in->view_code_meaning, SRC_VIEW_CODE, 1);
	map_attr(r, res, &k, in->image_comments, SRC_COMMENTS, 0);
	map_attr(r, res, &k, in->protocol_name, SRC_PROTOCOL, 1);
	if (have_ocr) {
		if (ocls >= 0)
			note(&k, ocls, USV_LABEL_MAPPED, SRC_OCR);
		else if (oconflict)
			note(&k, -1, USV_LABEL_AMBIGUOUS, SRC_OCR);
		else if (res->nunmapped)
			note(&k, -1, USV_LABEL_UNMAPPED, SRC_OCR);
	}
	map_attr(r, res, &k, in->series_description, SRC_SERIES, 0);
	map_attr(r, res, &k, in->acquisition_protocol_description, SRC_ACQ, 0);
	if (k.cls >= 0) {
		copy_str(res->label, sizeof res->label,
		         usv_label_table_class(r->table, (size_t)k.cls));
		copy_str(res->source, sizeof res->source, k.source);
		res->match = USV_LABEL_MAPPED;
	} else {
		res->match = k.ambiguous ? USV_LABEL_AMBIGUOUS
		             : k.text    ? USV_LABEL_UNMAPPED
		                         : USV_LABEL_EMPTY;
	}
	res->ms_map += now_ms() - t0;
}

/* prepare's reasons start with the path: keep what follows. */
static void set_reason(usv_label_result *res, const char *path, const char *why)
{
	size_t pl = strlen(path);
	if (!strncmp(why, path, pl) && why[pl] == ':' && why[pl + 1] == ' ')
		why += pl + 2;
	copy_str(res->reason, sizeof res->reason, why);
}

/* Attributes of an instance that prepare refused: the header alone. */
static void header_only(usv_label_reader *r, const char *path, usv_label_result *res)
{
	usv_dcm *h = NULL;
	double t0 = now_ms();
	if (usv_dcm_open(path, &h, NULL, 0))
		return;
	const usv_dcm_info *in = usv_dcm_get_info(h);
	copy_info(res, in);
	res->ms_decode += now_ms() - t0;
	decide(r, in, 0, -1, 0, res);
	usv_dcm_free(h);
}

/* What follows the prepare: UIDs, calipers, OCR, the decision over the
 * sources and the measurement exclusion, into res (whose colour exclusion,
 * if any, stays). p was prepared with keep_full. */
static int read_prepared(usv_label_reader *r, const usv_prepared *p, const char *path,
                         usv_label_result *res, char *err, size_t errlen)
{
	copy_info(res, &p->info);
	res->crop = p->crop;
	int ocls = -1, oconflict = 0, have_ocr = 0, rc;
	double t0;
	/* labels only: OCR is needed only when no attribute ahead of it in
	 * the order of the sources names a class */
	int need_ocr = !r->labels_only || !attr_label_before_ocr(r, &p->info);
	if (p->nframes > 0 && p->frames[0].full) {
		const usv_image *full = p->frames[0].full;
		res->ocr_frame = p->frames[0].index;
		if (!r->labels_only) {
			t0 = now_ms();
			rc = usv_annot_find_calipers(full, &p->crop, &res->calipers);
			res->ms_calipers = now_ms() - t0;
			if (rc)
				return usv_seterr(err, errlen, rc, "%s: caliper search: %s", path,
				                  usv_strerror(rc));
		}
		if (r->ocr && need_ocr) {
			char oerr[USV_ERRBUF];
			oerr[0] = 0;
			rc = read_areas(r, p, full, res, &ocls, &oconflict, oerr, sizeof oerr);
			if (rc)
				return usv_seterr(err, errlen, rc, "%s: OCR: %s", path, oerr);
			have_ocr = 1;
		}
	}
	decide(r, &p->info, have_ocr, ocls, oconflict, res);

	int marks = res->calipers.crosses, dots = res->calipers.dotted_lines;
	if (res->excluded) {
		/* colour: the first reason stays */
	} else if (marks > 0 || dots > 0) {
		res->excluded = 1;
		res->excl_kind = USV_LABEL_EXCL_MEASUREMENT;
		if (marks > 0 && dots > 0)
			snprintf(res->reason, sizeof res->reason,
			         "measurement: %d caliper mark%s, %d dotted line%s", marks,
			         marks == 1 ? "" : "s", dots, dots == 1 ? "" : "s");
		else if (marks > 0)
			snprintf(res->reason, sizeof res->reason, "measurement: %d caliper mark%s",
			         marks, marks == 1 ? "" : "s");
		else
			snprintf(res->reason, sizeof res->reason, "measurement: %d dotted line%s",
			         dots, dots == 1 ? "" : "s");
	} else if (res->measurement_lines > 0) {
		res->excluded = 1;
		res->excl_kind = USV_LABEL_EXCL_MEASUREMENT;
		copy_str(res->reason, sizeof res->reason, "measurement text in annotation area");
	}
	return 0;
}

int usv_label_read_prepared(usv_label_reader *r, const usv_prepared *p, const char *path,
                            usv_label_result *res, char *err, size_t errlen)
{
	if (!res)
		return usv_seterr(err, errlen, -EINVAL, "usv_label_read_prepared: bad arguments");
	memset(res, 0, sizeof *res);
	res->ocr_frame = -1;
	if (!r || !p || !path)
		return usv_seterr(err, errlen, -EINVAL, "usv_label_read_prepared: bad arguments");
	if (p->nframes > 0 && !p->frames[0].full)
		return usv_seterr(err, errlen, -EINVAL,
		                  "%s: prepared without keep_full: no frame to read", path);
	return read_prepared(r, p, path, res, err, errlen);
}

int usv_label_read(usv_label_reader *r, const char *path, usv_label_result *res, char *err,
                   size_t errlen)
{
	if (!res)
		return usv_seterr(err, errlen, -EINVAL, "usv_label_read: bad arguments");
	memset(res, 0, sizeof *res);
	res->ocr_frame = -1;
	if (!r || !path)
		return usv_seterr(err, errlen, -EINVAL, "usv_label_read: bad arguments");

	usv_prepared *p = NULL;
	char why[USV_ERRBUF];
	why[0] = 0;
	double t0 = now_ms();
	int rc = usv_dcm_prepare(path, &r->prep, &p, why, sizeof why);
	res->ms_decode = now_ms() - t0;
	if (rc == -USV_ERR_EXCLUDED) {
		res->excluded = 1;
		res->excl_kind =
		    strstr(why, "colour overlay") ? USV_LABEL_EXCL_COLOUR : USV_LABEL_EXCL_POLICY;
		set_reason(res, path, why);
		if (res->excl_kind == USV_LABEL_EXCL_COLOUR) {
			/* still excluded, but its label counts: the same frame
			 * again without the colour check, for OCR */
			usv_prepare_opts again = r->prep;
			again.colour_threshold = -1;
			t0 = now_ms();
			rc = usv_dcm_prepare(path, &again, &p, why, sizeof why);
			res->ms_decode += now_ms() - t0;
		}
		if (res->excl_kind != USV_LABEL_EXCL_COLOUR || rc) {
			header_only(r, path, res);
			return 0;
		}
	}
	if (rc) {
		header_only(r, path, res);
		if (!strncmp(why, path, strlen(path)))
			return usv_seterr(err, errlen, rc, "%s", why);
		return usv_seterr(err, errlen, rc, "%s: %s", path, why[0] ? why : usv_strerror(rc));
	}
	rc = read_prepared(r, p, path, res, err, errlen);
	if (rc == 0 && r->keep_image && p->nframes > 0 && !res->excluded) {
		res->img = p->frames[0].img;
		p->frames[0].img = NULL;
	}
	usv_prepared_free(p);
	return rc;
}
