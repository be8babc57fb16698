/*
 * NAME
 *	dcm_uid.c - pure helpers of results: derived UIDs, view table, result fill
 *
 * DESCRIPTION
 *	Result UIDs are "2.25." followed by the decimal value of the first 128
 *	bits (big-endian) of SHA-256 over the parts joined with '|' (ITU-T
 *	X.667 form of a UUID-derived OID). 2^128 has 39 decimal digits, so a UID
 *	has at most 44 characters. The decimal conversion is done by repeated
 *	division of a 16-byte big-endian number by 10, so no leading zero can
 *	appear (zero itself is written "0").
 *
 *	The view table holds the 11 abdominal views of the paper; unknown
 *	labels are described by themselves.
 *
 *	Nothing here touches DCMTK; everything is thread-safe.
 */
#include "usv/dcm_result.h"
#include "usv/err.h"
#include "usv/sha256.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- UIDs ------------------------------------------------------------ */

int usv_uid_derive(char out[USV_UID_MAX], const char *const *parts, size_t nparts)
{
	usv_sha256 c;
	uint8_t d[32], n[16];
	char digits[48];
	size_t nd = 0, i;

	if (!out || (!parts && nparts))
		return -EINVAL;
	usv_sha256_init(&c);
	for (i = 0; i < nparts; i++) {
		if (!parts[i])
			return -EINVAL;
		if (i)
			usv_sha256_update(&c, "|", 1);
		usv_sha256_update(&c, parts[i], strlen(parts[i]));
	}
	usv_sha256_final(&c, d);
	memcpy(n, d, 16);

	/* Repeated division of the 128-bit big-endian number by 10. */
	for (;;) {
		unsigned rem = 0;
		int nonzero = 0;

		for (i = 0; i < 16; i++) {
			unsigned cur = (rem << 8) | n[i];

			n[i] = (uint8_t)(cur / 10);
			rem = cur % 10;
			if (n[i])
				nonzero = 1;
		}
		digits[nd++] = (char)('0' + rem);
		if (!nonzero)
			break;
	}
	memcpy(out, "2.25.", 5);
	for (i = 0; i < nd; i++)
		out[5 + i] = digits[nd - 1 - i];
	out[5 + nd] = '\0';
	return 0;
}

int usv_uid_result_instance(char out[USV_UID_MAX], const char *src_sop_uid, uint32_t frame,
                            const char *model_sha256, const char *kind)
{
	char fr[16];
	const char *p[4];

	if (!src_sop_uid || !*src_sop_uid || !model_sha256 || !kind || !*kind)
		return -EINVAL;
	snprintf(fr, sizeof fr, "%u", (unsigned)frame);
	p[0] = src_sop_uid;
	p[1] = fr;
	p[2] = model_sha256;
	p[3] = kind;
	return usv_uid_derive(out, p, 4);
}

int usv_uid_result_series(char out[USV_UID_MAX], const char *src_series_uid,
                          const char *model_sha256, const char *kind)
{
	const char *p[4];

	if (!src_series_uid || !*src_series_uid || !model_sha256 || !kind || !*kind)
		return -EINVAL;
	p[0] = "series";
	p[1] = src_series_uid;
	p[2] = model_sha256;
	p[3] = kind;
	return usv_uid_derive(out, p, 4);
}

int usv_uid_valid(const char *s)
{
	size_t len, i, start = 0;

	if (!s)
		return 0;
	len = strlen(s);
	if (len == 0 || len > 64)
		return 0;
	for (i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			size_t clen = i - start;

			if (clen == 0)
				return 0;
			if (clen > 1 && s[start] == '0')
				return 0;
			start = i + 1;
		} else if (s[i] < '0' || s[i] > '9') {
			return 0;
		}
	}
	return 1;
}

/* ---- view table ------------------------------------------------------ */

#define SCT_LIVER "10200004", "Liver"
#define SCT_SPLEEN "78961009", "Spleen"
#define SCT_PANCREAS "15776009", "Pancreas"
#define SCT_KIDNEY "64033007", "Kidney"
#define SCT_GALLBLADDER "28231008", "Gallbladder"
#define SCT_LONG "38717003", "Longitudinal"
#define SCT_TRANS "62824007", "Transverse"
#define SCT_NONE NULL, NULL

