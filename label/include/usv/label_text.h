/*
 * NAME
 *	label_text.h - the technologist's typed text to a view class
 *
 * SYNOPSIS
 *	#include "usv/label_text.h"
 *
 * DESCRIPTION
 *	A label table maps free annotation text ("LT KIDNEY LONG", "sag liv
 *	rt", "GB") to a class. It is built from a YAML synonym table
 *	(docs/harvest.md describes the format): the default table holds the
 *	paper's 11 views with the keys of usv_view_lookup()
 *	(liver_left_long, ..., gallbladder); a site's file adds words,
 *	phrases and classes, and per-manufacturer annotation areas.
 *
 *	Matching: the text is split into words (letters and digits),
 *	compared without regard to case; multi-word synonyms ("GALL
 *	BLADDER") are matched first; a word of 4 letters or more that is
 *	not in the vocabulary matches a synonym at edit distance 1 (an OCR
 *	slip: one letter changed, added or dropped, or two neighbours
 *	swapped) when all synonyms that close name one concept; when they
 *	name several, the text is ambiguous. A word of 2 or 3 characters
 *	that is not in the vocabulary may carry one OCR confusion: one
 *	character replaced by another of its class, O/D/0/Q, 8/B, V/U/Y,
 *	5/S, 2/Z, 6/G, and for 3 characters also 1/I/L (KIO, G8, TRU, L1V);
 *	it counts when exactly one synonym is reached that way and no
 *	synonym of another concept is within edit distance 1 (else the text
 *	is ambiguous). No class holds both L and R; two-letter words get no
 *	1/I/L confusion ("IT" and "1T" never read as LT), and single
 *	letters must match exactly. Words that are numbers take
 *	no part; only the first USV_LABEL_MAX_TEXT - 1 bytes are read.
 *	Word order does not matter. A class matches when the text's
 *	concepts include every concept of one of its phrases; the text maps
 *	to a class only when exactly one class matches and every concept
 *	found in the text belongs to its phrase (so "LT RT KIDNEY LONG" and
 *	"LIVER SPLEEN" map to nothing). Unknown words are ignored. There
 *	is never a guess: ambiguous and unknown texts map to no class.
 *
 *	usv_label_is_measurement_text() recognises the text of
 *	measurements ("D1 3.2 cm", "Dist 1.43 cm", "Vol 12 ml", "Area",
 *	"Circ", "+ Dist", numbers with length, area or volume units), also
 *	the D1..D9 label as OCR misreads it ("01", "O1", "Dl", "D 1")
 *	followed by a number with a decimal point in cm or mm ("D 1" not
 *	with a whole number: "D 1 6.0cm" is the depth "D 16.0cm").
 *	Scanner settings do not count, nor does a bare depth ("16cm");
 *	docs/harvest.md lists the rules.
 *
 * CONTRACTS
 *	usv_label_table_default(&t)
 *		0 and *t (caller frees with usv_label_table_free), -ENOMEM.
 *	usv_label_table_load(path, &t, err, errlen)
 *		The default table extended by path (or replaced, when the file
 *		says "replace_defaults: true"). Unknown keys, bad values and
 *		YAML errors: -EINVAL with "path:line:column: reason".
 *		Caps: 256 classes, 64 phrases per class, 1024 words, 64
 *		annotation rules; beyond: -USV_ERR_LIMIT.
 *	usv_label_table_free(t)
 *		NULL-safe.
 *	usv_label_table_nclasses(t), usv_label_table_class(t, i)
 *		Class keys in table order; NULL for i out of range.
 *	usv_label_table_annot_rules(t, &n)
 *		The file's annotation_areas rules, ahead of the defaults of
 *		usv_annot_default_rules(); borrowed, valid while t lives.
 *	usv_label_map(t, text, &cls, &match, norm, normlen)
 *		text NULL, all blanks or without any letter or digit:
 *		USV_LABEL_EMPTY. *cls gets the class
 *		index or -1. norm (may be NULL) gets the text as upper-case
 *		words joined by one space, truncated to normlen - 1 bytes
 *		(the report's key for unmapped strings). 0 or -EINVAL.
 *		Thread-safe (t is read-only).
 *	usv_label_is_measurement_text(text)
 *		1 or 0; NULL gives 0.
 */
#ifndef USV_LABEL_TEXT_H
#define USV_LABEL_TEXT_H

#include <stddef.h>

#include "usv/annot.h"

#ifdef __cplusplus
extern "C" {
#endif

#define USV_LABEL_MAX_CLASSES 256
#define USV_LABEL_MAX_PHRASES 64
#define USV_LABEL_MAX_WORDS 1024
#define USV_LABEL_MAX_RULES 64
#define USV_LABEL_MAX_TEXT 512

typedef struct usv_label_table usv_label_table;

enum usv_label_match {
	USV_LABEL_EMPTY = 0,     /* no text */
	USV_LABEL_MAPPED = 1,    /* exactly one class */
	USV_LABEL_UNMAPPED = 2,  /* text, but no class matches */
	USV_LABEL_AMBIGUOUS = 3, /* more than one class, or concepts left over */
};

int usv_label_table_default(usv_label_table **out);
int usv_label_table_load(const char *path, usv_label_table **out, char *err, size_t errlen);
void usv_label_table_free(usv_label_table *t);
size_t usv_label_table_nclasses(const usv_label_table *t);
const char *usv_label_table_class(const usv_label_table *t, size_t i);
const usv_annot_rule *usv_label_table_annot_rules(const usv_label_table *t, size_t *n);
int usv_label_map(const usv_label_table *t, const char *text, int *cls, enum usv_label_match *match,
                  char *norm, size_t normlen);
int usv_label_is_measurement_text(const char *text);
const char *usv_label_match_name(enum usv_label_match m); /* "empty", "mapped", ... */

#ifdef __cplusplus
}
#endif
#endif
