/*
 * NAME
 *	label_text.c - the view vocabulary: YAML synonym table, typed text to a
 *	class, and measurement text
 *
 * DESCRIPTION
 *	DESIGN. The built-in table is YAML text (DEFAULT_YAML, the content of
 *	label/views.yaml without its comments) parsed by the same loader as a
 *	site's file, so the default can never be something a file could not
 *	say. A table lives in one allocation of fixed arrays sized by the caps
 *	of label_text.h; loading fills it, then finish() sorts the one-word
 *	synonyms for binary search and appends the built-in annotation rules.
 *	After that the table is read-only: usv_label_map() keeps all its state
 *	on the stack (the text is read up to USV_LABEL_MAX_TEXT - 1 bytes), so
 *	any number of threads may share one table.
 *
 *	Matching, in four passes over the words that are not numbers:
 *	multi-word synonyms exactly, multi-word synonyms with one slip in
 *	some of their long words, one-word synonyms exactly, then one-word
 *	synonyms at Damerau distance 1 (one letter changed, added, dropped,
 *	or two neighbours swapped) for words of 4 characters or more, and
 *	for words of 2 or 3 characters one substitution inside an OCR
 *	confusion class (confusions[]: KIO for KID, G8 for GB, TRU for TRV).
 *	A slip counts only when every synonym that close names the same
 *	concept (a confusion: when it reaches exactly one synonym and no
 *	synonym of another concept is at Damerau distance 1); when they name
 *	different concepts the text is ambiguous.
 */
#include "usv/label_text.h"
#include "usv/err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define LT_WORD_MAX 32   /* bytes of one synonym word, NUL included */
#define LT_SYN_WORDS 4   /* words of one synonym */
#define LT_NAME_MAX 32   /* bytes of a concept name, NUL included */
#define LT_KEY_MAX 64    /* bytes of a class key, NUL included */
#define LT_PHRASE_MAX 16 /* concepts of one phrase */
#define LT_STR_MAX 256   /* bytes of manufacturer / model */
#define LT_FILE_MAX (1u << 20)
#define LT_SET_WORDS ((USV_LABEL_MAX_WORDS + 63) / 64)
#define LT_TOKENS (USV_LABEL_MAX_TEXT / 2 + 1)
#define LT_FUZZY_MIN 4 /* shortest word that may carry a slip */
#define LT_SHORT_MIN 2 /* shortest word that may carry an OCR confusion */

struct lt_syn {
	char w[LT_SYN_WORDS][LT_WORD_MAX];
	unsigned char len[LT_SYN_WORDS];
	unsigned nw;
	unsigned concept;
};

struct lt_phrase {
	unsigned cls;
	unsigned n;
	unsigned short c[LT_PHRASE_MAX]; /* sorted, distinct */
};

struct lt_class {
	char key[LT_KEY_MAX];
	unsigned nphrases;
};

struct usv_label_table {
	char concepts[USV_LABEL_MAX_WORDS][LT_NAME_MAX];
	size_t nconcepts;
	struct lt_syn syns[USV_LABEL_MAX_WORDS];
	size_t nsyns;
	struct lt_class classes[USV_LABEL_MAX_CLASSES];
	size_t nclasses;
	struct lt_phrase phrases[USV_LABEL_MAX_CLASSES * USV_LABEL_MAX_PHRASES];
	size_t nphrases;
	/* the file's annotation rules; their strings are owned */
	usv_annot_rule file_rules[USV_LABEL_MAX_RULES];
	size_t nfile_rules;
	/* built by finish() */
	unsigned short single[USV_LABEL_MAX_WORDS]; /* one-word synonyms, sorted */
	size_t nsingle;
	unsigned short multi[USV_LABEL_MAX_WORDS]; /* multi-word, longest first */
	size_t nmulti;
	usv_annot_rule *rules; /* file rules then usv_annot_default_rules() */
	size_t nrules;
};