static const usv_view_info views[] = {
    {"liver_left_long", "Liver left longitudinal", "LIVER-L-LONG", SCT_LIVER, SCT_LONG, 1},
    {"liver_left_trans", "Liver left transverse", "LIVER-L-TRANS", SCT_LIVER, SCT_TRANS, 1},
    {"liver_right_long", "Liver right longitudinal", "LIVER-R-LONG", SCT_LIVER, SCT_LONG, 1},
    {"liver_right_trans", "Liver right transverse", "LIVER-R-TRANS", SCT_LIVER, SCT_TRANS, 1},
    {"spleen", "Spleen", "SPLEEN", SCT_SPLEEN, SCT_NONE, 1},
    {"pancreas", "Pancreas", "PANCREAS", SCT_PANCREAS, SCT_NONE, 1},
    {"kidney_left_long", "Kidney left longitudinal", "KIDNEY-L-LONG", SCT_KIDNEY, SCT_LONG, 1},
    {"kidney_left_trans", "Kidney left transverse", "KIDNEY-L-TRANS", SCT_KIDNEY, SCT_TRANS, 1},
    {"kidney_right_long", "Kidney right longitudinal", "KIDNEY-R-LONG", SCT_KIDNEY, SCT_LONG, 1},
    {"kidney_right_trans", "Kidney right transverse", "KIDNEY-R-TRANS", SCT_KIDNEY, SCT_TRANS, 1},
    {"gallbladder", "Gallbladder", "GALLBLADDER", SCT_GALLBLADDER, SCT_NONE, 1},
};

size_t usv_view_count(void)
{
	return sizeof views / sizeof views[0];
}

const usv_view_info *usv_view_at(size_t i)
{
	return i < usv_view_count() ? &views[i] : NULL;
}

/* Canonical form of a label: lower case, '-'/' ' -> '_', "longitudinal" ->
 * "long", "transverse" -> "trans". Returns 0, or -1 when it does not fit. */
static int canon_label(const char *in, char *out, size_t outlen)
{
	static const struct {
		const char *from, *to;
	} words[] = {{"longitudinal", "long"},
	             {"transverse", "trans"},
	             {"sagittal", "long"},
	             {"gall_bladder", "gallbladder"}};
	char tmp[USV_RESULT_LABEL_MAX];
	size_t i, n = 0;

	for (i = 0; in[i]; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (n + 1 >= sizeof tmp)
			return -1;
		tmp[n++] = (ch == '-' || ch == ' ') ? '_' : (char)tolower(ch);
	}
	tmp[n] = '\0';
	/* Replace whole words (bounded by '_' or the ends). */
	n = 0;
	for (i = 0; tmp[i];) {
		size_t w, k;
		int done = 0;

		if (i == 0 || tmp[i - 1] == '_') {
			for (w = 0; w < sizeof words / sizeof words[0]; w++) {
				size_t fl = strlen(words[w].from);

				if (strncmp(tmp + i, words[w].from, fl) == 0 &&
				    (tmp[i + fl] == '\0' || tmp[i + fl] == '_')) {
					size_t tl = strlen(words[w].to);

					if (n + tl + 1 > outlen)
						return -1;
					for (k = 0; k < tl; k++)
						out[n++] = words[w].to[k];
					i += fl;
					done = 1;
					break;
				}
			}
		}
		if (!done) {
			if (n + 2 > outlen)
				return -1;
			out[n++] = tmp[i++];
		}
	}
	out[n] = '\0';
	return 0;
}

const usv_view_info *usv_view_lookup(const char *label)
{
	char c[USV_RESULT_LABEL_MAX];
	size_t i;

	if (!label || !*label || canon_label(label, c, sizeof c) < 0)
		return NULL;
	for (i = 0; i < usv_view_count(); i++)
		if (strcmp(c, views[i].key) == 0)
			return &views[i];
	return NULL;
}

int usv_view_describe(const char *label, usv_view_info *out)
{
	const usv_view_info *v;

	if (!label || !*label || !out)
		return -EINVAL;
	v = usv_view_lookup(label);
	if (v) {
		*out = *v;
		return 0;
	}
	memset(out, 0, sizeof *out);
	out->key = label;
	out->display = label;
	out->code_value = label;
	out->known = 0;
	return 0;
}

/* ---- results --------------------------------------------------------- */

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

