/*
 * NAME
 *	ocr.c - burned-in text lines of a box, read with Tesseract
 *
 * DESCRIPTION
 *	See usv/ocr.h. Line finding: v = max(R, G, B) >= TEXT_ON marks text
 *	pixels; 8-connected components are labelled, those of glyph size
 *	(TEXT_H_MIN..TEXT_H_MAX rows, not much wider than a few glyphs, not
 *	a filled block) seed lines, components too large to be text (sector
 *	edges, grey bars, logos) are blanked. Seeds whose row ranges overlap
 *	form a line; a line is split where a horizontal gap exceeds three
 *	line heights. Each line is cut with a margin, scaled so that its
 *	height becomes about TARGET_H pixels (bilinear) and mapped to black on
 *	white with a ramp over the text threshold; hard-edged bitmap fonts
 *	are then blurred over half a stroke and thresholded, so that the
 *	corner-touching dots of their diagonals stay joined. The image,
 *	framed with white, is read by Tesseract (LSTM, single line, printable
 *	ASCII only). A lone glyph (a marker arrow, an icon) and a line cut by
 *	the top or bottom edge of the box where that edge is inside the frame
 *	(half a banner line) are not read.
 *
 *	Cache: the settings column (probe, preset, frame rate, gain, depth)
 *	looks the same on every frame of a scanner, so each usv_ocr keeps
 *	the last USV_OCR_CACHE_LINES line images it gave Tesseract with what
 *	Tesseract read, in a table inside the usv_ocr (no allocation per
 *	call), least recently used out first. The key is the exact image
 *	Tesseract would get (after thresholding, for bitmap fonts a black
 *	and white image): two independent 64-bit hashes of its bytes, its
 *	width and its height, so a hit gives what Tesseract would answer.
 */
#include "usv/ocr.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tesseract/capi.h>

#define DEFAULT_TESSDATA "/usr/share/tesseract-ocr/5/tessdata"

enum {
	TEXT_ON = 150,  /* v at or above: text pixel */
	RAMP_LO = 80,   /* v at or below: background in the line image */
	RAMP_HI = 200,  /* v at or above: full ink */
	TEXT_H_MIN = 5, /* glyph height range of a line seed */
	TEXT_H_MAX = 48,
	TARGET_H = 40, /* line height after upscaling */
	SCALE_MAX = 4,
	PAD = 12,           /* white frame around a line image */
	SMOOTH_LEVEL = 100, /* smoothed ink at or above: black */
	SOFT_RATIO = 8,     /* see stroke_width() */
	MAX_COMPONENTS = 65536,
};

/* A recognised line image: its key (two 64-bit hashes of the bytes given
 * to Tesseract, and their width and height) and what Tesseract read. */
typedef struct cache_entry {
	uint64_t h1, h2;
	int w, h;
	uint64_t stamp; /* last use; 0: empty */
	int conf;
	char text[USV_OCR_LINE_MAX];
} cache_entry;

#define WORD_CACHE (4 * USV_OCR_CACHE_LINES)
#define MAX_WORDS 16 /* words of a line the word cache looks at */

struct usv_ocr {
	TessBaseAPI *api;
	cache_entry cache[USV_OCR_CACHE_LINES];
	/* with usv_ocr_set_word_cache: words that Tesseract read, keyed like
	 * the lines (a separate table: the line cache stays as it is) */
	int word_cache;
	cache_entry *words; /* WORD_CACHE entries, allocated when turned on */
	uint64_t clock;
	size_t hits, misses;
	int32_t *label;
	size_t label_cap;
	uint8_t *v;
	uint8_t *line;
	size_t line_cap;
};

typedef struct comp {
	int x0, y0, x1, y1; /* inclusive */
	int n;
	int kind; /* 0 small, 1 seed, 2 blanked */
	int line;
} comp;

typedef struct seg {
	int x0, y0, x1, y1;
	int parts; /* seed components */
} seg;

/* Tesseract's LSTM runs OpenMP teams of its own; on a loaded machine with
 * one engine per thread they spin against each other and a line costs ten
 * times more. While a usv_ocr call runs, the calling thread's
 * max-active-levels is 0 (every parallel region gets one thread); the
 * previous value comes back afterwards. The OpenMP runtime is looked up at
 * run time: it is there when Tesseract was built with OpenMP, else this
 * does nothing. */
typedef struct omp_guard {
	void (*set)(int);
	int old;
} omp_guard;

