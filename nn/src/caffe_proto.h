/*
 * NAME
 *	caffe_proto.h - protobuf wire format and text format readers (Caffe subset)
 *
 * DESCRIPTION
 *	Two representations of a protobuf message, read through one accessor
 *	API so the Caffe importer can treat a prototxt and a caffemodel alike:
 *
 *	- binary (wire format): the message is its raw bytes; accessors scan
 *	  them on every call (varint, 64-bit, length-delimited and 32-bit
 *	  fields; groups are rejected). Repeated scalars may be packed or not.
 *	- text format (prototxt): parsed once into a tree of named fields by
 *	  cp_text_parse(); '#' comments, strings with C escapes, nested
 *	  messages with { } or < >, optional ':' before a message, ',' or ';'
 *	  separators and [a, b] lists are accepted.
 *
 *	A field is addressed by (number, name): binary messages match the
 *	number, text messages the name.
 *
 * OWNERSHIP
 *	cp_text_parse() returns a tree the caller frees with cp_text_free().
 *	A cp_msg borrows: binary bytes and text nodes must outlive it.
 *
 * DIAGNOSTICS
 *	0 or a negative code: -USV_ERR_FORMAT for malformed input, -ENOENT for
 *	a missing field, -USV_ERR_LIMIT for a cap, -ENOMEM. Text parse errors
 *	fill errbuf with "line N: reason".
 */
#ifndef USV_CAFFE_PROTO_H
#define USV_CAFFE_PROTO_H

#include <stddef.h>
#include <stdint.h>

enum { CP_WIRE_VARINT = 0, CP_WIRE_I64 = 1, CP_WIRE_LEN = 2, CP_WIRE_I32 = 5 };

#define CP_TEXT_MAX_DEPTH 64

/* One field of a text-format message. */
typedef struct cp_text_field {
	char *name;
	int is_msg;    /* 1: nested message in sub */
	int is_string; /* value was a quoted string */
	char *value;   /* scalar token (unescaped for strings) */
	size_t value_len;
	struct cp_text_msg *sub;
	int line;
} cp_text_field;

typedef struct cp_text_msg {
	cp_text_field *f;
	int n, cap;
} cp_text_msg;

/* A message view: exactly one of bin / txt is set. */
typedef struct cp_msg {
	const uint8_t *bin;
	size_t len;
	const cp_text_msg *txt;
} cp_msg;

/* ---- wire format primitives ---- */

/* Reads a varint at *p (< end); advances *p. -USV_ERR_FORMAT if truncated
 * or longer than 10 bytes. */
int cp_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

/* One field of a binary message, as returned by cp_next(). */
typedef struct cp_wfield {
	uint32_t num;
	int wire;
	uint64_t v;          /* VARINT value, or the raw I64 / I32 bits */
	const uint8_t *data; /* LEN payload */
	size_t len;
} cp_wfield;

/* Iterates a binary message: *pos starts at 0. Returns 1 and fills *f for
 * each field, 0 at the end, -USV_ERR_FORMAT if malformed. */
int cp_next(const uint8_t *buf, size_t len, size_t *pos, cp_wfield *f);

/* Checks a whole binary message is well formed (one level). */
int cp_check(const uint8_t *buf, size_t len);

/* ---- text format ---- */

int cp_text_parse(const char *text, size_t len, cp_text_msg **out, char *errbuf, size_t errlen);
void cp_text_free(cp_text_msg *m);

/* ---- accessors over either representation ---- */

cp_msg cp_msg_bin(const uint8_t *buf, size_t len);
cp_msg cp_msg_text(const cp_text_msg *m);

/* Number of occurrences of a field (a packed run counts as one). */
int cp_count(const cp_msg *m, int num, const char *name);
/* Occurrence idx of a nested message. */
int cp_get_msg(const cp_msg *m, int num, const char *name, int idx, cp_msg *sub);
/* Occurrence idx of a string (binary LEN / text string or identifier). */
int cp_get_str(const cp_msg *m, int num, const char *name, int idx, char *buf, size_t cap);
/* Integer / boolean field, last occurrence (proto2 'optional' semantics);
 * text accepts true/false. -ENOENT if absent. */
int cp_get_int(const cp_msg *m, int num, const char *name, int64_t *v);
/* Float field (binary 32-bit), last occurrence. */
int cp_get_float(const cp_msg *m, int num, const char *name, float *v);
/* Enum field: binary varint, or text identifier looked up in names[]
 * (n entries, names[i] has value vals[i]) or a number. */
int cp_get_enum(const cp_msg *m, int num, const char *name, const char *const *names,
                const int *vals, int n, int *v);
/* Repeated integer field (packed or not) into out[cap]; *n receives the
 * count. -USV_ERR_LIMIT if more than cap. */
int cp_get_ints(const cp_msg *m, int num, const char *name, int64_t *out, int cap, int *n);
/* Repeated float (wire I32, packed or not) or, with dnum > 0, repeated
 * double field dnum: count in *n; with out != NULL, values stored (at
 * most cap). */
int cp_get_floats(const cp_msg *m, int num, int dnum, const char *name, float *out, size_t cap,
                  size_t *n);

#endif
