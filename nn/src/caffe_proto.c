/*
 * NAME
 *	caffe_proto.c - protobuf wire format and text format readers
 *
 * DESCRIPTION
 *	See caffe_proto.h. The binary reader never copies: a message is a byte
 *	range and every accessor rescans it, skipping length-delimited
 *	payloads in O(1), so a 500 MB caffemodel costs one pass per lookup of
 *	its top level and nothing more. Every length is checked against the
 *	end of its enclosing range before use.
 *
 *	The text parser is a small recursive-descent parser over a tokenizer;
 *	depth is capped at CP_TEXT_MAX_DEPTH.
 */
#include "caffe_proto.h"

#include "usv/err.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* wire format                                                         */
/* ------------------------------------------------------------------ */

int cp_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	const uint8_t *q = *p;
	for (int i = 0; i < 10; i++) {
		if (q >= end)
			return -USV_ERR_FORMAT;
		uint8_t b = *q++;
		if (i == 9 && b > 1)
			return -USV_ERR_FORMAT;
		r |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*p = q;
			*v = r;
			return 0;
		}
	}
	return -USV_ERR_FORMAT;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

int cp_next(const uint8_t *buf, size_t len, size_t *pos, cp_wfield *f)
{
	if (*pos >= len)
		return 0;
	const uint8_t *p = buf + *pos, *end = buf + len;
	uint64_t key;
	int rc = cp_read_varint(&p, end, &key);
	if (rc < 0)
		return rc;
	if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff)
		return -USV_ERR_FORMAT;
	f->num = (uint32_t)(key >> 3);
	f->wire = (int)(key & 7);
	f->v = 0;
	f->data = NULL;
	f->len = 0;
	switch (f->wire) {
	case CP_WIRE_VARINT:
		rc = cp_read_varint(&p, end, &f->v);
		if (rc < 0)
			return rc;
		break;
	case CP_WIRE_I64:
		if (end - p < 8)
			return -USV_ERR_FORMAT;
		f->v = rd64(p);
		p += 8;
		break;
	case CP_WIRE_I32:
		if (end - p < 4)
			return -USV_ERR_FORMAT;
		f->v = rd32(p);
		p += 4;
		break;
	case CP_WIRE_LEN: {
		uint64_t n;
		rc = cp_read_varint(&p, end, &n);
		if (rc < 0)
			return rc;
		if (n > (uint64_t)(end - p))
			return -USV_ERR_FORMAT;
		f->data = p;
		f->len = (size_t)n;
		p += n;
		break;
	}
	default: /* groups (3, 4) and reserved wire types */
		return -USV_ERR_FORMAT;
	}
	*pos = (size_t)(p - buf);
	return 1;
}

int cp_check(const uint8_t *buf, size_t len)
{
	size_t pos = 0;
	cp_wfield f;
	int rc;
	while ((rc = cp_next(buf, len, &pos, &f)) > 0)
		;
	return rc;
}

/* ------------------------------------------------------------------ */
/* text format                                                         */
/* ------------------------------------------------------------------ */

enum { T_EOF, T_IDENT, T_NUM, T_STR, T_PUNCT };

typedef struct lexer {
	const char *s, *end;
	int line;
	/* current token */
	int kind;
	const char *tok;
	size_t toklen;
	char punct;
	char *strbuf; /* unescaped string of a T_STR token (owned) */
	size_t strlen_;
	int depth;
	char *err;
	size_t errlen;
} lexer;

static int lex_err(lexer *lx, const char *what)
{
	return usv_seterr(lx->err, lx->errlen, -USV_ERR_FORMAT, "line %d: %s", lx->line, what);
}