static void omp_serial_begin(omp_guard *g)
{
	g->set = NULL;
	int (*get)(void) = NULL;
	*(void **)&g->set = dlsym(RTLD_DEFAULT, "omp_set_max_active_levels");
	*(void **)&get = dlsym(RTLD_DEFAULT, "omp_get_max_active_levels");
	if (!g->set || !get) {
		g->set = NULL;
		return;
	}
	g->old = get();
	g->set(0);
}

static void omp_serial_end(const omp_guard *g)
{
	if (g->set)
		g->set(g->old);
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *a)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, a);
}

/* Tesseract keeps some parameters (debug_file, ...) in globals that
 * TessBaseAPISetVariable and Init write: engines are set up and torn down
 * one at a time, while recognition runs in parallel. */
static pthread_mutex_t tess_setup = PTHREAD_MUTEX_INITIALIZER;

int usv_ocr_new(const char *tessdata_dir, usv_ocr **out, char *err, size_t errlen)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	const char *dir = tessdata_dir;
	if (!dir || !*dir)
		dir = getenv("TESSDATA_PREFIX");
	if (!dir || !*dir)
		dir = DEFAULT_TESSDATA;
	char path[4096];
	int pn = snprintf(path, sizeof path, "%s/eng.traineddata", dir);
	if (pn < 0 || (size_t)pn >= sizeof path) {
		set_err(err, errlen, "tessdata folder name too long: %.64s", dir);
		return -EINVAL;
	}
	if (access(path, R_OK) != 0) {
		set_err(err, errlen, "no Tesseract language data: %s not readable", path);
		return -ENOENT;
	}
	usv_ocr *o = calloc(1, sizeof *o);
	if (!o)
		return -ENOMEM;
	pthread_mutex_lock(&tess_setup);
	o->api = TessBaseAPICreate();
	if (!o->api) {
		pthread_mutex_unlock(&tess_setup);
		free(o);
		return -ENOMEM;
	}
	/* Tesseract's diagnostics go to its debug file, not to stderr. */
	TessBaseAPISetVariable(o->api, "debug_file", "/dev/null");
	char *names[] = {"load_system_dawg", "load_freq_dawg", "debug_file"};
	char *values[] = {"0", "0", "/dev/null"};
	if (TessBaseAPIInit4(o->api, dir, "eng", OEM_LSTM_ONLY, NULL, 0, names, values, 3, 0) !=
	    0) {
		pthread_mutex_unlock(&tess_setup);
		set_err(err, errlen, "Tesseract failed to load eng from %s", dir);
		usv_ocr_free(o);
		return -ENOENT;
	}
	TessBaseAPISetPageSegMode(o->api, PSM_SINGLE_LINE);
	TessBaseAPISetVariable(o->api, "user_defined_dpi", "300");
	/* the line image is always black on white: no second, inverted pass */
	TessBaseAPISetVariable(o->api, "tessedit_do_invert", "0");
	TessBaseAPISetVariable(o->api, "tessedit_char_whitelist",
	                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                       "0123456789 .,:;-+=/%#()<>*'_&");
	pthread_mutex_unlock(&tess_setup);
	*out = o;
	return 0;
}

int usv_ocr_set_word_cache(usv_ocr *o, int on)
{
	if (!o)
		return -EINVAL;
	if (on && !o->words) {
		o->words = calloc(WORD_CACHE, sizeof *o->words);
		if (!o->words)
			return -ENOMEM;
	}
	o->word_cache = on != 0;
	return 0;
}

void usv_ocr_cache_stats(const usv_ocr *o, size_t *hits, size_t *misses)
{
	if (hits)
		*hits = o ? o->hits : 0;
	if (misses)
		*misses = o ? o->misses : 0;
}

void usv_ocr_free(usv_ocr *o)
{
	if (!o)
		return;
	if (o->api) {
		pthread_mutex_lock(&tess_setup);
		TessBaseAPIEnd(o->api);
		TessBaseAPIDelete(o->api);
		pthread_mutex_unlock(&tess_setup);
	}
	free(o->label);
	free(o->v);
	free(o->line);
	free(o->words);
	free(o);
}

static int reserve(usv_ocr *o, size_t area)
{
	if (area <= o->label_cap)
		return 0;
	int32_t *l = realloc(o->label, area * sizeof *l);
	if (!l)
		return -ENOMEM;
	o->label = l;
	uint8_t *v = realloc(o->v, area);
	if (!v)
		return -ENOMEM;
	o->v = v;
	o->label_cap = area;
	return 0;
}

/* Labels the 8-connected sets of v >= TEXT_ON (labels 1..); returns the
 * count or -ENOMEM. Components beyond MAX_COMPONENTS are merged into the
 * last one, which is then blanked. */
