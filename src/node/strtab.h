/*
 * Interned, reference-counted strings.
 *
 * A node proxy keeps, for each live connection, the names its access-log
 * line and its metric labels need (workloads, namespaces, principals,
 * services). They belong to a handful of workloads, not to each connection:
 * a connection holds pointers into this table instead of copies. The table
 * owns the strings; a record replaced by a configuration update does not
 * take a live connection's names with it.
 *
 * Every veil_node_strtab_get() that returns a string takes one reference,
 * which veil_node_strtab_put() gives back; the string is freed with its last
 * reference. Pointers are stable while referenced. One thread at a time; not
 * locked.
 */
#ifndef VEIL_NODE_STRTAB_H
#define VEIL_NODE_STRTAB_H

#include "node/strtab-t.h"

#include <stddef.h>

/* Makes `t` empty. Allocates nothing. */
void veil_node_strtab_init(struct veil_node_strtab *t);

/* Frees the table. Every reference must have been put back first (a string
 * still held is a bug: VEIL_BUG_ON in debug builds, freed anyway). */
void veil_node_strtab_free(struct veil_node_strtab *t);

/*
 * The interned copy of the `len` bytes at `s` (no NUL needed; "" for len
 * 0), with one more reference: NUL-terminated, equal strings give the same
 * pointer. NULL (errno = ENOMEM) when memory could not be had.
 */
const char *veil_node_strtab_get(struct veil_node_strtab *t, const char *s, size_t len);

/* Gives back one reference to `s`, a pointer returned by
 * veil_node_strtab_get() on this table. NULL is a no-op. */
void veil_node_strtab_put(struct veil_node_strtab *t, const char *s);

/* How many distinct strings the table holds. */
static inline size_t veil_node_strtab_count(const struct veil_node_strtab *t)
{
    return t->_n;
}

#endif