static int is_ident_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident_char(int c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '.';
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Unescapes a quoted string body [b, e) into lx->strbuf. */
static int lex_unescape(lexer *lx, const char *b, const char *e)
{
	free(lx->strbuf);
	lx->strbuf = malloc((size_t)(e - b) + 1);
	if (!lx->strbuf)
		return -ENOMEM;
	size_t n = 0;
	for (const char *p = b; p < e; p++) {
		char c = *p;
		if (c != '\\') {
			lx->strbuf[n++] = c;
			continue;
		}
		if (++p >= e)
			return lex_err(lx, "bad escape in string");
		switch (*p) {
		case 'n':
			c = '\n';
			break;
		case 't':
			c = '\t';
			break;
		case 'r':
			c = '\r';
			break;
		case 'a':
			c = '\a';
			break;
		case 'b':
			c = '\b';
			break;
		case 'f':
			c = '\f';
			break;
		case 'v':
			c = '\v';
			break;
		case '\\':
		case '\'':
		case '"':
		case '?':
			c = *p;
			break;
		case 'x': {
			int v = 0, k = 0;
			while (k < 2 && p + 1 < e && hexval(p[1]) >= 0) {
				v = v * 16 + hexval(p[1]);
				p++;
				k++;
			}
			if (!k)
				return lex_err(lx, "bad \\x escape in string");
			c = (char)v;
			break;
		}
		default:
			if (*p >= '0' && *p <= '7') {
				int v = *p - '0', k = 1;
				while (k < 3 && p + 1 < e && p[1] >= '0' && p[1] <= '7') {
					v = v * 8 + (p[1] - '0');
					p++;
					k++;
				}
				c = (char)v;
			} else {
				return lex_err(lx, "bad escape in string");
			}
		}
		lx->strbuf[n++] = c;
	}
	lx->strbuf[n] = 0;
	lx->strlen_ = n;
	return 0;
}

static int lex_next(lexer *lx)
{
	for (;;) {
		while (lx->s < lx->end && (*lx->s == ' ' || *lx->s == '\t' || *lx->s == '\r' ||
		                           *lx->s == '\n' || *lx->s == '\f' || *lx->s == '\v')) {
			if (*lx->s == '\n')
				lx->line++;
			lx->s++;
		}
		if (lx->s < lx->end && *lx->s == '#') {
			while (lx->s < lx->end && *lx->s != '\n')
				lx->s++;
			continue;
		}
		break;
	}
	if (lx->s >= lx->end) {
		lx->kind = T_EOF;
		return 0;
	}
	const char *b = lx->s;
	char c = *b;
	lx->tok = b;
	if (is_ident_start((unsigned char)c)) {
		while (lx->s < lx->end && is_ident_char((unsigned char)*lx->s))
			lx->s++;
		lx->kind = T_IDENT;
	} else if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.') {
		lx->s++;
		while (lx->s < lx->end &&
		       (is_ident_char((unsigned char)*lx->s) || *lx->s == '+' || *lx->s == '-')) {
			/* sign only after an exponent marker */
			if ((*lx->s == '+' || *lx->s == '-') &&
			    !(lx->s[-1] == 'e' || lx->s[-1] == 'E'))
				break;
			lx->s++;
		}
		lx->kind = T_NUM;
	} else if (c == '"' || c == '\'') {
		const char *p = b + 1;
		while (p < lx->end && *p != c) {
			if (*p == '\n')
				return lex_err(lx, "newline in string");
			if (*p == '\\')
				p++;
			p++;
		}
		if (p >= lx->end)
			return lex_err(lx, "unterminated string");
		int rc = lex_unescape(lx, b + 1, p);
		if (rc < 0)
			return rc;
		lx->s = p + 1;
		lx->kind = T_STR;
	} else if (strchr("{}<>:;,[]", c)) {
		lx->s++;
		lx->kind = T_PUNCT;
		lx->punct = c;
	} else {
		return lex_err(lx, "unexpected character");
	}
	lx->toklen = (size_t)(lx->s - b);
	return 0;
}

static int is_punct(const lexer *lx, char c)
{
	return lx->kind == T_PUNCT && lx->punct == c;
}