static int label_components(const uint8_t *v, int w, int h, int32_t *lab, comp **out)
{
	size_t area = (size_t)w * h;
	memset(lab, 0, area * sizeof *lab);
	size_t cap = 256, n = 0;
	comp *c = malloc(cap * sizeof *c);
	int32_t *stack = malloc(area * sizeof *stack);
	if (!c || !stack) {
		free(c);
		free(stack);
		return -ENOMEM;
	}
	for (size_t i0 = 0; i0 < area; i0++) {
		if (lab[i0] || v[i0] < TEXT_ON)
			continue;
		if (n == cap) {
			if (cap >= MAX_COMPONENTS) {
				c[n - 1].kind = 2;
				continue;
			}
			comp *nc = realloc(c, cap * 2 * sizeof *c);
			if (!nc) {
				free(c);
				free(stack);
				return -ENOMEM;
			}
			c = nc;
			cap *= 2;
		}
		int32_t id = (int32_t)n + 1;
		comp *k = &c[n++];
		int x = (int)(i0 % (size_t)w), y = (int)(i0 / (size_t)w);
		*k = (comp){x, y, x, y, 0, 0, -1};
		size_t sp = 0;
		stack[sp++] = (int32_t)i0;
		lab[i0] = id;
		while (sp) {
			int32_t p = stack[--sp];
			int px = p % w, py = p / w;
			k->n++;
			if (px < k->x0)
				k->x0 = px;
			if (px > k->x1)
				k->x1 = px;
			if (py < k->y0)
				k->y0 = py;
			if (py > k->y1)
				k->y1 = py;
			for (int dy = -1; dy <= 1; dy++) {
				int ny = py + dy;
				if (ny < 0 || ny >= h)
					continue;
				for (int dx = -1; dx <= 1; dx++) {
					int nx = px + dx;
					if (nx < 0 || nx >= w)
						continue;
					size_t j = (size_t)ny * w + nx;
					if (lab[j] || v[j] < TEXT_ON)
						continue;
					lab[j] = id;
					stack[sp++] = (int32_t)j;
				}
			}
		}
	}
	free(stack);
	*out = c;
	return (int)n;
}

static void classify(comp *c, int n)
{
	for (int i = 0; i < n; i++) {
		if (c[i].kind == 2)
			continue;
		int w = c[i].x1 - c[i].x0 + 1, h = c[i].y1 - c[i].y0 + 1;
		double fill = (double)c[i].n / ((double)w * h);
		if (h > TEXT_H_MAX || w > 6 * TEXT_H_MAX || (w > 8 * h && w > 40) ||
		    (fill > 0.9 && w * h > 64))
			c[i].kind = 2;
		else if (h >= TEXT_H_MIN && w <= 5 * h + 6 && (fill >= 0.15 || w * h < 100))
			c[i].kind = 1;
		else
			c[i].kind = 0;
	}
}

static int cmp_seg(const void *a, const void *b)
{
	const seg *s = a, *t = b;
	if (s->y0 != t->y0)
		return s->y0 < t->y0 ? -1 : 1;
	return (s->x0 > t->x0) - (s->x0 < t->x0);
}

static int cmp_comp_x(const void *a, const void *b)
{
	const comp *s = *(const comp *const *)a, *t = *(const comp *const *)b;
	return (s->x0 > t->x0) - (s->x0 < t->x0);
}

/* Two glyphs or more, or one component wider than 1.5 line heights
 * (touching letters). */
static int wordlike(const seg *s)
{
	return s->parts > 1 || 2 * (s->x1 - s->x0 + 1) > 3 * (s->y1 - s->y0 + 1);
}

/* Groups seeds into lines (overlapping row ranges) and splits each line at
 * wide gaps. Returns the number of segments written (at most max). */
