/*
 * NAME
 *	tflite_fb.c - bounds-checked FlatBuffers accessors
 *
 * DESCRIPTION
 *	Layout facts: a table starts with a signed 32-bit offset to its vtable
 *	(vtable = table - offset); a vtable is u16 vtable size, u16 table
 *	inline size, then one u16 per field id (0 = absent) giving the field's
 *	offset from the table start. Reference fields hold a u32 offset from
 *	the field's own position; a vector / string there begins with a u32
 *	element count. All integers little endian. See tflite_fb.h.
 */
#include "tflite_fb.h"

#include "usv/err.h"

#include <errno.h>
#include <string.h>

uint32_t fb_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned u16(const uint8_t *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

int fb_table_at(const fb_buf *f, size_t pos, fb_table *t)
{
	if (pos % 4 || pos > f->n || f->n - pos < 4)
		return -USV_ERR_FORMAT;
	int32_t so = (int32_t)fb_u32(f->b + pos);
	int64_t vt = (int64_t)pos - so;
	if (vt < 0 || vt % 2 || (uint64_t)vt > f->n || f->n - (size_t)vt < 4)
		return -USV_ERR_FORMAT;
	unsigned vtlen = u16(f->b + vt), tlen = u16(f->b + vt + 2);
	if (vtlen < 4 || vtlen % 2 || (size_t)vt + vtlen > f->n || tlen < 4 || pos + tlen > f->n)
		return -USV_ERR_FORMAT;
	t->f = f;
	t->pos = pos;
	t->vt = (size_t)vt;
	t->vtlen = vtlen;
	t->tlen = tlen;
	return 0;
}

int fb_root(const fb_buf *f, fb_table *t)
{
	if (f->n < 8)
		return -USV_ERR_FORMAT;
	return fb_table_at(f, fb_u32(f->b), t);
}

/* Offset of field id within the table, 0 if absent; < 0 if it does not
 * fit the table's inline size. */
static int64_t field_off(const fb_table *t, int id, unsigned size)
{
	if (id < 0 || 4 + 2 * (unsigned)id + 2 > t->vtlen)
		return 0;
	unsigned o = u16(t->f->b + t->vt + 4 + 2 * (unsigned)id);
	if (!o)
		return 0;
	if (o < 4 || o + size > t->tlen)
		return -USV_ERR_FORMAT;
	return o;
}

int fb_scalar(const fb_table *t, int id, unsigned size, void *out)
{
	int64_t o = field_off(t, id, size);
	if (o <= 0)
		return (int)o;
	memcpy(out, t->f->b + t->pos + (size_t)o, size);
	return 0;
}

/* Follows the reference field id: position of its target. */
static int ref(const fb_table *t, int id, size_t *target)
{
	int64_t o = field_off(t, id, 4);
	if (o < 0)
		return (int)o;
	if (o == 0)
		return -ENOENT;
	size_t p = t->pos + (size_t)o;
	uint64_t tg = (uint64_t)p + fb_u32(t->f->b + p);
	if (tg >= t->f->n)
		return -USV_ERR_FORMAT;
	*target = (size_t)tg;
	return 0;
}

int fb_table_field(const fb_table *t, int id, fb_table *sub)
{
	size_t p;
	int rc = ref(t, id, &p);
	if (rc < 0)
		return rc;
	return fb_table_at(t->f, p, sub);
}

int fb_vector(const fb_table *t, int id, unsigned elem, size_t *start, uint32_t *count)
{
	size_t p;
	int rc = ref(t, id, &p);
	if (rc < 0)
		return rc;
	if (t->f->n - p < 4)
		return -USV_ERR_FORMAT;
	uint32_t n = fb_u32(t->f->b + p);
	if ((uint64_t)n * elem > t->f->n - p - 4)
		return -USV_ERR_FORMAT;
	*start = p + 4;
	*count = n;
	return 0;
}

int fb_vec_table(const fb_buf *f, size_t start, uint32_t count, uint32_t i, fb_table *t)
{
	if (i >= count)
		return -USV_ERR_FORMAT;
	size_t p = start + 4 * (size_t)i;
	uint64_t tg = (uint64_t)p + fb_u32(f->b + p);
	if (tg >= f->n)
		return -USV_ERR_FORMAT;
	return fb_table_at(f, (size_t)tg, t);
}

int fb_string(const fb_table *t, int id, const char **s, uint32_t *len)
{
	size_t st;
	uint32_t n;
	int rc = fb_vector(t, id, 1, &st, &n);
	if (rc < 0)
		return rc;
	*s = (const char *)t->f->b + st;
	*len = n;
	return 0;
}
