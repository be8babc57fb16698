/*
 * NAME
 *	nn_test_util.h - helpers for the nn unit tests: a seeded RNG, tiny
 *	network builders and tolerance checks
 */
#ifndef NN_TEST_UTIL_H
#define NN_TEST_UTIL_H

#include "usv/nn.h"

#include <stddef.h>
#include <stdint.h>

uint32_t tu_rand(void);
void tu_seed(uint64_t s);
int tu_irand(int lo, int hi); /* inclusive */
float tu_frand(void);         /* [-1, 1) */
void tu_fill(float *x, size_t n);
float *tu_alloc_rand(size_t n);

/* A netdef with input c x h x w and meta set. */
usv_netdef *tu_netdef(int c, int h, int w);
/* Adds a layer with one input; fills random weights for conv / fc. */
void tu_layer(usv_netdef *d, const usv_layer_def *l, int in_c, int in_h, int in_w);
/* max |a - b| <= rtol * max(max |ref|, 1e-3) */
void tu_assert_close(const float *got, const float *ref, size_t n, float rtol, const char *what);

#endif