static size_t find_segments(comp *c, int n, int cut_top, int cut_bottom, seg *segs, size_t max)
{
	/* row ranges of seeds, merged: a simple O(n * lines) union */
	int nl = 0;
	int(*rng)[2] = malloc(sizeof *rng * (size_t)(n > 0 ? n : 1));
	comp **order = malloc(sizeof *order * (size_t)(n > 0 ? n : 1));
	if (!rng || !order) {
		free(rng);
		free(order);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		if (c[i].kind != 1)
			continue;
		int y0 = c[i].y0, y1 = c[i].y1, hit = -1;
		for (int l = 0; l < nl; l++)
			if (y0 <= rng[l][1] && y1 >= rng[l][0]) {
				hit = l;
				break;
			}
		if (hit < 0) {
			rng[nl][0] = y0;
			rng[nl][1] = y1;
			nl++;
		} else {
			if (y0 < rng[hit][0])
				rng[hit][0] = y0;
			if (y1 > rng[hit][1])
				rng[hit][1] = y1;
		}
	}
	/* merge ranges that grew into each other */
	for (int changed = 1; changed;) {
		changed = 0;
		for (int a = 0; a < nl && !changed; a++)
			for (int b = a + 1; b < nl && !changed; b++)
				if (rng[a][0] <= rng[b][1] && rng[a][1] >= rng[b][0]) {
					if (rng[b][0] < rng[a][0])
						rng[a][0] = rng[b][0];
					if (rng[b][1] > rng[a][1])
						rng[a][1] = rng[b][1];
					rng[b][0] = rng[nl - 1][0];
					rng[b][1] = rng[nl - 1][1];
					nl--;
					changed = 1;
				}
	}
	size_t ns = 0;
	for (int l = 0; l < nl; l++) {
		/* a line cut by the box's top or bottom edge (inside the
		 * frame: cut_top / cut_bottom give the edge rows, or -1) is not
		 * read */
		if (rng[l][0] == cut_top || rng[l][1] == cut_bottom)
			continue;
		int m = 0;
		for (int i = 0; i < n; i++)
			if (c[i].kind == 1 && c[i].y0 >= rng[l][0] && c[i].y1 <= rng[l][1])
				order[m++] = &c[i];
		qsort(order, (size_t)m, sizeof *order, cmp_comp_x);
		int lh = rng[l][1] - rng[l][0] + 1;
		/* a lone glyph (a marker, an icon) is not read */
		seg cur = {0};
		for (int i = 0; i < m; i++) {
			const comp *k = order[i];
			if (i > 0 && k->x0 - cur.x1 <= 3 * lh) {
				if (k->x1 > cur.x1)
					cur.x1 = k->x1;
				cur.parts++;
				continue;
			}
			if (i > 0 && wordlike(&cur) && ns < max)
				segs[ns++] = cur;
			cur = (seg){k->x0, rng[l][0], k->x1, rng[l][1], 1};
		}
		if (m > 0 && wordlike(&cur) && ns < max)
			segs[ns++] = cur;
	}
	free(rng);
	free(order);
	qsort(segs, ns, sizeof *segs, cmp_seg);
	return ns;
}

/* The cache key of a line image: FNV-1a 64 over the bytes, and a second,
 * independent hash (64-bit words mixed by multiply and xor-shift, with the
 * length) so that two different images share a key with odds of about
 * 2^-128. */
static void line_key(const uint8_t *img, size_t n, uint64_t *h1, uint64_t *h2)
{
	uint64_t a = 0xcbf29ce484222325ULL, b = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, img + i, 8);
		for (int k = 0; k < 8; k++) {
			a ^= img[i + k];
			a *= 0x100000001b3ULL;
		}
		b ^= w;
		b *= 0xff51afd7ed558ccdULL;
		b ^= b >> 33;
	}
	for (; i < n; i++) {
		a ^= img[i];
		a *= 0x100000001b3ULL;
		b ^= img[i];
		b *= 0xc4ceb9fe1a85ec53ULL;
		b ^= b >> 29;
	}
	b ^= b >> 33;
	b *= 0xc4ceb9fe1a85ec53ULL;
	b ^= b >> 33;
	*h1 = a;
	*h2 = b;
}

/* The entry of the key, or NULL; *slot gets the entry to fill on a miss
 * (an empty one, else the least recently used). */
static cache_entry *table_find(cache_entry *tab, size_t n, uint64_t h1, uint64_t h2, int w, int h,
                               cache_entry **slot)
{
	cache_entry *old = &tab[0];
	for (size_t i = 0; i < n; i++) {
		cache_entry *e = &tab[i];
		if (e->stamp && e->h1 == h1 && e->h2 == h2 && e->w == w && e->h == h)
			return e;
		if (e->stamp < old->stamp)
			old = e;
	}
	*slot = old;
	return NULL;
}

static cache_entry *cache_find(usv_ocr *o, uint64_t h1, uint64_t h2, int w, int h,
                               cache_entry **slot)
{
	return table_find(o->cache, USV_OCR_CACHE_LINES, h1, h2, w, h, slot);
}

/* The words of a line for the word cache: seed components of segment s,
 * left to right, grouped where the gap between them is at most a third of
 * the line height; word k covers the columns [col[2k], col[2k + 1]) of the
 * line image (cut at x0, scaled by scale, framed by PAD): its glyphs and a
 * margin of a fifth of the line height on each side, so that the same word
 * gives the same image wherever it stands in a line. Returns the number of
 * words, 0 when there are more than MAX_WORDS or none. */
