/* Status names and the thread-local last-error message. */
#include <stdio.h>
#include <string.h>

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

/* The public function this thread is inside (the outermost one), so that
 * every message can start with its name. */
static _Thread_local const char *api_function;

const char *error_enter(const char *fn)
{
    if (api_function)
        return NULL; /* nested public call: the outer one names the error */
    api_function = fn;
    return fn;
}

void error_leave(const char *const *entered)
{
    if (*entered)
        api_function = NULL;
}

bnn_status error_set(bnn_status status, const char *fmt, ...)
{
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = api_function ? strlen(api_function) : 0;
    size_t at = 0;
    if (n && !(strncmp(msg, api_function, n) == 0 && msg[n] == ':')) {
        int k = snprintf(last_error, sizeof last_error, "%s: ", api_function);
        at = k > 0 && (size_t)k < sizeof last_error ? (size_t)k : 0;
    }
    /* truncated at the buffer's end, like the message itself */
    size_t len = strlen(msg), room = sizeof last_error - 1 - at;
    memcpy(last_error + at, msg, len < room ? len : room);
    last_error[at + (len < room ? len : room)] = '\0';
    return status;
}
