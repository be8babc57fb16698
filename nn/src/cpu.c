/*
 * NAME
 *	cpu.c - runtime CPU feature detection for the kernel dispatch
 *
 * DESCRIPTION
 *	Reads cpuid leaves 1 and 7 and the XCR0 register once (thread-safe
 *	through pthread_once) and reports the USV_CPU_* bits of kernels.h.
 *	AVX-512 bits are only reported when the OS saves the opmask and ZMM
 *	state (XCR0 bits 1, 2, 5, 6, 7). On other architectures nothing is
 *	reported and the portable kernels are used.
 */
#include "kern_fast.h"

#include <pthread.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static unsigned cpu_bits;
static atomic_uint cpu_off;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long read_xcr0(void)
{
	unsigned int lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((unsigned long long)hi << 32) | lo;
}
#endif

static void cpu_detect(void)
{
	unsigned bits = 0;
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return;
	int osxsave = (c >> 27) & 1;
	int fma = (c >> 12) & 1;
	int avx = (c >> 28) & 1;
	if (!osxsave || !avx)
		return;
	unsigned long long xcr0 = read_xcr0();
	int ymm_ok = (xcr0 & 0x6) == 0x6;
	int zmm_ok = (xcr0 & 0xe6) == 0xe6;
	if (!ymm_ok)
		return;
	if (fma)
		bits |= USV_CPU_FMA;
	if (__get_cpuid_max(0, NULL) < 7)
		goto done;
	__cpuid_count(7, 0, a, b, c, d);
	if ((b >> 5) & 1)
		bits |= USV_CPU_AVX2;
	if (zmm_ok && ((b >> 16) & 1)) {
		bits |= USV_CPU_AVX512F;
		if ((b >> 30) & 1)
			bits |= USV_CPU_AVX512BW;
		if ((b >> 31) & 1)
			bits |= USV_CPU_AVX512VL;
		if ((c >> 11) & 1)
			bits |= USV_CPU_AVX512VNNI;
		unsigned max_sub = a;
		if (max_sub >= 1) {
			__cpuid_count(7, 1, a, b, c, d);
			if ((a >> 5) & 1)
				bits |= USV_CPU_AVX512BF16;
		}
	}
done:
#endif
	cpu_bits = bits;
}

unsigned usv__cpu_features(void)
{
	pthread_once(&cpu_once, cpu_detect);
	return cpu_bits & ~atomic_load(&cpu_off);
}

void usv__cpu_mask(unsigned off)
{
	atomic_store(&cpu_off, off);
}

int usv__cpu_has_bf16(void)
{
	unsigned need = USV_CPU_AVX512F | USV_CPU_AVX512BW | USV_CPU_AVX512VL | USV_CPU_AVX512BF16;

	return (usv__cpu_features() & need) == need;
}

int usv__cpu_has_avx512(void)
{
	unsigned need = USV_CPU_AVX512F | USV_CPU_FMA;

	return (usv__cpu_features() & need) == need;
}