static int line_words(const comp *c, int nc, const seg *s, int x0, int scale, int ow,
                      int col[2 * MAX_WORDS])
{
	int lh = s->y1 - s->y0 + 1, gap = (3 * lh) / 4 > 2 ? (3 * lh) / 4 : 2;
	int wx0[MAX_WORDS], wx1[MAX_WORDS], nw = 0, m = 0;
	const comp *in[4 * USV_OCR_LINE_MAX];
	/* the glyphs of the segment and the small marks between them ('.',
	 * '-'), in x order */
	for (int i = 0; i < nc; i++) {
		const comp *k = &c[i];
		int cy = (k->y0 + k->y1) / 2;
		if (k->kind == 2 || cy < s->y0 || cy > s->y1 || k->x0 > s->x1 || k->x1 < s->x0)
			continue;
		if (m == (int)(sizeof in / sizeof in[0]))
			return 0;
		in[m++] = k;
	}
	qsort(in, (size_t)m, sizeof in[0], cmp_comp_x);
	for (int i = 0; i < m; i++) {
		const comp *k = in[i];
		if (nw > 0 && k->x0 - wx1[nw - 1] <= gap) {
			if (k->x1 > wx1[nw - 1])
				wx1[nw - 1] = k->x1;
			continue;
		}
		if (nw == MAX_WORDS)
			return 0;
		wx0[nw] = k->x0;
		wx1[nw] = k->x1;
		nw++;
	}
	if (nw == 0)
		return 0;
	int g = lh / 5 > 1 ? lh / 5 : 1;
	for (int k = 0; k < nw; k++) {
		int a = PAD + (wx0[k] - g - x0) * scale, b = PAD + (wx1[k] + 1 + g - x0) * scale;
		col[2 * k] = a < 0 ? 0 : a;
		col[2 * k + 1] = b > ow ? ow : b;
		if (col[2 * k + 1] <= col[2 * k])
			return 0;
	}
	return nw;
}

/* Key of the columns [a, b) of the line image (copied into scratch). */
static void word_key(const uint8_t *img, int ow, int oh, int a, int b, uint8_t *scratch,
                     uint64_t *h1, uint64_t *h2)
{
	size_t w = (size_t)(b - a);
	for (int y = 0; y < oh; y++)
		memcpy(scratch + (size_t)y * w, img + (size_t)y * ow + a, w);
	line_key(scratch, w * (size_t)oh, h1, h2);
}

static void copy_text(char *dst, const char *src)
{
	while (*src == ' ' || *src == '\n' || *src == '\t' || *src == '\r')
		src++;
	size_t n = strlen(src);
	while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\n' || src[n - 1] == '\t' ||
	                 src[n - 1] == '\r'))
		n--;
	if (n > USV_OCR_LINE_MAX - 1) {
		n = USV_OCR_LINE_MAX - 1;
		/* do not cut a UTF-8 sequence */
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	size_t j = 0;
	for (size_t i = 0; i < n; i++)
		dst[j++] = (src[i] == '\n' || src[i] == '\t' || src[i] == '\r') ? ' ' : src[i];
	dst[j] = '\0';
}

/* img holds ink 0..255 on 0: box blur of radius r along rows then
 * columns (tmp: w * h scratch), then ink above SMOOTH_LEVEL becomes black
 * (0) on white (255). The blur joins the corner-touching dots of bitmap
 * fonts, so thin diagonals stay strokes after upscaling. */
static void smooth_threshold(uint8_t *img, uint8_t *tmp, int w, int h, int r)
{
	int d = 2 * r + 1;
	for (int y = 0; y < h; y++) {
		const uint8_t *s = img + (size_t)y * w;
		uint8_t *t = tmp + (size_t)y * w;
		int acc = 0;
		for (int x = -r; x <= r; x++)
			acc += (x >= 0 && x < w) ? s[x] : 0;
		for (int x = 0; x < w; x++) {
			t[x] = (uint8_t)(acc / d);
			int out = x - r, in = x + r + 1;
			acc += (in < w ? s[in] : 0) - (out >= 0 ? s[out] : 0);
		}
	}
	for (int x = 0; x < w; x++) {
		int acc = 0;
		for (int y = -r; y <= r; y++)
			acc += (y >= 0 && y < h) ? tmp[(size_t)y * w + x] : 0;
		for (int y = 0; y < h; y++) {
			img[(size_t)y * w + x] = acc / d >= SMOOTH_LEVEL ? 0 : 255;
			int out = y - r, in = y + r + 1;
			acc += (in < h ? tmp[(size_t)in * w + x] : 0) -
			       (out >= 0 ? tmp[(size_t)out * w + x] : 0);
		}
	}
}