/* The built-in table: label/views.yaml without its comments. */
static const char DEFAULT_YAML[] =
    "replace_defaults: true\n"
    "words:\n"
    "  left: [left, lt, l, lft]\n"
    "  right: [right, rt, r, rgt]\n"
    "  long: [long, longitudinal, sag, sagittal, coronal]\n"
    "  trans: [trans, transverse, transv, trv, trx, ax, axial, short axis]\n"
    "  liver: [liver, liv]\n"
    "  kidney: [kidney, kid, renal]\n"
    "  spleen: [spleen, spl]\n"
    "  pancreas: [pancreas, panc]\n"
    "  gallbladder: [gallbladder, gall bladder, gb]\n"
    "classes:\n"
    "  liver_left_long: [\"liver left long\"]\n"
    "  liver_left_trans: [\"liver left trans\"]\n"
    "  liver_right_long: [\"liver right long\"]\n"
    "  liver_right_trans: [\"liver right trans\"]\n"
    "  spleen: [\"spleen\", \"spleen long\", \"spleen trans\",\n"
    "           \"spleen left\", \"spleen left long\", \"spleen left trans\"]\n"
    "  pancreas: [\"pancreas\", \"pancreas long\", \"pancreas trans\"]\n"
    "  kidney_left_long: [\"kidney left long\"]\n"
    "  kidney_left_trans: [\"kidney left trans\"]\n"
    "  kidney_right_long: [\"kidney right long\"]\n"
    "  kidney_right_trans: [\"kidney right trans\"]\n"
    "  gallbladder: [\"gallbladder\", \"gallbladder long\", \"gallbladder trans\"]\n"
    "annotation_areas: []\n";

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int is_alpha(int ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

static int is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

static int is_alnum(int ch)
{
	return is_alpha(ch) || is_digit(ch);
}

static int to_upper(int ch)
{
	return (ch >= 'a' && ch <= 'z') ? ch - 'a' + 'A' : ch;
}

/* Damerau distance of a and b is at most 1. */
static int within1(const char *a, size_t la, const char *b, size_t lb)
{
	size_t i = 0;

	if (la < lb) {
		const char *s = a;
		size_t l = la;
		a = b;
		la = lb;
		b = s;
		lb = l;
	}
	if (la - lb > 1)
		return 0;
	while (i < lb && a[i] == b[i])
		i++;
	if (la == lb) {
		if (i == la)
			return 1;
		if (memcmp(a + i + 1, b + i + 1, la - i - 1) == 0)
			return 1;
		return i + 1 < la && a[i] == b[i + 1] && a[i + 1] == b[i] &&
		       memcmp(a + i + 2, b + i + 2, la - i - 2) == 0;
	}
	/* a is one longer: drop a[i] */
	return memcmp(a + i + 1, b + i, lb - i) == 0;
}

/* ------------------------------------------------------------------ */
/* loading                                                             */

struct ctx {
	const char *file;
	char *err;
	size_t errlen;
	usv_label_table *t;
};

__attribute__((format(printf, 4, 5))) static int fail(const struct ctx *c, const yaml_node_t *n,
                                                      int code, const char *fmt, ...)
{
	char why[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (n)
		return usv_seterr(c->err, c->errlen, code, "%s:%zu:%zu: %s", c->file,
		                  (size_t)n->start_mark.line + 1, (size_t)n->start_mark.column + 1,
		                  why);
	return usv_seterr(c->err, c->errlen, code, "%s: %s", c->file, why);
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A scalar that is a YAML null (~, null, or nothing). */
static int is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	s = scalar(n);
	return !*s || !strcmp(s, "~") || !strcasecmp(s, "null");
}

static int want_scalar(const struct ctx *c, const yaml_node_t *n, const char *what)
{
	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, -EINVAL, "%s: expected a scalar, found %s", what, node_kind(n));
	return 0;
}

static int get_int(const struct ctx *c, const yaml_node_t *n, const char *what, long lo, long hi,
                   int *out)
{
	char *end;
	long v;
	int r = want_scalar(c, n, what);

	if (r < 0)
		return r;
	errno = 0;
	v = strtol(scalar(n), &end, 10);
	if (!*scalar(n) || *end || errno)
		return fail(c, n, -EINVAL, "%s: '%s' is not an integer", what, scalar(n));
	if (v < lo || v > hi)
		return fail(c, n, -EINVAL, "%s: %ld is out of range [%ld, %ld]", what, v, lo, hi);
	*out = (int)v;
	return 0;
}

static int get_bool(const struct ctx *c, const yaml_node_t *n, const char *what, int *out)
{
	int r = want_scalar(c, n, what);
	const char *s;

	if (r < 0)
		return r;
	s = scalar(n);
	if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
		*out = 1;
	else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off"))
		*out = 0;
	else
		return fail(c, n, -EINVAL, "%s: '%s' is not true or false", what, s);
	return 0;
}

/* A name of lower-case letters, digits and '_' shorter than max bytes. */
static int check_name(const struct ctx *c, const yaml_node_t *n, const char *what, size_t max)
{
	const char *s;
	size_t len, i;
	int r = want_scalar(c, n, what);

	if (r < 0)
		return r;
	s = scalar(n);
	len = strlen(s);
	if (len == 0 || len >= max)
		return fail(c, n, -EINVAL, "%s '%s': must have 1 to %zu characters", what, s,
		            max - 1);
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || is_digit(s[i]) || s[i] == '_'))
			return fail(c, n, -EINVAL,
			            "%s '%s': only lower-case letters, digits and '_' are allowed",
			            what, s);
	return 0;
}

static long find_concept(const usv_label_table *t, const char *name)
{
	for (size_t i = 0; i < t->nconcepts; i++)
		if (!strcmp(t->concepts[i], name))
			return (long)i;
	return -1;
}

static long find_class(const usv_label_table *t, const char *key)
{
	for (size_t i = 0; i < t->nclasses; i++)
		if (!strcmp(t->classes[i].key, key))
			return (long)i;
	return -1;
}

/* Splits a synonym into upper-case words. */
static int parse_synonym(const struct ctx *c, const yaml_node_t *n, const char *concept,
                         struct lt_syn *syn)
{
	const char *s = scalar(n);
	int letters = 0;

	memset(syn, 0, sizeof *syn);
	while (*s) {
		size_t len = 0;
		int alpha = 0;

		if (!is_alnum((unsigned char)*s)) {
			s++;
			continue;
		}
		if (syn->nw == LT_SYN_WORDS)
			return fail(c, n, -EINVAL, "%s: synonym '%s' has more than %d words",
			            concept, scalar(n), LT_SYN_WORDS);
		while (is_alnum((unsigned char)s[len])) {
			if (len + 1 >= LT_WORD_MAX)
				return fail(c, n, -EINVAL,
				            "%s: synonym '%s' has a word longer than %d characters",
				            concept, scalar(n), LT_WORD_MAX - 1);
			syn->w[syn->nw][len] = (char)to_upper((unsigned char)s[len]);
			alpha |= is_alpha((unsigned char)s[len]);
			len++;
		}
		if (!alpha)
			return fail(c, n, -EINVAL,
			            "%s: synonym '%s' has a word of digits only (numbers are "
			            "never matched)",
			            concept, scalar(n));
		letters = 1;
		syn->len[syn->nw++] = (unsigned char)len;
		s += len;
	}
	if (!letters)
		return fail(c, n, -EINVAL, "%s: synonym '%s' has no word", concept, scalar(n));
	return 0;
}

static int same_words(const struct lt_syn *a, const struct lt_syn *b)
{
	if (a->nw != b->nw)
		return 0;
	for (unsigned i = 0; i < a->nw; i++)
		if (strcmp(a->w[i], b->w[i]))
			return 0;
	return 1;
}

static int add_synonym(const struct ctx *c, const yaml_node_t *n, size_t concept)
{
	usv_label_table *t = c->t;
	struct lt_syn syn;
	int r;

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, -EINVAL, "%s: a synonym must be a scalar, found %s",
		            t->concepts[concept], node_kind(n));
	r = parse_synonym(c, n, t->concepts[concept], &syn);
	if (r < 0)
		return r;
	syn.concept = (unsigned)concept;
	for (size_t i = 0; i < t->nsyns; i++) {
		if (!same_words(&t->syns[i], &syn))
			continue;
		if (t->syns[i].concept == concept)
			return 0;
		return fail(c, n, -EINVAL, "%s: '%s' is already a synonym of %s",
		            t->concepts[concept], scalar(n), t->concepts[t->syns[i].concept]);
	}
	if (t->nsyns == USV_LABEL_MAX_WORDS)
		return fail(c, n, -USV_ERR_LIMIT, "more than %d synonyms", USV_LABEL_MAX_WORDS);
	t->syns[t->nsyns++] = syn;
	return 0;
}

