/* Status names and the thread-local last-error message. */
#include <stdio.h>

#include "internal.h"

/* Thread-local so that concurrent predictions on shared handles do not race
 * on one message buffer. */
static _Thread_local char last_error[512];

BNN_API const char *bnn_status_string(bnn_status status)
{
    switch (status) {
    case BNN_OK: return "BNN_OK";
    case BNN_E_INVALID: return "BNN_E_INVALID";
    case BNN_E_NOMEM: return "BNN_E_NOMEM";
    case BNN_E_SHAPE: return "BNN_E_SHAPE";
    case BNN_E_IO: return "BNN_E_IO";
    case BNN_E_FORMAT: return "BNN_E_FORMAT";
    case BNN_E_VERSION: return "BNN_E_VERSION";
    case BNN_E_NUMERIC: return "BNN_E_NUMERIC";
    case BNN_E_STATE: return "BNN_E_STATE";
    case BNN_E_UNSUPPORTED: return "BNN_E_UNSUPPORTED";
    case BNN_E_INTERNAL: return "BNN_E_INTERNAL";
    }
    return "BNN_E_UNKNOWN";
}

BNN_API const char *bnn_last_error(void)
{
    return last_error;
}

bnn_status error_set(bnn_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
