/*
 * Allocation wrappers. Every allocation in veil goes through these so that
 * tests can make the n-th one fail (curl's torture tests) and check that the
 * failure is handled cleanly.
 *
 * Contract: the functions behave like their libc namesakes: they return NULL
 * on failure (errno = ENOMEM) and never abort. veil_free(NULL) is a no-op.
 */
#ifndef VEIL_CORE_ALLOC_H
#define VEIL_CORE_ALLOC_H

#include <stddef.h>

void *veil_malloc(size_t n);
void *veil_calloc(size_t count, size_t n);
void *veil_realloc(void *p, size_t n);
char *veil_strdup(const char *s);
char *veil_strndup(const char *s, size_t n);
void veil_free(void *p);

/*
 * Fault injection for tests: after `n` more successful allocations, every
 * allocation fails until veil_alloc_fail_reset() is called. n < 0 disables.
 * Process-wide and thread-safe.
 */
void veil_alloc_fail_after(long n);
void veil_alloc_fail_reset(void);

#endif
