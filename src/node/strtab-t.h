/* Types of the node's interned strings; see strtab.h for the contract. */
#ifndef VEIL_NODE_STRTAB_T_H
#define VEIL_NODE_STRTAB_T_H

#include <stddef.h>

struct veil_node_str;

/* A set of reference-counted strings, each held once. Zeroed (or
 * veil_node_strtab_init()) before use; read the members only through
 * strtab.h. */
struct veil_node_strtab {
    struct veil_node_str **_slots; /* hash chains; NULL until the first string */
    size_t _nslots;                /* 0 or a power of two */
    size_t _n;                     /* distinct strings held */
};

#endif
