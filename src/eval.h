/* Evaluation helpers shared with other modules (eval.c).  Internal. */
#ifndef BNN_EVAL_H
#define BNN_EVAL_H

#include <stddef.h>

/* Stable sort: idx[0..n) ordered by decreasing key[idx[i]], equal keys in
 * their incoming order; tmp has n entries. */
void eval_sort_desc(size_t *idx, size_t *tmp, size_t n, const float *key);

#endif