int usv_result_fill(usv_result *r, const char *const *labels, const float *probs, size_t n,
                    size_t topk, char *errbuf, size_t errlen)
{
	size_t i, j;
	int used[USV_RESULT_MAX_CLASSES] = {0};

	if (!r || !labels || !probs)
		return usv_seterr(errbuf, errlen, -EINVAL, "result: NULL argument");
	if (n == 0 || n > USV_RESULT_MAX_CLASSES)
		return usv_seterr(errbuf, errlen, -EINVAL, "result: %zu classes (1..%d allowed)", n,
		                  USV_RESULT_MAX_CLASSES);
	for (i = 0; i < n; i++) {
		if (!labels[i] || !*labels[i] || strlen(labels[i]) >= USV_RESULT_LABEL_MAX)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "result: label %zu empty or longer than %d bytes", i,
			                  USV_RESULT_LABEL_MAX - 1);
		if (!isfinite(probs[i]) || probs[i] < 0.0f || probs[i] > 1.0f)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "result: probability %zu (%g) outside [0,1]", i,
			                  (double)probs[i]);
	}
	if (topk == 0)
		topk = 1;
	if (topk > n)
		topk = n;
	if (topk > USV_RESULT_MAX_TOPK)
		topk = USV_RESULT_MAX_TOPK;

	r->nclasses = (uint32_t)n;
	for (i = 0; i < n; i++) {
		copy_str(r->classes[i], sizeof r->classes[i], labels[i]);
		r->probs[i] = probs[i];
	}
	for (j = 0; j < topk; j++) {
		size_t best = n;

		for (i = 0; i < n; i++)
			if (!used[i] && (best == n || probs[i] > probs[best]))
				best = i;
		used[best] = 1;
		r->top[j].class_index = (int32_t)best;
		r->top[j].prob = probs[best];
	}
	r->ntop = (uint32_t)topk;
	r->pred_index = r->top[0].class_index;
	copy_str(r->pred_label, sizeof r->pred_label, r->classes[r->pred_index]);
	if (!r->algorithm_name[0])
		copy_str(r->algorithm_name, sizeof r->algorithm_name, "usview");
	return 0;
}

static int is_hex64(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[64] == '\0';
}

int usv_result_check(const usv_result *r, char *errbuf, size_t errlen)
{
	uint32_t i;

	if (!r)
		return usv_seterr(errbuf, errlen, -EINVAL, "result: NULL");
	if (!r->source_path[0] || !memchr(r->source_path, 0, sizeof r->source_path))
		return usv_seterr(errbuf, errlen, -EINVAL, "result: no source path");
	if (r->nclasses == 0 || r->nclasses > USV_RESULT_MAX_CLASSES)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: result has %u classes",
		                  r->source_path, (unsigned)r->nclasses);
	if (r->ntop == 0 || r->ntop > USV_RESULT_MAX_TOPK || r->ntop > r->nclasses)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: result has top-%u of %u classes",
		                  r->source_path, (unsigned)r->ntop, (unsigned)r->nclasses);
	for (i = 0; i < r->nclasses; i++) {
		if (!r->classes[i][0] || !memchr(r->classes[i], 0, USV_RESULT_LABEL_MAX))
			return usv_seterr(errbuf, errlen, -EINVAL, "%s: result label %u invalid",
			                  r->source_path, (unsigned)i);
		if (!isfinite(r->probs[i]) || r->probs[i] < 0.0f || r->probs[i] > 1.0f)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "%s: result probability %u outside [0,1]", r->source_path,
			                  (unsigned)i);
	}
	if (r->pred_index < 0 || (uint32_t)r->pred_index >= r->nclasses ||
	    strncmp(r->pred_label, r->classes[r->pred_index], USV_RESULT_LABEL_MAX) != 0)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: result prediction inconsistent",
		                  r->source_path);
	for (i = 0; i < r->ntop; i++)
		if (r->top[i].class_index < 0 || (uint32_t)r->top[i].class_index >= r->nclasses ||
		    !isfinite(r->top[i].prob) || r->top[i].prob < 0 || r->top[i].prob > 1)
			return usv_seterr(errbuf, errlen, -EINVAL, "%s: result top-%u invalid",
			                  r->source_path, (unsigned)i + 1);
	if (!is_hex64(r->model_sha256))
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "%s: model SHA-256 is not 64 lowercase hex digits",
		                  r->source_path);
	if (!memchr(r->model_name, 0, sizeof r->model_name) ||
	    !memchr(r->model_version, 0, sizeof r->model_version) ||
	    !memchr(r->algorithm_name, 0, sizeof r->algorithm_name) ||
	    !memchr(r->algorithm_version, 0, sizeof r->algorithm_version))
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: result string not terminated",
		                  r->source_path);
	if (!memchr(r->tech_label, 0, sizeof r->tech_label) ||
	    !memchr(r->tech_source, 0, sizeof r->tech_source))
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "%s: technologist label or source not terminated",
		                  r->source_path);
	if ((r->agrees != 0 && r->agrees != 1) || (r->agrees && !r->tech_label[0]) ||
	    (r->uncertain != 0 && r->uncertain != 1) || !isfinite(r->min_confidence) ||
	    r->min_confidence < 0 || r->min_confidence > 1)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "%s: result agreement / uncertain / min_confidence invalid",
		                  r->source_path);
	return 0;
}
