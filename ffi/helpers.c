/* Accessors for DPDK values that are macros over thread-local storage, which bindgen cannot
 * express. Raw access only; meaning and safety are the caller's business. */
#include <rte_errno.h>

int sheetcake_rte_errno(void) { return rte_errno; }
