#include "core/alloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* < 0: injection off; otherwise the number of allocations still allowed. */
static _Atomic long fail_budget = -1;

static int alloc_should_fail(void)
{
    long b = atomic_load_explicit(&fail_budget, memory_order_relaxed);
    while (b >= 0) {
        if (b == 0) {
            errno = ENOMEM;
            return 1;
        }
        if (atomic_compare_exchange_weak(&fail_budget, &b, b - 1))
            return 0;
    }
    return 0;
}

void veil_alloc_fail_after(long n)
{
    atomic_store(&fail_budget, n < 0 ? -1 : n);
}

void veil_alloc_fail_reset(void)
{
    atomic_store(&fail_budget, -1);
}

void *veil_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : malloc(n);
}

void *veil_calloc(size_t count, size_t n)
{
    return alloc_should_fail() ? NULL : calloc(count, n);
}

void *veil_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : realloc(p, n);
}

char *veil_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = veil_malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *veil_strdup(const char *s)
{
    return veil_strndup(s, strlen(s));
}

void veil_free(void *p)
{
    free(p);
}