/* The median length of the horizontal runs of text pixels in a cut (the
 * stroke width, 1..16), and whether the text is a hard-edged bitmap font:
 * fewer than one pixel in SOFT_RATIO of the text pixels' count lies between
 * RAMP_LO and TEXT_ON (anti-aliased or compressed text has many). */
static int stroke_width(const uint8_t *v, int bw, int x0, int y0, int cw, int ch, int *hard)
{
	int hist[17] = {0}, total = 0;
	long on = 0, mid = 0;
	for (int y = 0; y < ch; y++) {
		const uint8_t *row = v + (size_t)(y0 + y) * bw + x0;
		int run = 0;
		for (int x = 0; x <= cw; x++) {
			if (x < cw && row[x] >= TEXT_ON) {
				run++;
				on++;
				continue;
			}
			if (x < cw && row[x] > RAMP_LO)
				mid++;
			if (run > 0) {
				hist[run > 16 ? 16 : run]++;
				total++;
			}
			run = 0;
		}
	}
	*hard = mid * SOFT_RATIO < on;
	int acc = 0;
	for (int i = 1; i <= 16; i++) {
		acc += hist[i];
		if (2 * acc >= total)
			return i;
	}
	return 1;
}

/* After Tesseract read a line: when its words are exactly ours (one
 * Tesseract word whose box centre lies in each of our nw column ranges),
 * each word's text and confidence go into the word cache. */
static void learn_words(usv_ocr *o, const int *col, int nw, uint64_t (*wk)[2], int oh)
{
	char text[MAX_WORDS][USV_OCR_LINE_MAX];
	int conf[MAX_WORDS], seen[MAX_WORDS] = {0}, n = 0, ok = 1;
	TessResultIterator *ri = TessBaseAPIGetIterator(o->api);
	if (!ri)
		return;
	TessPageIterator *pi = TessResultIteratorGetPageIterator(ri);
	do {
		int l, t, r, b;
		if (!TessPageIteratorBoundingBox(pi, RIL_WORD, &l, &t, &r, &b))
			continue;
		char *wt = TessResultIteratorGetUTF8Text(ri, RIL_WORD);
		if (!wt)
			continue;
		int mid = (l + r) / 2, k = 0;
		while (k < nw && !(mid >= col[2 * k] && mid < col[2 * k + 1]))
			k++;
		n++;
		if (k == nw || seen[k]) {
			ok = 0;
		} else {
			seen[k] = 1;
			copy_text(text[k], wt);
			float cf = TessResultIteratorConfidence(ri, RIL_WORD);
			conf[k] = cf < 0 ? 0 : (int)cf;
			/* one word only: no space inside */
			if (!text[k][0] || strchr(text[k], ' '))
				ok = 0;
		}
		TessDeleteText(wt);
	} while (ok && TessPageIteratorNext(pi, RIL_WORD));
	TessResultIteratorDelete(ri);
	if (!ok || n != nw)
		return;
	for (int k = 0; k < nw; k++) {
		/* two words of the line may share a slot (both misses): find
		 * the slot again after each insertion */
		cache_entry *slot = NULL;
		cache_entry *e = table_find(o->words, WORD_CACHE, wk[k][0], wk[k][1],
		                            col[2 * k + 1] - col[2 * k], oh, &slot);
		if (!e)
			e = slot;
		*e = (cache_entry){wk[k][0], wk[k][1], col[2 * k + 1] - col[2 * k], oh, o->clock,
		                   conf[k],  {0}};
		memcpy(e->text, text[k], sizeof e->text);
	}
}