static int load_words(const struct ctx *c, yaml_document_t *doc, const yaml_node_t *map)
{
	usv_label_table *t = c->t;

	if (map->type != YAML_MAPPING_NODE)
		return fail(c, map, -EINVAL, "words: expected a mapping, found %s", node_kind(map));
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		long ci;
		int r = check_name(c, k, "words: concept", LT_NAME_MAX);

		if (r < 0)
			return r;
		ci = find_concept(t, scalar(k));
		if (ci < 0) {
			if (t->nconcepts == USV_LABEL_MAX_WORDS)
				return fail(c, k, -USV_ERR_LIMIT, "more than %d concepts",
				            USV_LABEL_MAX_WORDS);
			ci = (long)t->nconcepts++;
			snprintf(t->concepts[ci], LT_NAME_MAX, "%s", scalar(k));
		}
		if (v->type == YAML_SCALAR_NODE) {
			r = add_synonym(c, v, (size_t)ci);
		} else if (v->type == YAML_SEQUENCE_NODE) {
			if (v->data.sequence.items.start == v->data.sequence.items.top)
				return fail(c, v, -EINVAL, "words: %s: no synonym", scalar(k));
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     r == 0 && it < v->data.sequence.items.top; it++)
				r = add_synonym(c, yaml_document_get_node(doc, *it), (size_t)ci);
		} else {
			r = fail(c, v, -EINVAL, "words: %s: expected a list of synonyms, found %s",
			         scalar(k), node_kind(v));
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int phrase_add_concept(const struct ctx *c, const yaml_node_t *n, const char *cls,
                              struct lt_phrase *ph, const char *name, size_t len)
{
	char buf[LT_NAME_MAX];
	long ci;
	unsigned i;

	if (len >= LT_NAME_MAX)
		return fail(c, n, -EINVAL, "classes: %s: undefined concept '%.*s'", cls, (int)len,
		            name);
	memcpy(buf, name, len);
	buf[len] = 0;
	ci = find_concept(c->t, buf);
	if (ci < 0)
		return fail(c, n, -EINVAL, "classes: %s: undefined concept '%s' (not under words)",
		            cls, buf);
	for (i = 0; i < ph->n && ph->c[i] < ci; i++)
		;
	if (i < ph->n && ph->c[i] == ci)
		return 0;
	if (ph->n == LT_PHRASE_MAX)
		return fail(c, n, -EINVAL, "classes: %s: a phrase has more than %d concepts", cls,
		            LT_PHRASE_MAX);
	memmove(&ph->c[i + 1], &ph->c[i], (ph->n - i) * sizeof ph->c[0]);
	ph->c[i] = (unsigned short)ci;
	ph->n++;
	return 0;
}

static int phrase_add_text(const struct ctx *c, const yaml_node_t *n, const char *cls,
                           struct lt_phrase *ph)
{
	const char *s = scalar(n);

	while (*s) {
		size_t len = 0;
		int r;

		if (*s == ' ' || *s == '\t' || *s == ',') {
			s++;
			continue;
		}
		while (s[len] && s[len] != ' ' && s[len] != '\t' && s[len] != ',')
			len++;
		r = phrase_add_concept(c, n, cls, ph, s, len);
		if (r < 0)
			return r;
		s += len;
	}
	return 0;
}

static int add_phrase(const struct ctx *c, yaml_document_t *doc, const yaml_node_t *n, size_t cls)
{
	usv_label_table *t = c->t;
	const char *key = t->classes[cls].key;
	struct lt_phrase ph;
	int r = 0;

	memset(&ph, 0, sizeof ph);
	ph.cls = (unsigned)cls;
	if (n->type == YAML_SCALAR_NODE) {
		r = phrase_add_text(c, n, key, &ph);
	} else if (n->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     r == 0 && it < n->data.sequence.items.top; it++) {
			yaml_node_t *w = yaml_document_get_node(doc, *it);
			if (w->type != YAML_SCALAR_NODE)
				return fail(c, w, -EINVAL,
				            "classes: %s: expected a concept name, found %s", key,
				            node_kind(w));
			r = phrase_add_text(c, w, key, &ph);
		}
	} else {
		return fail(c, n, -EINVAL, "classes: %s: expected a phrase, found %s", key,
		            node_kind(n));
	}
	if (r < 0)
		return r;
	if (ph.n == 0)
		return fail(c, n, -EINVAL, "classes: %s: empty phrase", key);
	for (size_t i = 0; i < t->nphrases; i++) {
		const struct lt_phrase *o = &t->phrases[i];
		if (o->n != ph.n || memcmp(o->c, ph.c, ph.n * sizeof ph.c[0]))
			continue;
		if (o->cls == cls)
			return 0;
		return fail(c, n, -EINVAL, "classes: %s: the phrase is already one of %s", key,
		            t->classes[o->cls].key);
	}
	if (t->classes[cls].nphrases == USV_LABEL_MAX_PHRASES)
		return fail(c, n, -USV_ERR_LIMIT, "classes: %s: more than %d phrases", key,
		            USV_LABEL_MAX_PHRASES);
	t->phrases[t->nphrases++] = ph;
	t->classes[cls].nphrases++;
	return 0;
}

