/* The public header must stand alone in strict C99 (compiled with -std=c99
 * -pedantic -Werror): embedders are not all on C11.  Including it twice
 * checks the include guard. */
#include "bnn.h"
#include "bnn.h"

#include <stdio.h>

/* Size-versioned structs only work if struct_size is the first member. */
typedef char struct_size_first_model[
    offsetof(bnn_model_config, struct_size) == 0 ? 1 : -1];
typedef char struct_size_first_stats[
    offsetof(bnn_svi_stats, struct_size) == 0 ? 1 : -1];
typedef char pinned_status[BNN_E_INTERNAL == 10 ? 1 : -1];

int main(void)
{
    bnn_model_config cfg;
    (void)cfg;
    if (bnn_version_number() != BNN_VERSION_NUMBER) {
        fprintf(stderr, "library %u, header %u\n", bnn_version_number(),
                (unsigned)BNN_VERSION_NUMBER);
        return 1;
    }
    return 0;
}
