/*
 * NAME
 *	kern_bf16.c - FP32 <-> bfloat16 conversion
 *
 * DESCRIPTION
 *	The exported form of bf16.h's rounding (round to nearest even, NaN
 *	stays a quiet NaN), for the kernel tests' references and callers
 *	outside the packing loops, and its inverse.
 */
#include "bf16.h"
#include "kern_fast.h"

#include <string.h>

uint16_t usv__bf16_from_f32(float f)
{
	return usv__bf16_round(f);
}

float usv__bf16_to_f32(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}