static int load_classes(const struct ctx *c, yaml_document_t *doc, const yaml_node_t *map)
{
	usv_label_table *t = c->t;

	if (map->type != YAML_MAPPING_NODE)
		return fail(c, map, -EINVAL, "classes: expected a mapping, found %s",
		            node_kind(map));
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		long ci;
		int r = check_name(c, k, "classes: class", LT_KEY_MAX);

		if (r < 0)
			return r;
		ci = find_class(t, scalar(k));
		if (ci < 0) {
			if (t->nclasses == USV_LABEL_MAX_CLASSES)
				return fail(c, k, -USV_ERR_LIMIT, "more than %d classes",
				            USV_LABEL_MAX_CLASSES);
			ci = (long)t->nclasses++;
			snprintf(t->classes[ci].key, LT_KEY_MAX, "%s", scalar(k));
		}
		if (v->type == YAML_SCALAR_NODE) {
			r = add_phrase(c, doc, v, (size_t)ci);
		} else if (v->type == YAML_SEQUENCE_NODE) {
			if (v->data.sequence.items.start == v->data.sequence.items.top)
				return fail(c, v, -EINVAL, "classes: %s: no phrase", scalar(k));
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     r == 0 && it < v->data.sequence.items.top; it++)
				r = add_phrase(c, doc, yaml_document_get_node(doc, *it),
				               (size_t)ci);
		} else {
			r = fail(c, v, -EINVAL, "classes: %s: expected a list of phrases, found %s",
			         scalar(k), node_kind(v));
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int get_string(const struct ctx *c, const yaml_node_t *n, const char *what, const char **out)
{
	int r;
	char *s;

	if (is_null(n)) {
		*out = NULL;
		return 0;
	}
	r = want_scalar(c, n, what);
	if (r < 0)
		return r;
	if (n->data.scalar.length >= LT_STR_MAX)
		return fail(c, n, -EINVAL, "%s: longer than %d characters", what, LT_STR_MAX - 1);
	s = strdup(scalar(n));
	if (!s)
		return fail(c, n, -ENOMEM, "out of memory");
	free((char *)*out);
	*out = s;
	return 0;
}

static int load_box(const struct ctx *c, yaml_document_t *doc, const yaml_node_t *n, usv_box *b)
{
	int v[4];
	size_t k = 0;

	if (n->type != YAML_SEQUENCE_NODE)
		return fail(c, n, -EINVAL, "annotation_areas: a box must be [x, y, w, h], found %s",
		            node_kind(n));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++, k++) {
		static const char *const names[4] = {"box x", "box y", "box w", "box h"};
		int r;

		if (k == 4)
			break;
		r = get_int(c, yaml_document_get_node(doc, *it), names[k], k < 2 ? 0 : 1,
		            USV_CROP_MAX_DIM, &v[k]);
		if (r < 0)
			return r;
	}
	if (n->data.sequence.items.top - n->data.sequence.items.start != 4)
		return fail(c, n, -EINVAL, "annotation_areas: a box must be [x, y, w, h]");
	b->x = v[0];
	b->y = v[1];
	b->w = v[2];
	b->h = v[3];
	return 0;
}

static int load_rule(const struct ctx *c, yaml_document_t *doc, const yaml_node_t *map,
                     usv_annot_rule *rule)
{
	if (map->type != YAML_MAPPING_NODE)
		return fail(c, map, -EINVAL, "annotation_areas: expected a mapping, found %s",
		            node_kind(map));
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		const char *key;
		int r;

		r = want_scalar(c, k, "annotation_areas: key");
		if (r < 0)
			return r;
		key = scalar(k);
		if (!strcmp(key, "manufacturer"))
			r = get_string(c, v, key, &rule->manufacturer);
		else if (!strcmp(key, "model"))
			r = get_string(c, v, key, &rule->model);
		else if (!strcmp(key, "rows"))
			r = get_int(c, v, key, 0, USV_CROP_MAX_DIM, &rule->rows);
		else if (!strcmp(key, "cols"))
			r = get_int(c, v, key, 0, USV_CROP_MAX_DIM, &rule->cols);
		else if (!strcmp(key, "banner_px"))
			r = get_int(c, v, key, -1, USV_CROP_MAX_DIM, &rule->banner_px);
		else if (!strcmp(key, "boxes")) {
			if (v->type != YAML_SEQUENCE_NODE)
				return fail(c, v, -EINVAL, "boxes: expected a list, found %s",
				            node_kind(v));
			rule->nboxes = 0;
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     r == 0 && it < v->data.sequence.items.top; it++) {
				if (rule->nboxes == USV_ANNOT_MAX_BOXES)
					return fail(c, v, -USV_ERR_LIMIT, "boxes: more than %d",
					            USV_ANNOT_MAX_BOXES);
				r = load_box(c, doc, yaml_document_get_node(doc, *it),
				             &rule->boxes[rule->nboxes++]);
			}
		} else
			return fail(c, k, -EINVAL, "annotation_areas: unknown key '%s'", key);
		if (r < 0)
			return r;
	}
	return 0;
}

static int load_rules(const struct ctx *c, yaml_document_t *doc, const yaml_node_t *seq)
{
	usv_label_table *t = c->t;

	if (seq->type != YAML_SEQUENCE_NODE)
		return fail(c, seq, -EINVAL, "annotation_areas: expected a list, found %s",
		            node_kind(seq));
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     it < seq->data.sequence.items.top; it++) {
		usv_annot_rule *rule;
		int r;

		if (t->nfile_rules == USV_LABEL_MAX_RULES)
			return fail(c, yaml_document_get_node(doc, *it), -USV_ERR_LIMIT,
			            "annotation_areas: more than %d rules", USV_LABEL_MAX_RULES);
		rule = &t->file_rules[t->nfile_rules++];
		memset(rule, 0, sizeof *rule);
		rule->banner_px = -1;
		r = load_rule(c, doc, yaml_document_get_node(doc, *it), rule);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The top-level keys of doc, in the order words, classes, annotation_areas. */
static int load_doc(const struct ctx *c, yaml_document_t *doc, int *replace, int apply)
{
	static const char *const keys[] = {"replace_defaults", "words", "classes",
	                                   "annotation_areas"};
	yaml_node_t *root = yaml_document_get_root_node(doc);
	yaml_node_t *val[4] = {NULL, NULL, NULL, NULL};
	int r;

	*replace = 0;
	if (!root || is_null(root))
		return 0; /* empty, or only comments */
	if (root->type != YAML_MAPPING_NODE)
		return fail(c, root, -EINVAL, "expected a mapping, found %s", node_kind(root));
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		size_t i;

		r = want_scalar(c, k, "key");
		if (r < 0)
			return r;
		for (i = 0; i < 4 && strcmp(scalar(k), keys[i]); i++)
			;
		if (i == 4)
			return fail(
			    c, k, -EINVAL,
			    "unknown key '%s' (expected replace_defaults, words, classes or "
			    "annotation_areas)",
			    scalar(k));
		if (val[i])
			return fail(c, k, -EINVAL, "duplicate key '%s'", scalar(k));
		val[i] = yaml_document_get_node(doc, p->value);
	}
	if (val[0]) {
		r = get_bool(c, val[0], "replace_defaults", replace);
		if (r < 0)
			return r;
	}
	if (!apply)
		return 0;
	if (val[1] && !is_null(val[1]) && (r = load_words(c, doc, val[1])) < 0)
		return r;
	if (val[2] && !is_null(val[2]) && (r = load_classes(c, doc, val[2])) < 0)
		return r;
	if (val[3] && !is_null(val[3]) && (r = load_rules(c, doc, val[3])) < 0)
		return r;
	return 0;
}