static cp_text_field *msg_add(cp_text_msg *m)
{
	if (m->n == m->cap) {
		int nc = m->cap ? m->cap * 2 : 8;
		if (nc > (1 << 24))
			return NULL;
		cp_text_field *nf = realloc(m->f, (size_t)nc * sizeof *nf);
		if (!nf)
			return NULL;
		m->f = nf;
		m->cap = nc;
	}
	cp_text_field *f = &m->f[m->n++];
	memset(f, 0, sizeof *f);
	return f;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static int parse_body(lexer *lx, cp_text_msg *m, char close);

/* Parses one scalar value token into field f (current token). Adjacent
 * string literals are concatenated, as protobuf does. */
static int parse_scalar(lexer *lx, cp_text_field *f)
{
	if (lx->kind == T_STR) {
		size_t tot = lx->strlen_;
		char *v = dupn(lx->strbuf, lx->strlen_);
		if (!v)
			return -ENOMEM;
		int rc;
		while ((rc = lex_next(lx)) == 0 && lx->kind == T_STR) {
			char *nv = realloc(v, tot + lx->strlen_ + 1);
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			memcpy(v + tot, lx->strbuf, lx->strlen_ + 1);
			tot += lx->strlen_;
		}
		f->value = v;
		f->value_len = tot;
		f->is_string = 1;
		return rc;
	}
	if (lx->kind == T_IDENT || lx->kind == T_NUM) {
		f->value = dupn(lx->tok, lx->toklen);
		if (!f->value)
			return -ENOMEM;
		f->value_len = lx->toklen;
		return lex_next(lx);
	}
	return lex_err(lx, "expected a value");
}

/* Parses `name: value`, `name { ... }`, `name: [v, v]` with the name token
 * already read (current token is the one after the name). */
static int parse_field(lexer *lx, cp_text_msg *m, const char *name, size_t namelen, int line)
{
	int rc, colon = 0;
	if (is_punct(lx, ':')) {
		colon = 1;
		if ((rc = lex_next(lx)) < 0)
			return rc;
	}
	if (is_punct(lx, '{') || is_punct(lx, '<')) {
		char close = lx->punct == '{' ? '}' : '>';
		if (lx->depth >= CP_TEXT_MAX_DEPTH)
			return usv_seterr(lx->err, lx->errlen, -USV_ERR_LIMIT,
			                  "line %d: messages nested too deeply", lx->line);
		cp_text_field *f = msg_add(m);
		if (!f)
			return -ENOMEM;
		f->line = line;
		f->is_msg = 1;
		f->name = dupn(name, namelen);
		f->sub = calloc(1, sizeof *f->sub);
		if (!f->name || !f->sub)
			return -ENOMEM;
		cp_text_msg *sub = f->sub;
		if ((rc = lex_next(lx)) < 0)
			return rc;
		lx->depth++;
		rc = parse_body(lx, sub, close);
		lx->depth--;
		if (rc < 0)
			return rc;
		return lex_next(lx); /* past the closing bracket */
	}
	if (!colon)
		return lex_err(lx, "expected ':' or '{' after field name");
	if (is_punct(lx, '[')) {
		if ((rc = lex_next(lx)) < 0)
			return rc;
		if (is_punct(lx, ']'))
			return lex_next(lx);
		for (;;) {
			cp_text_field *f = msg_add(m);
			if (!f)
				return -ENOMEM;
			f->line = line;
			f->name = dupn(name, namelen);
			if (!f->name)
				return -ENOMEM;
			if ((rc = parse_scalar(lx, f)) < 0)
				return rc;
			if (is_punct(lx, ',')) {
				if ((rc = lex_next(lx)) < 0)
					return rc;
				continue;
			}
			if (is_punct(lx, ']'))
				return lex_next(lx);
			return lex_err(lx, "expected ',' or ']' in list");
		}
	}
	cp_text_field *f = msg_add(m);
	if (!f)
		return -ENOMEM;
	f->line = line;
	f->name = dupn(name, namelen);
	if (!f->name)
		return -ENOMEM;
	return parse_scalar(lx, f);
}

/* Parses fields until `close` (or EOF when close == 0); the current token
 * is the first of the body; on return it is the closing bracket. */
static int parse_body(lexer *lx, cp_text_msg *m, char close)
{
	int rc;
	for (;;) {
		if (lx->kind == T_EOF) {
			if (close)
				return lex_err(lx,
				               "unexpected end of file (missing closing bracket)");
			return 0;
		}
		if (close && is_punct(lx, close))
			return 0;
		if (lx->kind != T_IDENT)
			return lex_err(lx, "expected a field name");
		const char *name = lx->tok;
		size_t namelen = lx->toklen;
		int line = lx->line;
		if ((rc = lex_next(lx)) < 0)
			return rc;
		if ((rc = parse_field(lx, m, name, namelen, line)) < 0)
			return rc;
		if (is_punct(lx, ';') || is_punct(lx, ',')) {
			if ((rc = lex_next(lx)) < 0)
				return rc;
		}
	}
}

int cp_text_parse(const char *text, size_t len, cp_text_msg **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	lexer lx = {.s = text, .end = text + len, .line = 1, .err = errbuf, .errlen = errlen};
	cp_text_msg *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	int rc = lex_next(&lx);
	if (rc == 0)
		rc = parse_body(&lx, m, 0);
	free(lx.strbuf);
	if (rc < 0) {
		if (rc == -ENOMEM)
			usv_seterr(errbuf, errlen, rc, "out of memory");
		cp_text_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void cp_text_free(cp_text_msg *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n; i++) {
		free(m->f[i].name);
		free(m->f[i].value);
		cp_text_free(m->f[i].sub);
	}
	free(m->f);
	free(m);
}

/* ------------------------------------------------------------------ */
/* accessors                                                           */
/* ------------------------------------------------------------------ */

cp_msg cp_msg_bin(const uint8_t *buf, size_t len)
{
	cp_msg m = {.bin = buf, .len = len, .txt = NULL};
	return m;
}

cp_msg cp_msg_text(const cp_text_msg *t)
{
	cp_msg m = {.bin = NULL, .len = 0, .txt = t};
	return m;
}

static int name_is(const cp_text_field *f, const char *name)
{
	return name && f->name && !strcmp(f->name, name);
}

int cp_count(const cp_msg *m, int num, const char *name)
{
	int n = 0;
	if (m->txt) {
		for (int i = 0; i < m->txt->n; i++)
			n += name_is(&m->txt->f[i], name);
		return n;
	}
	size_t pos = 0;
	cp_wfield f;
	int rc;
	while ((rc = cp_next(m->bin, m->len, &pos, &f)) > 0)
		n += f.num == (uint32_t)num;
	return rc < 0 ? rc : n;
}

int cp_get_msg(const cp_msg *m, int num, const char *name, int idx, cp_msg *sub)
{
	int k = 0;
	if (m->txt) {
		for (int i = 0; i < m->txt->n; i++) {
			const cp_text_field *f = &m->txt->f[i];
			if (!name_is(f, name))
				continue;
			if (k++ != idx)
				continue;
			if (!f->is_msg)
				return -USV_ERR_FORMAT;
			*sub = cp_msg_text(f->sub);
			return 0;
		}
		return -ENOENT;
	}
	size_t pos = 0;
	cp_wfield f;
	int rc;
	while ((rc = cp_next(m->bin, m->len, &pos, &f)) > 0) {
		if (f.num != (uint32_t)num || k++ != idx)
			continue;
		if (f.wire != CP_WIRE_LEN)
			return -USV_ERR_FORMAT;
		*sub = cp_msg_bin(f.data, f.len);
		return 0;
	}
	return rc < 0 ? rc : -ENOENT;
}

int cp_get_str(const cp_msg *m, int num, const char *name, int idx, char *buf, size_t cap)
{
	int k = 0;
	const char *s = NULL;
	size_t n = 0;
	if (m->txt) {
		for (int i = 0; i < m->txt->n && !s; i++) {
			const cp_text_field *f = &m->txt->f[i];
			if (!name_is(f, name) || k++ != idx)
				continue;
			if (f->is_msg)
				return -USV_ERR_FORMAT;
			s = f->value;
			n = f->value_len;
		}
	} else {
		size_t pos = 0;
		cp_wfield f;
		int rc;
		while (!s && (rc = cp_next(m->bin, m->len, &pos, &f)) > 0) {
			if (f.num != (uint32_t)num || k++ != idx)
				continue;
			if (f.wire != CP_WIRE_LEN)
				return -USV_ERR_FORMAT;
			s = (const char *)f.data;
			n = f.len;
		}
		if (!s && rc < 0)
			return rc;
	}
	if (!s)
		return -ENOENT;
	if (n >= cap || memchr(s, 0, n))
		return -USV_ERR_LIMIT;
	memcpy(buf, s, n);
	buf[n] = 0;
	return 0;
}

static int text_int(const char *s, int64_t *v)
{
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "t")) {
		*v = 1;
		return 0;
	}
	if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "f")) {
		*v = 0;
		return 0;
	}
	char *e;
	errno = 0;
	long long x = strtoll(s, &e, 0);
	if (e == s || *e || errno)
		return -USV_ERR_FORMAT;
	*v = x;
	return 0;
}

