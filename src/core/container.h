/*
 * VEIL_CONTAINER_OF(ptr, type, member): the object of `type` that embeds
 * `member` at `ptr`. Used by callbacks that get a pointer to an embedded
 * struct veil_io, veil_timer or veil_defer.
 */
#ifndef VEIL_CORE_CONTAINER_H
#define VEIL_CORE_CONTAINER_H

#include <stddef.h>

#define VEIL_CONTAINER_OF(ptr, type, member)                                                       \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