static int parse(const struct ctx *c, const char *text, size_t len, yaml_parser_t *parser,
                 yaml_document_t *doc)
{
	int r;

	if (!yaml_parser_initialize(parser))
		return fail(c, NULL, -ENOMEM, "out of memory");
	yaml_parser_set_input_string(parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(parser, doc)) {
		r = usv_seterr(
		    c->err, c->errlen, parser->error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL,
		    "%s:%zu:%zu: YAML syntax error: %s%s%s", c->file,
		    (size_t)parser->problem_mark.line + 1, (size_t)parser->problem_mark.column + 1,
		    parser->problem ? parser->problem : "unknown", parser->context ? " " : "",
		    parser->context ? parser->context : "");
		yaml_parser_delete(parser);
		return r;
	}
	return 0;
}

/* Applies YAML text to c->t (the built-in table when text is DEFAULT_YAML). */
static int apply_text(const struct ctx *c, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int replace, r = parse(c, text, len, &parser, &doc);

	if (r < 0)
		return r;
	r = load_doc(c, &doc, &replace, 1);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return r;
}

static int cmp_single(const usv_label_table *t, unsigned short a, unsigned short b)
{
	return strcmp(t->syns[a].w[0], t->syns[b].w[0]);
}

static int finish(usv_label_table *t)
{
	size_t ndef = 0, i, k;
	const usv_annot_rule *def = usv_annot_default_rules(&ndef);

	t->nsingle = t->nmulti = 0;
	for (i = 0; i < t->nsyns; i++) {
		if (t->syns[i].nw == 1)
			t->single[t->nsingle++] = (unsigned short)i;
	}
	/* multi-word synonyms, longest first (insertion sort: stable, small) */
	for (unsigned nw = LT_SYN_WORDS; nw >= 2; nw--)
		for (i = 0; i < t->nsyns; i++)
			if (t->syns[i].nw == nw)
				t->multi[t->nmulti++] = (unsigned short)i;
	/* the one-word synonyms by text (insertion sort: qsort has no
	 * context argument in C11, and n <= USV_LABEL_MAX_WORDS) */
	for (i = 1; i < t->nsingle; i++) {
		unsigned short v = t->single[i];
		for (k = i; k > 0 && cmp_single(t, t->single[k - 1], v) > 0; k--)
			t->single[k] = t->single[k - 1];
		t->single[k] = v;
	}
	if (!def)
		ndef = 0;
	t->nrules = t->nfile_rules + ndef;
	t->rules = calloc(t->nrules ? t->nrules : 1, sizeof *t->rules);
	if (!t->rules)
		return -ENOMEM;
	if (t->nfile_rules)
		memcpy(t->rules, t->file_rules, t->nfile_rules * sizeof *t->rules);
	if (ndef)
		memcpy(t->rules + t->nfile_rules, def, ndef * sizeof *t->rules);
	return 0;
}

int usv_label_table_default(usv_label_table **out)
{
	usv_label_table *t;
	struct ctx c;
	int r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	c = (struct ctx){.file = "(built-in view table)", .err = NULL, .errlen = 0, .t = t};
	r = apply_text(&c, DEFAULT_YAML, sizeof DEFAULT_YAML - 1);
	if (r == 0)
		r = finish(t);
	if (r < 0) {
		usv_label_table_free(t);
		return r == -ENOMEM ? r : -EINVAL;
	}
	*out = t;
	return 0;
}

static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t got = 0;
	int r;

	if (fd == -1)
		return usv_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) == -1) {
		r = usv_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)LT_FILE_MAX) {
		close(fd);
		return usv_seterr(err, errlen, -USV_ERR_LIMIT,
		                  "%s: not a regular file or larger than %u bytes", path,
		                  LT_FILE_MAX);
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		close(fd);
		return usv_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, *buf + got, (size_t)st.st_size - got);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = usv_seterr(err, errlen, k == 0 ? -EIO : -errno, "%s: read: %s", path,
			               k == 0 ? "short read" : strerror(errno));
			free(*buf);
			*buf = NULL;
			close(fd);
			return r;
		}
		got += (size_t)k;
	}
	close(fd);
	(*buf)[got] = 0;
	*len = got;
	return 0;
}

int usv_label_table_load(const char *path, usv_label_table **out, char *err, size_t errlen)
{
	usv_label_table *t;
	yaml_parser_t parser;
	yaml_document_t doc;
	struct ctx c;
	char *buf = NULL;
	size_t len = 0;
	int replace = 0, r;

	if (!out)
		return usv_seterr(err, errlen, -EINVAL, "no output table");
	*out = NULL;
	if (!path)
		return usv_seterr(err, errlen, -EINVAL, "no view table file");
	r = read_file(path, &buf, &len, err, errlen);
	if (r < 0)
		return r;
	t = calloc(1, sizeof *t);
	if (!t) {
		free(buf);
		return usv_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	c = (struct ctx){.file = path, .err = err, .errlen = errlen, .t = t};
	r = parse(&c, buf, len, &parser, &doc);
	if (r == 0) {
		r = load_doc(&c, &doc, &replace, 0);
		if (r == 0 && !replace) {
			struct ctx d = {
			    .file = "(built-in view table)", .err = err, .errlen = errlen, .t = t};
			r = apply_text(&d, DEFAULT_YAML, sizeof DEFAULT_YAML - 1);
		}
		if (r == 0)
			r = load_doc(&c, &doc, &replace, 1);
		yaml_document_delete(&doc);
		yaml_parser_delete(&parser);
	}
	free(buf);
	if (r == 0 && (r = finish(t)) < 0)
		usv_seterr(err, errlen, r, "%s: out of memory", path);
	if (r < 0) {
		usv_label_table_free(t);
		return r;
	}
	*out = t;
	return 0;
}

void usv_label_table_free(usv_label_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nfile_rules; i++) {
		free((char *)t->file_rules[i].manufacturer);
		free((char *)t->file_rules[i].model);
	}
	free(t->rules);
	free(t);
}

size_t usv_label_table_nclasses(const usv_label_table *t)
{
	return t ? t->nclasses : 0;
}

const char *usv_label_table_class(const usv_label_table *t, size_t i)
{
	if (!t || i >= t->nclasses)
		return NULL;
	return t->classes[i].key;
}

const usv_annot_rule *usv_label_table_annot_rules(const usv_label_table *t, size_t *n)
{
	if (n)
		*n = t ? t->nrules : 0;
	return t ? t->rules : NULL;
}

