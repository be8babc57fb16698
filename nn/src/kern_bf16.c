/*
 * NAME
 *	kern_bf16.c - FP32 <-> bfloat16 conversion
 *
 * DESCRIPTION
 *	Round to nearest even (NaN stays a quiet NaN): the rounding of the
 *	engine's BF16 operands (kern_bgemm.c packs with it, or with
 *	vcvtne2ps2bf16, which rounds normal numbers the same way) and of the
 *	tests' references.
 */
#include "kern_fast.h"

#include <string.h>

uint16_t usv__bf16_from_f32(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

float usv__bf16_to_f32(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}
