// The public header from C++11: it must compile pedantically and give the
// functions C linkage, which calling them through the shared library checks.
#include "bnn.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(std::is_standard_layout<bnn_prediction>::value,
              "records are plain C data");
static_assert(offsetof(bnn_predict_config, struct_size) == 0,
              "struct_size comes first");

int main()
{
    if (bnn_version_number() != BNN_VERSION_NUMBER ||
        std::strcmp(bnn_version_string(), BNN_VERSION_STRING) != 0) {
        std::fprintf(stderr, "header and library disagree\n");
        return 1;
    }
    bnn_status s = BNN_E_SHAPE;
    if (std::strcmp(bnn_status_string(s), "BNN_E_SHAPE") != 0)
        return 1;
    return 0;
}