/* Builds the black-on-white image of one segment and reads it. */
static int read_segment(usv_ocr *o, int bw, int bh, const comp *c, int nc, const seg *s,
                        usv_ocr_line *out, int *got)
{
	*got = 0;
	int lh = s->y1 - s->y0 + 1;
	int m = lh / 4 + 2;
	int x0 = s->x0 - m, x1 = s->x1 + m, y0 = s->y0 - m, y1 = s->y1 + m;
	if (x0 < 0)
		x0 = 0;
	if (y0 < 0)
		y0 = 0;
	if (x1 > bw - 1)
		x1 = bw - 1;
	if (y1 > bh - 1)
		y1 = bh - 1;
	int cw = x1 - x0 + 1, ch = y1 - y0 + 1;
	int scale = (TARGET_H + lh / 2) / lh;
	if (scale < 1)
		scale = 1;
	if (scale > SCALE_MAX)
		scale = SCALE_MAX;
	int ow = cw * scale + 2 * PAD, oh = ch * scale + 2 * PAD;
	size_t need = (size_t)ow * oh;
	if (need > o->line_cap) {
		uint8_t *l = realloc(o->line, 2 * need);
		if (!l)
			return -ENOMEM;
		o->line = l;
		o->line_cap = need;
	}
	uint8_t *img = o->line;
	memset(img, 0, need);
	/* ink of the cut: a ramp over v, blanked where a non-text component is */
	float inv = 1.0f / (float)scale;
	for (int y = 0; y < ch * scale; y++) {
		float fy = ((float)y + 0.5f) * inv - 0.5f;
		int yi = (int)(fy < 0 ? -1 : fy);
		float ay = fy - (float)yi;
		int ya = yi < 0 ? 0 : yi, yb = yi + 1 > ch - 1 ? ch - 1 : yi + 1;
		for (int x = 0; x < cw * scale; x++) {
			float fx = ((float)x + 0.5f) * inv - 0.5f;
			int xi = (int)(fx < 0 ? -1 : fx);
			float ax = fx - (float)xi;
			int xa = xi < 0 ? 0 : xi, xb = xi + 1 > cw - 1 ? cw - 1 : xi + 1;
			float ink[4];
			int xs[2] = {xa, xb}, ys[2] = {ya, yb};
			for (int q = 0; q < 4; q++) {
				size_t i = (size_t)(y0 + ys[q >> 1]) * bw + (x0 + xs[q & 1]);
				int32_t l = o->label[i];
				int v = o->v[i];
				if (l && c[l - 1].kind == 2)
					v = 0;
				float t = (float)(v - RAMP_LO) / (float)(RAMP_HI - RAMP_LO);
				ink[q] = t < 0 ? 0 : (t > 1 ? 1 : t);
			}
			float top = ink[0] + (ink[1] - ink[0]) * ax;
			float bot = ink[2] + (ink[3] - ink[2]) * ax;
			float k = top + (bot - top) * ay;
			img[(size_t)(y + PAD) * ow + x + PAD] = (uint8_t)(255.0f * k + 0.5f);
		}
	}
	/* Hard-edged bitmap fonts: blur over about half a stroke after
	 * upscaling and threshold. Soft text keeps its grey edges. */
	int hard;
	int r = (stroke_width(o->v, bw, x0, y0, cw, ch, &hard) * scale) / 2;
	if (hard)
		smooth_threshold(img, img + need, ow, oh, r < 1 ? 1 : r);
	else
		for (size_t i = 0; i < need; i++)
			img[i] = (uint8_t)(255 - img[i]);
	/* no ink left (all blanked or below the ramp): nothing to read; a
	 * blank image would also make Tesseract invent (and leak) a blob */
	size_t ink = 0;
	for (size_t i = 0; i < need && !ink; i++)
		ink = img[i] < 128;
	if (!ink)
		return 0;
	/* the same image read before (the settings of a scanner, its probe
	 * name): Tesseract's answer again */
	uint64_t h1, h2;
	cache_entry *slot = NULL;
	line_key(img, need, &h1, &h2);
	cache_entry *hit = cache_find(o, h1, h2, ow, oh, &slot);
	o->clock++;
	/* the word cache: the line's words, each read before */
	int col[2 * MAX_WORDS], nw = 0;
	uint64_t wk[MAX_WORDS][2];
	cache_entry *wslot, *whit[MAX_WORDS];
	int all_words = 0;
	if (!hit && o->word_cache) {
		nw = line_words(c, nc, s, x0, scale, ow, col);
		all_words = nw > 0;
		for (int k = 0; k < nw; k++) {
			word_key(img, ow, oh, col[2 * k], col[2 * k + 1], img + need, &wk[k][0],
			         &wk[k][1]);
			whit[k] = table_find(o->words, WORD_CACHE, wk[k][0], wk[k][1],
			                     col[2 * k + 1] - col[2 * k], oh, &wslot);
			if (!whit[k] || !whit[k]->text[0])
				all_words = 0;
		}
	}
	if (hit) {
		o->hits++;
		hit->stamp = o->clock;
		memcpy(out->text, hit->text, sizeof out->text);
		out->conf = hit->conf;
	} else if (all_words) {
		/* every word read before: their texts joined by one space, as
		 * Tesseract joins the words of a line, and the mean of their
		 * confidences, as its mean text confidence */
		size_t len = 0;
		int conf = 0;
		out->text[0] = 0;
		for (int k = 0; k < nw; k++) {
			size_t tl = strlen(whit[k]->text);
			if (len + tl + 2 > sizeof out->text)
				break;
			if (k)
				out->text[len++] = ' ';
			memcpy(out->text + len, whit[k]->text, tl + 1);
			len += tl;
			conf += whit[k]->conf;
			whit[k]->stamp = o->clock;
		}
		out->conf = conf / nw;
		o->hits++;
		*slot = (cache_entry){h1, h2, ow, oh, o->clock, out->conf, {0}};
		memcpy(slot->text, out->text, sizeof slot->text);
	} else {
		o->misses++;
		TessBaseAPISetImage(o->api, img, ow, oh, 1, ow);
		TessBaseAPISetSourceResolution(o->api, 300);
		char *txt = TessBaseAPIGetUTF8Text(o->api);
		if (!txt)
			return -EIO;
		copy_text(out->text, txt);
		TessDeleteText(txt);
		out->conf = out->text[0] ? TessBaseAPIMeanTextConf(o->api) : 0;
		if (out->conf < 0)
			out->conf = 0;
		*slot = (cache_entry){h1, h2, ow, oh, o->clock, out->conf, {0}};
		memcpy(slot->text, out->text, sizeof slot->text);
		if (nw > 0)
			learn_words(o, col, nw, wk, oh);
	}
	if (!out->text[0])
		return 0;
	out->box = (usv_box){x0, y0, cw, ch};
	*got = 1;
	return 0;
}