const char *usv_label_match_name(enum usv_label_match m)
{
	switch (m) {
	case USV_LABEL_EMPTY:
		return "empty";
	case USV_LABEL_MAPPED:
		return "mapped";
	case USV_LABEL_UNMAPPED:
		return "unmapped";
	case USV_LABEL_AMBIGUOUS:
		return "ambiguous";
	}
	return "unknown";
}

/* ------------------------------------------------------------------ */
/* matching                                                            */

struct tok {
	const char *s; /* NUL-terminated, upper case */
	unsigned len;
	int concept; /* -1: none yet */
};

static long single_lookup(const usv_label_table *t, const char *w)
{
	size_t lo = 0, hi = t->nsingle;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct lt_syn *s = &t->syns[t->single[mid]];
		int d = strcmp(s->w[0], w);
		if (d == 0)
		return (long)s->concept;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* OCR confusion classes of short words, on upper-cased text (so 'l' is
 * 'L'). The last class (1, I, L) applies to words of 3 characters only: in
 * a two-letter word it would read "IT" as "LT", and a side decided by one
 * stroke of a two-letter word is not worth the risk. No class holds both
 * L and R. */
static const char *const confusions[] = {"OD0Q", "8B", "VUY", "5S", "2Z", "6G", "1IL"};
#define LT_CONF_SIDE 6 /* index of the 1/I/L class */

/* Are a and b in one confusion class usable for a word of len chars? */
static int confusable(int a, int b, size_t len)
{
	for (size_t i = 0; i < sizeof confusions / sizeof confusions[0]; i++) {
		if (i == LT_CONF_SIDE && len < 3)
			continue;
		if (strchr(confusions[i], a) && strchr(confusions[i], b))
			return 1;
	}
	return 0;
}

/* Concept of a short word (LT_SHORT_MIN..LT_FUZZY_MIN - 1 characters) read
 * with one OCR confusion: exactly one one-word synonym of the same length
 * differs from w in one character, the two characters in one confusion
 * class, and no synonym of another concept is within Damerau distance 1 of
 * w. >= 0: the concept; -1: none; -2: synonyms of several concepts are
 * that close (ambiguous). */
static long single_confusion(const usv_label_table *t, const char *w, size_t len)
{
	long found = -1;
	size_t hits = 0;

	if (len < LT_SHORT_MIN || len >= LT_FUZZY_MIN)
		return -1;
	for (size_t i = 0; i < t->nsingle; i++) {
		const struct lt_syn *s = &t->syns[t->single[i]];
		size_t k, diff = 0, at = 0;

		if (s->len[0] != len)
			continue;
		for (k = 0; k < len; k++)
			if (s->w[0][k] != w[k]) {
				diff++;
				at = k;
			}
		if (diff != 1 || !confusable(w[at], s->w[0][at], len))
			continue;
		if (found >= 0 && found != (long)s->concept)
			return -2;
		found = (long)s->concept;
		hits++;
	}
	if (found < 0)
		return -1;
	if (hits != 1)
		return -1; /* two synonyms of one concept: not one reading */
	for (size_t i = 0; i < t->nsingle; i++) {
		const struct lt_syn *s = &t->syns[t->single[i]];
		if ((long)s->concept != found && within1(w, len, s->w[0], s->len[0]))
			return -2;
	}
	return found;
}

/* Concept of the one-word synonyms within a slip of w: >= 0 when exactly
 * one concept, -1 when none, -2 when several. */
static long single_fuzzy(const usv_label_table *t, const char *w, size_t len)
{
	long found = -1;

	if (len < LT_FUZZY_MIN)
		return -1;
	for (size_t i = 0; i < t->nsingle; i++) {
		const struct lt_syn *s = &t->syns[t->single[i]];
		if (!within1(w, len, s->w[0], s->len[0]))
			continue;
		if (found >= 0 && found != (long)s->concept)
			return -2;
		found = (long)s->concept;
	}
	return found;
}

/* Does the multi-word synonym s match the words m[0..s->nw-1]? 0: no,
 * 1: exactly, 2: with slips. */
static int multi_match(const usv_label_table *t, const struct lt_syn *s, struct tok *const *m,
                       size_t avail, int fuzzy)
{
	int slips = 0;

	if (s->nw > avail)
		return 0;
	for (unsigned i = 0; i < s->nw; i++) {
		const struct tok *k = m[i];
		if (k->concept != -1)
			return 0;
		if (k->len == s->len[i] && !memcmp(k->s, s->w[i], k->len))
			continue;
		if (!fuzzy || k->len < LT_FUZZY_MIN || s->len[i] < LT_FUZZY_MIN ||
		    !within1(k->s, k->len, s->w[i], s->len[i]) || single_lookup(t, k->s) >= 0)
			return 0;
		slips = 1;
	}
	return slips ? 2 : 1;
}

int usv_label_map(const usv_label_table *t, const char *text, int *cls, enum usv_label_match *match,
                  char *norm, size_t normlen)
{
	char buf[USV_LABEL_MAX_TEXT + 1];
	struct tok toks[LT_TOKENS];
	struct tok *words[LT_TOKENS];
	uint64_t set[LT_SET_WORDS];
	uint64_t matched[USV_LABEL_MAX_CLASSES / 64], exact[USV_LABEL_MAX_CLASSES / 64];
	size_t ntok = 0, nwords = 0, used = 0, nconcepts = 0, i, k;
	int ambiguous = 0;
	long only = -1;

	if (cls)
		*cls = -1;
	if (match)
		*match = USV_LABEL_EMPTY;
	if (norm && normlen)
		norm[0] = 0;
	if (!t || !cls || !match)
		return -EINVAL;
	if (!text)
		return 0;

	/* words of letters and digits, upper case, NUL-terminated in buf */
	for (i = 0; text[i] && i < USV_LABEL_MAX_TEXT - 1;) {
		if (!is_alnum((unsigned char)text[i])) {
			i++;
			continue;
		}
		toks[ntok].s = buf + used;
		toks[ntok].concept = -1;
		k = 0;
		int alpha = 0;
		while (text[i] && i < USV_LABEL_MAX_TEXT - 1 && is_alnum((unsigned char)text[i])) {
			alpha |= is_alpha((unsigned char)text[i]);
			buf[used + k++] = (char)to_upper((unsigned char)text[i++]);
		}
		buf[used + k] = 0;
		used += k + 1;
		toks[ntok].len = (unsigned)k;
		if (alpha)
			words[nwords++] = &toks[ntok];
		ntok++;
	}
	if (ntok == 0)
		return 0;
	if (norm && normlen) {
		size_t o = 0;
		for (i = 0; i < ntok && o + 1 < normlen; i++) {
			if (i && o + 1 < normlen)
				norm[o++] = ' ';
			for (k = 0; k < toks[i].len && o + 1 < normlen; k++)
				norm[o++] = toks[i].s[k];
		}
		norm[o] = 0;
	}

	/* 1. multi-word synonyms, exactly; 2. the same with slips */
	for (int fuzzy = 0; fuzzy < 2; fuzzy++) {
		for (i = 0; i < nwords;) {
			long concept = -1;
			unsigned nw = 0;
			int several = 0;

			for (k = 0; k < t->nmulti; k++) {
				const struct lt_syn *s = &t->syns[t->multi[k]];
				int m = multi_match(t, s, &words[i], nwords - i, fuzzy);
				if (m == 0 || (fuzzy && m == 1))
					continue;
				if (!fuzzy) { /* longest first: take it */
					concept = (long)s->concept;
					nw = s->nw;
					break;
				}
				if (concept >= 0 && concept != (long)s->concept)
					several = 1;
				if (concept < 0 || s->nw > nw) {
					concept = (long)s->concept;
					nw = s->nw;
				}
			}
			if (several) {
				ambiguous = 1;
				i++;
				continue;
			}
			if (concept < 0) {
				i++;
				continue;
			}
			for (k = 0; k < nw; k++)
			words[i + k]->concept = (int)concept;
			i += nw;
		}
	}
	/* 3. one-word synonyms, exactly; 4. with a slip */
	for (i = 0; i < nwords; i++) {
		if (words[i]->concept == -1)
		words[i]->concept = (int)single_lookup(t, words[i]->s);
	}
	for (i = 0; i < nwords; i++) {
		long c;
		if (words[i]->concept != -1)
			continue;
		if (words[i]->len < LT_FUZZY_MIN)
			c = single_confusion(t, words[i]->s, words[i]->len);
		else
			c = single_fuzzy(t, words[i]->s, words[i]->len);
		if (c == -2)
			ambiguous = 1;
		else
		words[i]->concept = (int)c;
	}

	memset(set, 0, sizeof set);
	for (i = 0; i < nwords; i++) {
		int c = words[i]->concept;
		if (c < 0 || (set[c / 64] >> (c % 64)) & 1)
			continue;
		set[c / 64] |= (uint64_t)1 << (c % 64);
		nconcepts++;
	}

	/* classes with a phrase inside the text's concepts; exact: equal */
	memset(matched, 0, sizeof matched);
	memset(exact, 0, sizeof exact);
	for (i = 0; i < t->nphrases; i++) {
		const struct lt_phrase *p = &t->phrases[i];
		for (k = 0; k < p->n; k++)
			if (!((set[p->c[k] / 64] >> (p->c[k] % 64)) & 1))
				break;
		if (k < p->n)
			continue;
		matched[p->cls / 64] |= (uint64_t)1 << (p->cls % 64);
		if (p->n == nconcepts)
			exact[p->cls / 64] |= (uint64_t)1 << (p->cls % 64);
	}
	k = 0;
	for (i = 0; i < t->nclasses; i++) {
		if ((matched[i / 64] >> (i % 64)) & 1) {
			k++;
			only = (long)i;
		}
	}
	if (k == 0)
		*match = ambiguous ? USV_LABEL_AMBIGUOUS : USV_LABEL_UNMAPPED;
	else if (k == 1 && !ambiguous && ((exact[only / 64] >> (only % 64)) & 1)) {
		*match = USV_LABEL_MAPPED;
		*cls = (int)only;
	} else
		*match = USV_LABEL_AMBIGUOUS;
	return 0;
}

/* ------------------------------------------------------------------ */
/* measurement text                                                    */

enum { MT_WORD, MT_NUM, MT_SYM, MT_SEP };
enum { MU_NONE, MU_CM, MU_MM, MU_AREA, MU_VOL };

struct mtok {
	int kind;
	char w[LT_WORD_MAX]; /* MT_WORD: upper case, truncated */
	unsigned wlen;
	int decimals; /* MT_NUM: digits after the point, -1: none */
	int unit;     /* MT_NUM */
};

/* The caliper marks that OCR returns as non-ASCII characters (UTF-8). */
static size_t caliper_symbol(const unsigned char *s)
{
	static const char *const syms[] = {
	    "\xc3\x97",     /* × */
	    "\xe2\x80\xa2", /* • */
	    "\xe2\x97\x8f", /* ● */
	    "\xe2\x97\x8b", /* ○ */
	    "\xe2\x97\x86", /* ◆ */
	    "\xe2\x97\x87", /* ◇ */
	    "\xe2\x96\xa1", /* □ */
	    "\xe2\x96\xa0", /* ■ */
	    "\xe2\x96\xb3", /* △ */
	    "\xe2\x96\xb2", /* ▲ */
	    "\xe2\x9c\x95", /* ✕ */
	    "\xe2\x9c\x9a", /* ✚ */
	    "\xef\xbc\x8b", /* ＋ */
	};
	if (*s == '+' || *s == '*')
		return 1;
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		size_t n = strlen(syms[i]);
		if (!strncmp((const char *)s, syms[i], n))
			return n;
	}
	return 0;
}

