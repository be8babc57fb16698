/*
 * NAME
 *	bf16.h - FP32 to bfloat16 rounding and packing, inline
 *
 * SYNOPSIS
 *	#include "bf16.h"
 *
 *	uint16_t usv__bf16_round(float f);
 *	uint32_t usv__bf16_pair(float lo, float hi);
 *
 * DESCRIPTION
 *	The one definition of the engine's BF16 rounding: round to nearest
 *	even, a NaN stays a (quiet) NaN; infinities and values that round
 *	past the largest finite BF16 become infinities. vcvtne2ps2bf16 rounds
 *	normal numbers the same way, so the vector packing paths agree with
 *	these scalar ones.
 *
 *	usv__bf16_pair() is one 32-bit slot of a packed operand (kern_fast.h,
 *	usv__bgemm_pack_a() / usv__bgemm_pack_b()): lo in the low half (the
 *	first of two consecutive k), hi in the high half.
 *
 *	Users: kern_bf16.c (usv__bf16_from_f32(), the exported form), the
 *	packing of kern_bgemm.c and of train.c.
 */
#ifndef USV_NN_BF16_H
#define USV_NN_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t usv__bf16_round(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
		return (uint16_t)((u >> 16) | 0x40u);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline uint32_t usv__bf16_pair(float lo, float hi)
{
	return (uint32_t)usv__bf16_round(lo) | (uint32_t)usv__bf16_round(hi) << 16;
}

#endif
