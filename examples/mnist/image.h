/* 28x28 image shifts for the out-of-distribution evaluation. */
#ifndef BNN_EXAMPLE_IMAGE_H
#define BNN_EXAMPLE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* out = in rotated by deg degrees clockwise on the screen (rows grow
 * downwards) about the image centre c = (13.5, 13.5), bilinear, zero
 * outside: out(p) = in(c + R(deg)(p - c)) in (column, row) coordinates, so
 * 90 degrees gives out[r][q] = in[27 - q][r].  in and out are 784 floats
 * each and must not overlap. */
void image_rotate(const float *in, float *out, double deg);

/* n values uniform in [0, 1) (24-bit steps) from splitmix64 seeded with
 * *state, which advances. */
void image_noise(float *x, size_t n, uint64_t *state);

#endif
