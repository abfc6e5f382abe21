/* Compiled as C99 and as C++11 with -Wall -Wextra -Werror -pedantic: the header must stay clean. */
#include <flashsci.h>

int header_uses_every_type(void);
int header_uses_every_type(void) {
    flashsci_status_t status = FLASHSCI_STATUS_SUCCESS;
    flashsci_dtype_t dtype = FLASHSCI_DTYPE_BFLOAT16;
    flashsci_backend_t backend = FLASHSCI_BACKEND_AUTO;
    flashsci_mask_t mask = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT;
    flashsci_tensor_t tensor = FLASHSCI_TENSOR_DV;
    flashsci_precision_t precision = FLASHSCI_PRECISION_IEEE;
    flashsci_plan_t plan = NULL;
    flashsci_stream_t stream = NULL;
    (void)plan;
    (void)stream;
    return (int)status + (int)dtype + (int)backend + (int)mask + (int)tensor + (int)precision + FLASHSCI_VERSION;
}