/* A unit right after a number at s (spaces skipped): MU_*, *adv bytes. */
static int unit_at(const unsigned char *s, size_t *adv)
{
	size_t i = 0, n = 0;
	char u[4];
	int kind = MU_NONE;

	while (s[i] == ' ')
		i++;
	while (is_alpha(s[i + n]) && n < 3) {
		u[n] = (char)(s[i + n] | 0x20);
		n++;
	}
	if (is_alpha(s[i + n]))
		return MU_NONE;
	if (n == 2 && !memcmp(u, "cm", 2))
		kind = MU_CM;
	else if (n == 2 && !memcmp(u, "mm", 2))
		kind = MU_MM;
	else if ((n == 2 && !memcmp(u, "ml", 2)) || (n == 2 && !memcmp(u, "cc", 2)))
		kind = MU_VOL;
	else
		return MU_NONE;
	i += n;
	if (kind == MU_CM || kind == MU_MM) {
		if (s[i] == '2' || s[i] == '3') {
			kind = s[i] == '2' ? MU_AREA : MU_VOL;
			i++;
		} else if (s[i] == 0xc2 && (s[i + 1] == 0xb2 || s[i + 1] == 0xb3)) {
			kind = s[i + 1] == 0xb2 ? MU_AREA : MU_VOL;
			i += 2;
		} else if (s[i] == '^' && (s[i + 1] == '2' || s[i + 1] == '3')) {
			kind = s[i + 1] == '2' ? MU_AREA : MU_VOL;
			i += 2;
		} else if (s[i] == '/') {
			return MU_NONE; /* a velocity or a rate */
		}
	}
	if (is_alnum(s[i]))
		return MU_NONE;
	*adv = i;
	return kind;
}

