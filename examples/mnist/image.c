/* Rotations and noise images (image.h). */
#include "image.h"
#include "idx.h"

#include <math.h>

void image_rotate(const float *in, float *out, double deg)
{
    const double pi = 3.14159265358979323846;
    const double c = (IDX_ROWS - 1) / 2.0, cs = cos(deg * pi / 180), sn = sin(deg * pi / 180);
    for (int r = 0; r < IDX_ROWS; r++)
        for (int q = 0; q < IDX_COLS; q++) {
            double dx = q - c, dy = r - c;
            double sx = c + cs * dx + sn * dy, sy = c - sn * dx + cs * dy;
            double fx0 = floor(sx), fy0 = floor(sy), ax = sx - fx0, ay = sy - fy0;
            int x0 = (int)fx0, y0 = (int)fy0;
            double v = 0;
            for (int k = 0; k < 4; k++) {
                int xx = x0 + (k & 1), yy = y0 + (k >> 1);
                double w = ((k & 1) ? ax : 1 - ax) * ((k >> 1) ? ay : 1 - ay);
                if (xx >= 0 && xx < IDX_COLS && yy >= 0 && yy < IDX_ROWS)
                    v += w * in[yy * IDX_COLS + xx];
            }
            out[r * IDX_COLS + q] = (float)v;
        }
}

void image_noise(float *x, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        x[i] = (float)((double)(z >> 40) * 0x1.0p-24);
    }
}