static int text_float(const char *s, float *v)
{
	char *e;
	errno = 0;
	double x = strtod(s, &e);
	if (e == s)
		return -USV_ERR_FORMAT;
	if (*e == 'f' || *e == 'F')
		e++;
	if (*e)
		return -USV_ERR_FORMAT;
	if (!strcmp(s, "inf") || !strcmp(s, "-inf") || !strcmp(s, "nan"))
		return -USV_ERR_FORMAT;
	*v = (float)x;
	return 0;
}

/* Last text field of that name, or NULL. */
static const cp_text_field *text_last(const cp_text_msg *t, const char *name)
{
	const cp_text_field *r = NULL;
	for (int i = 0; i < t->n; i++)
		if (name_is(&t->f[i], name))
			r = &t->f[i];
	return r;
}

/* Last text field of that name holding a scalar (not a message or string):
 * 0 and *out, -ENOENT or -USV_ERR_FORMAT. */
static int text_scalar(const cp_text_msg *t, const char *name, const cp_text_field **out)
{
	const cp_text_field *f = text_last(t, name);
	if (!f)
		return -ENOENT;
	if (f->is_msg || f->is_string)
		return -USV_ERR_FORMAT;
	*out = f;
	return 0;
}

/* Last binary field with that number: 1 found, 0 not, < 0 error. */
static int bin_last(const cp_msg *m, int num, cp_wfield *out)
{
	size_t pos = 0;
	cp_wfield f;
	int rc, found = 0;
	while ((rc = cp_next(m->bin, m->len, &pos, &f)) > 0)
		if (f.num == (uint32_t)num) {
			*out = f;
			found = 1;
		}
	return rc < 0 ? rc : found;
}

