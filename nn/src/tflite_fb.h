/*
 * NAME
 *	tflite_fb.h - bounds-checked FlatBuffers reader (TFLite subset)
 *
 * DESCRIPTION
 *	A flatbuffer is a byte range; a table is addressed by its position.
 *	Every accessor checks every offset it follows against the buffer
 *	(tables, vtables, fields within the table's inline size, vectors and
 *	strings), so a garbage file yields -USV_ERR_FORMAT, never a read out
 *	of bounds. Field ids are the schema's declaration order (a union
 *	takes two ids: its type, then its value).
 *
 *	fb_root()       - root table (uoffset at byte 0)
 *	fb_scalar()     - copies a scalar field of `size` bytes (1, 2, 4 or 8)
 *			  into out (little endian); absent: returns 0 and leaves
 *			  out untouched (the caller pre-sets the default)
 *	fb_table_field()- a sub-table; -ENOENT if absent
 *	fb_vector()     - a vector's element start and count (elem bytes each)
 *	fb_vec_table()  - table element i of a vector of tables
 *	fb_string()     - a string's bytes and length
 */
#ifndef USV_TFLITE_FB_H
#define USV_TFLITE_FB_H

#include <stddef.h>
#include <stdint.h>

typedef struct fb_buf {
	const uint8_t *b;
	size_t n;
} fb_buf;

typedef struct fb_table {
	const fb_buf *f;
	size_t pos;     /* table start */
	size_t vt;      /* vtable start */
	unsigned vtlen; /* vtable bytes */
	unsigned tlen;  /* table inline bytes */
} fb_table;

int fb_table_at(const fb_buf *f, size_t pos, fb_table *t);
int fb_root(const fb_buf *f, fb_table *t);
int fb_scalar(const fb_table *t, int id, unsigned size, void *out);
int fb_table_field(const fb_table *t, int id, fb_table *sub);
int fb_vector(const fb_table *t, int id, unsigned elem, size_t *start, uint32_t *count);
int fb_vec_table(const fb_buf *f, size_t start, uint32_t count, uint32_t i, fb_table *t);
int fb_string(const fb_table *t, int id, const char **s, uint32_t *len);

uint32_t fb_u32(const uint8_t *p);

#endif