static int read_box(usv_ocr *o, const usv_image *img, const usv_box *box, usv_ocr_line *lines,
                    size_t max, size_t *n, char *err, size_t errlen);

int usv_ocr_read_box(usv_ocr *o, const usv_image *img, const usv_box *box, usv_ocr_line *lines,
                     size_t max, size_t *n, char *err, size_t errlen)
{
	if (n)
		*n = 0;
	if (!o || !img || !img->px || !box || !n || (max && !lines) ||
	    (img->c != 1 && img->c != 3) || img->w < 1 || img->h < 1) {
		set_err(err, errlen, "ocr: %s", "bad arguments");
		return -EINVAL;
	}
	if (box->x < 0 || box->y < 0 || box->w < 1 || box->h < 1 || box->w > img->w - box->x ||
	    box->h > img->h - box->y) {
		set_err(err, errlen, "ocr: %s", "box outside the image");
		return -EINVAL;
	}
	if (max == 0)
		return 0;
	omp_guard og;
	omp_serial_begin(&og);
	int rc = read_box(o, img, box, lines, max, n, err, errlen);
	omp_serial_end(&og);
	return rc;
}

static int read_box(usv_ocr *o, const usv_image *img, const usv_box *box, usv_ocr_line *lines,
                    size_t max, size_t *n, char *err, size_t errlen)
{
	int bw = box->w, bh = box->h;
	size_t area = (size_t)bw * bh;
	if (reserve(o, area) != 0) {
		set_err(err, errlen, "ocr: %s", "out of memory");
		return -ENOMEM;
	}
	for (int y = 0; y < bh; y++) {
		const uint8_t *s = img->px + ((size_t)(box->y + y) * img->w + box->x) * img->c;
		uint8_t *d = o->v + (size_t)y * bw;
		if (img->c == 1) {
			memcpy(d, s, (size_t)bw);
		} else {
			for (int x = 0; x < bw; x++, s += 3) {
				uint8_t mx = s[0] > s[1] ? s[0] : s[1];
				d[x] = mx > s[2] ? mx : s[2];
			}
		}
	}
	comp *c = NULL;
	int nc = label_components(o->v, bw, bh, o->label, &c);
	if (nc < 0) {
		set_err(err, errlen, "ocr: %s", "out of memory");
		return -ENOMEM;
	}
	classify(c, nc);
	seg segs[USV_OCR_MAX_LINES];
	size_t ns = find_segments(c, nc, box->y > 0 ? 0 : -1, box->y + bh < img->h ? bh - 1 : -1,
	                          segs, USV_OCR_MAX_LINES);
	int rc = 0;
	for (size_t i = 0; i < ns && *n < max; i++) {
		int got = 0;
		rc = read_segment(o, bw, bh, c, nc, &segs[i], &lines[*n], &got);
		if (rc < 0) {
			set_err(err, errlen, "ocr: %s",
			        rc == -ENOMEM ? "out of memory"
			                      : "Tesseract failed to read a line");
			break;
		}
		if (got) {
			lines[*n].box.x += box->x;
			lines[*n].box.y += box->y;
			(*n)++;
		}
	}
	TessBaseAPIClear(o->api);
	free(c);
	return rc;
}