int cp_get_int(const cp_msg *m, int num, const char *name, int64_t *v)
{
	if (m->txt) {
		const cp_text_field *f;
		int trc = text_scalar(m->txt, name, &f);
		if (trc)
			return trc;
		return text_int(f->value, v);
	}
	cp_wfield f = {0};
	int rc = bin_last(m, num, &f);
	if (rc <= 0)
		return rc < 0 ? rc : -ENOENT;
	if (f.wire == CP_WIRE_VARINT || f.wire == CP_WIRE_I64) {
		*v = (int64_t)f.v;
		return 0;
	}
	if (f.wire == CP_WIRE_I32) {
		*v = (int32_t)(uint32_t)f.v;
		return 0;
	}
	if (f.wire == CP_WIRE_LEN && f.len) { /* packed: last element */
		const uint8_t *p = f.data, *end = f.data + f.len;
		uint64_t x = 0;
		while (p < end)
			if ((rc = cp_read_varint(&p, end, &x)) < 0)
				return rc;
		*v = (int64_t)x;
		return 0;
	}
	return -USV_ERR_FORMAT;
}

static float bits_to_float(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static double bits_to_double(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof d);
	return d;
}

int cp_get_float(const cp_msg *m, int num, const char *name, float *v)
{
	if (m->txt) {
		const cp_text_field *f;
		int trc = text_scalar(m->txt, name, &f);
		if (trc)
			return trc;
		return text_float(f->value, v);
	}
	cp_wfield f;
	int rc = bin_last(m, num, &f);
	if (rc <= 0)
		return rc < 0 ? rc : -ENOENT;
	if (f.wire == CP_WIRE_I32) {
		*v = bits_to_float((uint32_t)f.v);
		return 0;
	}
	if (f.wire == CP_WIRE_I64) {
		*v = (float)bits_to_double(f.v);
		return 0;
	}
	return -USV_ERR_FORMAT;
}

