/* Uses libbnn built as a subproject of this one. */
#include <bnn.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    printf("libbnn %s as a subproject\n", bnn_version_string());
    if (strcmp(bnn_version_string(), BNN_VERSION_STRING) != 0)
        return 1;
    /* The dependency must carry the header, and errors must be reported
     * through the status API even from a subproject build. */
    if (strcmp(bnn_status_string(BNN_E_NOMEM), "BNN_E_NOMEM") != 0)
        return 1;
    return bnn_last_error() != NULL ? 0 : 1;
}
