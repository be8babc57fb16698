/*
 * Small numeric helpers shared by inference and training.
 */
#include "usv/nn.h"

#include <math.h>

void usv_softmax(float *x, int n)
{
	usv_softmax_t(x, n, 1.0f);
}

void usv_softmax_t(float *x, int n, float t)
{
	if (n <= 0)
		return;
	float mx = x[0];
	for (int i = 1; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	/* (x - max) / t: the shift keeps every exponent <= 0 for any t > 0 */
	float inv_t = t > 0 && t != 1.0f ? 1.0f / t : 1.0f;
	double sum = 0;
	for (int i = 0; i < n; i++) {
		x[i] = expf((x[i] - mx) * inv_t);
		sum += x[i];
	}
	float inv = (float)(1.0 / sum);
	for (int i = 0; i < n; i++)
		x[i] *= inv;
}

void usv_topk(const float *x, int n, int k, int *idx)
{
	if (k > n)
		k = n;
	for (int j = 0; j < k; j++) {
		int best = -1;
		for (int i = 0; i < n; i++) {
			int taken = 0;
			for (int t = 0; t < j; t++)
				if (idx[t] == i) {
					taken = 1;
					break;
				}
			if (!taken && (best < 0 || x[i] > x[best]))
				best = i;
		}
		idx[j] = best;
	}
}
