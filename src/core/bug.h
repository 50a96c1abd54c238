/*
 * VEIL_BUG_ON(cond): an invariant that must never be false. In debug builds
 * (VEIL_DEBUG defined, and the ASan build) it logs the place and aborts; in
 * release builds it compiles to nothing but still type-checks `cond`.
 */
#ifndef VEIL_CORE_BUG_H
#define VEIL_CORE_BUG_H

#include <stdio.h>
#include <stdlib.h>

#if defined(VEIL_DEBUG) || defined(__SANITIZE_ADDRESS__)
#define VEIL_BUG_ON(cond)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            fprintf(stderr, "BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#else
#define VEIL_BUG_ON(cond) ((void)sizeof(!(cond)))
#endif

#endif
