/* Refusal rules on prediction records (refusal.c).  Internal. */
#ifndef BNN_REFUSAL_H
#define BNN_REFUSAL_H

#include <stddef.h>

#include "bnn.h"

/* 1 if `rule` at threshold t refuses the record, else 0.  A NaN score is
 * always refused. */
int refusal_refuses(const bnn_prediction *rec, bnn_refusal_rule rule,
                    float t);

/* The end offset of the record field `rule` reads (label and refused for
 * NONE); SIZE_MAX for an unknown rule. */
size_t refusal_rule_field_end(bnn_refusal_rule rule);

/* BNN_OK if t is a valid threshold for rule, else BNN_E_INVALID with a
 * message naming fn. */
bnn_status refusal_check_rule(const char *fn, bnn_refusal_rule rule, float t);

/* Copy the fields of *r that fit in rs bytes to dst (no alignment
 * assumed). */
void refusal_record_store(unsigned char *dst, size_t rs,
                          const bnn_prediction *r);
/* The fields of a record of rs bytes that fit; the others are zero. */
void refusal_record_load(const unsigned char *src, size_t rs,
                         bnn_prediction *r);

#endif
