/*
 * NAME
 *	crop.c - crop box choice: rules, ultrasound regions, centred square
 *
 * DESCRIPTION
 *	See usv/crop.h. The default rules are the two crops of the paper.
 */
#include "usv/crop.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

static const usv_crop_rule default_rules[] = {
    /* Philips EPIQ, 1024 x 768 frames: central 600 x 600 */
    {.manufacturer = "Philips",
     .model = "EPIQ",
     .rows = 768,
     .cols = 1024,
     .centred = 1,
     .box = {0, 0, 600, 600}},
    /* Toshiba (Canon) Aplio XG, 716 x 537 frames: central 372 x 372. The
     * model name as written by the scanner is not known to us, so the
     * rule keys on the vendor and the frame size. */
    {.manufacturer = "TOSHIBA",
     .model = NULL,
     .rows = 537,
     .cols = 716,
     .centred = 1,
     .box = {0, 0, 372, 372}},
    {.manufacturer = "CANON",
     .model = NULL,
     .rows = 537,
     .cols = 716,
     .centred = 1,
     .box = {0, 0, 372, 372}},
};

const usv_crop_rule *usv_crop_default_rules(size_t *n)
{
	if (n)
		*n = sizeof default_rules / sizeof default_rules[0];
	return default_rules;
}

const char *usv_crop_source_name(enum usv_crop_source src)
{
	switch (src) {
	case USV_CROP_RULE:
		return "rule";
	case USV_CROP_REGION:
		return "region";
	case USV_CROP_CENTRE:
		return "centre";
	}
	return "unknown";
}

/* Case-insensitive substring test; an empty or NULL needle matches. */
static int contains_ci(const char *hay, const char *needle)
{
	if (!needle || !*needle)
		return 1;
	if (!hay)
		return 0;
	size_t n = strlen(needle);
	for (const char *h = hay; *h; h++) {
		size_t i = 0;
		while (i < n && h[i] &&
		       tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
			i++;
		if (i == n)
			return 1;
	}
	return 0;
}

int usv_crop_device_matches(const char *manufacturer, const char *model, int rows, int cols,
                            const usv_crop_attrs *attrs)
{
	if (!attrs || (rows && rows != attrs->rows) || (cols && cols != attrs->cols))
		return 0;
	return contains_ci(attrs->manufacturer, manufacturer) && contains_ci(attrs->model, model);
}

static int rule_box(const usv_crop_rule *r, const usv_crop_attrs *a, usv_box *b)
{
	if (!usv_crop_device_matches(r->manufacturer, r->model, r->rows, r->cols, a))
		return 0;
	usv_box x = r->box;
	if (x.w < 1 || x.h < 1 || x.w > a->cols || x.h > a->rows)
		return 0;
	if (r->centred) {
		x.x = (a->cols - x.w) / 2;
		x.y = (a->rows - x.h) / 2;
	}
	if (x.x < 0 || x.y < 0 || x.x + x.w > a->cols || x.y + x.h > a->rows)
		return 0;
	*b = x;
	return 1;
}

int usv_crop_choose(const usv_crop_rule *rules, size_t nrules, const usv_crop_attrs *a,
                    usv_box *box, enum usv_crop_source *source, int *rule_index)
{
	if (!a || !box || (nrules && !rules) || (a->nregions && !a->regions) || a->rows < 1 ||
	    a->cols < 1 || a->rows > USV_CROP_MAX_DIM || a->cols > USV_CROP_MAX_DIM)
		return -EINVAL;
	if (rule_index)
		*rule_index = -1;
	for (size_t i = 0; i < nrules; i++) {
		if (rule_box(&rules[i], a, box)) {
			if (source)
				*source = USV_CROP_RULE;
			if (rule_index)
				*rule_index = (int)i;
			return 0;
		}
	}
	long long best_area = 0;
	usv_box best = {0, 0, 0, 0};
	for (size_t i = 0; i < a->nregions; i++) {
		const usv_us_region *g = &a->regions[i];
		if (g->spatial_format != USV_REGION_2D)
			continue;
		int x0 = g->x0 < 0 ? 0 : g->x0, y0 = g->y0 < 0 ? 0 : g->y0;
		int x1 = g->x1 > a->cols - 1 ? a->cols - 1 : g->x1;
		int y1 = g->y1 > a->rows - 1 ? a->rows - 1 : g->y1;
		if (x1 < x0 || y1 < y0)
			continue;
		long long area = (long long)(x1 - x0 + 1) * (y1 - y0 + 1);
		if (area > best_area) {
			best_area = area;
			best = (usv_box){x0, y0, x1 - x0 + 1, y1 - y0 + 1};
		}
	}
	if (best_area > 0) {
		*box = best;
		if (source)
			*source = USV_CROP_REGION;
		return 0;
	}
	int s = a->rows < a->cols ? a->rows : a->cols;
	*box = (usv_box){(a->cols - s) / 2, (a->rows - s) / 2, s, s};
	if (source)
		*source = USV_CROP_CENTRE;
	return 0;
}
