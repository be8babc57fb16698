/*
 * NAME
 *	window.h - output extent of a window op (internal)
 *
 * SYNOPSIS
 *	#include "window.h"
 *
 *	int64_t usv__window_out(int64_t in, int64_t k, int64_t s,
 *	                        int64_t p0, int64_t p1, int ceil_mode);
 *
 * DESCRIPTION
 *	The one statement of Caffe's rule for the output extent of a
 *	convolution or pooling window of size k and stride s >= 1 along an
 *	axis of in values with p0 leading and p1 trailing pad. Floor
 *	rounding (convolution, TFLite) gives (in + p0 + p1 - k) / s + 1.
 *	With ceil_mode (Caffe pooling) the quotient is rounded up, and then
 *	a last window that would start at or past in + p0 (inside the
 *	trailing pad only) is dropped when there is any pad, as Caffe's
 *	PoolingLayer::Reshape does. Returns -1 when the window is larger
 *	than the padded input. Used by the Caffe importer and by netdef's
 *	shape inference so that both agree.
 */
#ifndef USV_NN_WINDOW_H
#define USV_NN_WINDOW_H

#include <stdint.h>

static inline int64_t usv__window_out(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1,
                                      int ceil_mode)
{
	int64_t span = in + p0 + p1 - k;
	if (span < 0)
		return -1;
	if (!ceil_mode)
		return span / s + 1;
	int64_t o = (span + s - 1) / s + 1;
	if ((p0 || p1) && (o - 1) * s >= in + p0)
		o--;
	return o;
}

#endif
