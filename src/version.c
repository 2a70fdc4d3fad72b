#include "internal.h"

BNN_API unsigned bnn_version_number(void)
{
    return BNN_VERSION_NUMBER;
}

BNN_API const char *bnn_version_string(void)
{
    return BNN_VERSION_STRING;
}