/* A measurement keyword, optionally numbered ("Dist", "Dist1", "D2"). */
static int is_keyword(const char *w, size_t len)
{
	static const char *const kw[] = {"DIST",   "DISTANCE",      "VOL",      "VOLUME",   "AREA",
	                                 "CIRC",   "CIRCUMFERENCE", "DIAM",     "DIAMETER", "LEN",
	                                 "LENGTH", "PERIM",         "PERIMETER"};
	size_t n = len;

	while (n > 0 && is_digit((unsigned char)w[n - 1]))
		n--;
	if (n == 1 && w[0] == 'D')
		return len == 2 && w[1] >= '1' && w[1] <= '9';
	for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
		if (strlen(kw[i]) == n && !memcmp(w, kw[i], n))
			return 1;
	return 0;
}

/* The one-letter labels a caliper's value may follow ("L 4.5cm"); not D,
 * which some scanners print before the depth. */
static int is_caliper_letter(const struct mtok *m)
{
	return m->kind == MT_WORD && m->wlen == 1 && strchr("ABCEHLWX", m->w[0]);
}

/* A number with a decimal point and a length unit at s (spaces skipped):
 * its length in bytes, 0 when there is none. *whole: the fraction is all
 * zeros ("6.0cm"). */
static size_t length_value_at(const unsigned char *s, int *whole)
{
	size_t i = 0, adv = 0;
	int nonzero = 0;

	while (s[i] == ' ')
		i++;
	if (!is_digit(s[i]))
		return 0;
	while (is_digit(s[i]))
		i++;
	if ((s[i] != '.' && s[i] != ',') || !is_digit(s[i + 1]))
		return 0;
	i++;
	while (is_digit(s[i]))
		nonzero |= s[i++] != '0';
	if (unit_at(s + i, &adv) != MU_CM && unit_at(s + i, &adv) != MU_MM)
		return 0;
	*whole = !nonzero;
	return i + adv;
}

/* OCR misreads of a caliper label D1..D9 followed by its value ("01 4.3
 * cm", "O1", "Dl", "DI", "D 1"): a word start, D or a letter or digit OCR
 * mistakes for it (O, 0, Q), then 1..9 or a stroke read for 1 (l, I, i,
 * |), then ' ' or ':' and a number with a decimal point and cm or mm.
 * "D 1" with a space inside also reads a depth ("D 16.0cm" as "D 1 6.0cm"),
 * so in that form a whole number of cm or mm does not count. */
static int misread_caliper_label(const unsigned char *s)
{
	for (size_t i = 0; s[i] && i < USV_LABEL_MAX_TEXT * 4; i++) {
		size_t j = i + 1;
		int spaced = 0, whole = 0;

		if (i > 0 && (is_alnum(s[i - 1]) || s[i - 1] == '.' || s[i - 1] == ','))
			continue;
		if (!strchr("DdOo0Q", s[i]))
			continue;
		if (s[j] == ' ' && (s[i] == 'D' || s[i] == 'd')) {
			while (s[j] == ' ')
				j++;
			spaced = 1;
		}
		if (!((s[j] >= '1' && s[j] <= '9') || (!spaced && strchr("lIi|", s[j]) && s[j])))
			continue;
		j++;
		if (s[j] != ' ' && s[j] != ':')
			continue;
		while (s[j] == ' ' || s[j] == ':')
			j++;
		if (length_value_at(s + j, &whole) > 0 && !(spaced && whole))
			return 1;
	}
	return 0;
}

int usv_label_is_measurement_text(const char *text)
{
	struct mtok prev = {.kind = MT_SEP};
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	if (!text)
		return 0;
	if (misread_caliper_label(s))
		return 1;
	while (s[i] && i < USV_LABEL_MAX_TEXT * 4) {
		struct mtok m = {.kind = MT_SEP};
		size_t n;

		if (s[i] == ' ' || s[i] == '\t' || s[i] == ':' || s[i] == '=') {
			i++;
			continue; /* transparent between a label and its value */
		}
		if (is_digit(s[i]) || (s[i] == '.' && is_digit(s[i + 1]))) {
			m.kind = MT_NUM;
			m.decimals = -1;
			while (is_digit(s[i]))
				i++;
			if ((s[i] == '.' || s[i] == ',') && is_digit(s[i + 1])) {
				i++;
				m.decimals = 0;
				while (is_digit(s[i])) {
					i++;
					m.decimals++;
				}
			}
			m.unit = MU_NONE;
			if (!is_digit(s[i])) {
				size_t adv = 0;
				m.unit = unit_at(s + i, &adv);
				i += adv;
			}
			if (m.unit == MU_AREA || m.unit == MU_VOL)
				return 1;
			if (m.unit == MU_MM && m.decimals > 0)
				return 1;
			if (m.unit == MU_CM && m.decimals >= 2)
				return 1;
			if ((m.unit == MU_CM || m.unit == MU_MM) &&
			    (prev.kind == MT_SYM || is_caliper_letter(&prev)))
				return 1;
			if (prev.kind == MT_WORD && prev.wlen == 5 && !memcmp(prev.w, "DEPTH", 5))
				return 1;
		} else if (is_alpha(s[i])) {
			m.kind = MT_WORD;
			m.wlen = 0;
			while (is_alnum(s[i])) {
				if (m.wlen + 1 < LT_WORD_MAX)
					m.w[m.wlen++] = (char)to_upper(s[i]);
				i++;
			}
			m.w[m.wlen] = 0;
			if (is_keyword(m.w, m.wlen))
				return 1;
		} else if ((n = caliper_symbol(s + i)) > 0) {
			m.kind = MT_SYM;
			i += n;
		} else {
			i++;
		}
		prev = m;
	}
	return 0;
}