int cp_get_enum(const cp_msg *m, int num, const char *name, const char *const *names,
                const int *vals, int n, int *v)
{
	if (m->txt) {
		const cp_text_field *f;
		int trc = text_scalar(m->txt, name, &f);
		if (trc)
			return trc;
		for (int i = 0; i < n; i++)
			if (!strcmp(f->value, names[i])) {
				*v = vals[i];
				return 0;
			}
		int64_t x;
		if (text_int(f->value, &x) < 0 || x < INT_MIN || x > INT_MAX)
			return -USV_ERR_UNSUPPORTED;
		*v = (int)x;
		return 0;
	}
	int64_t x;
	int rc = cp_get_int(m, num, name, &x);
	if (rc < 0)
		return rc;
	if (x < INT_MIN || x > INT_MAX)
		return -USV_ERR_FORMAT;
	*v = (int)x;
	return 0;
}

int cp_get_ints(const cp_msg *m, int num, const char *name, int64_t *out, int cap, int *n)
{
	*n = 0;
	if (m->txt) {
		for (int i = 0; i < m->txt->n; i++) {
			const cp_text_field *f = &m->txt->f[i];
			if (!name_is(f, name))
				continue;
			if (f->is_msg || f->is_string)
				return -USV_ERR_FORMAT;
			if (*n >= cap)
				return -USV_ERR_LIMIT;
			int rc = text_int(f->value, &out[*n]);
			if (rc < 0)
				return rc;
			(*n)++;
		}
		return 0;
	}
	size_t pos = 0;
	cp_wfield f;
	int rc;
	while ((rc = cp_next(m->bin, m->len, &pos, &f)) > 0) {
		if (f.num != (uint32_t)num)
			continue;
		if (f.wire == CP_WIRE_VARINT) {
			if (*n >= cap)
				return -USV_ERR_LIMIT;
			out[(*n)++] = (int64_t)f.v;
		} else if (f.wire == CP_WIRE_LEN) {
			const uint8_t *p = f.data, *end = f.data + f.len;
			while (p < end) {
				uint64_t x;
				if ((rc = cp_read_varint(&p, end, &x)) < 0)
					return rc;
				if (*n >= cap)
					return -USV_ERR_LIMIT;
				out[(*n)++] = (int64_t)x;
			}
		} else {
			return -USV_ERR_FORMAT;
		}
	}
	return rc;
}

int cp_get_floats(const cp_msg *m, int num, int dnum, const char *name, float *out, size_t cap,
                  size_t *n)
{
	size_t k = 0;
	if (m->txt) {
		for (int i = 0; i < m->txt->n; i++) {
			const cp_text_field *f = &m->txt->f[i];
			if (!name_is(f, name))
				continue;
			if (f->is_msg || f->is_string)
				return -USV_ERR_FORMAT;
			float x;
			int rc = text_float(f->value, &x);
			if (rc < 0)
				return rc;
			if (out) {
				if (k >= cap)
					return -USV_ERR_LIMIT;
				out[k] = x;
			}
			k++;
		}
		*n = k;
		return 0;
	}
	size_t pos = 0;
	cp_wfield f;
	int rc;
	while ((rc = cp_next(m->bin, m->len, &pos, &f)) > 0) {
		int isf = f.num == (uint32_t)num;
		int isd = dnum > 0 && f.num == (uint32_t)dnum;
		if (!isf && !isd)
			continue;
		size_t esz = isf ? 4 : 8;
		if (f.wire == CP_WIRE_LEN) {
			if (f.len % esz)
				return -USV_ERR_FORMAT;
			size_t cnt = f.len / esz;
			if (out) {
				if (cnt > cap - k || k > cap)
					return -USV_ERR_LIMIT;
				for (size_t i = 0; i < cnt; i++)
					out[k + i] =
					    isf ? bits_to_float(rd32(f.data + 4 * i))
					        : (float)bits_to_double(rd64(f.data + 8 * i));
			}
			k += cnt;
		} else if ((isf && f.wire == CP_WIRE_I32) || (isd && f.wire == CP_WIRE_I64)) {
			if (out) {
				if (k >= cap)
					return -USV_ERR_LIMIT;
				out[k] =
				    isf ? bits_to_float((uint32_t)f.v) : (float)bits_to_double(f.v);
			}
			k++;
		} else {
			return -USV_ERR_FORMAT;
		}
	}
	if (rc < 0)
		return rc;
	*n = k;
	return 0;
}
