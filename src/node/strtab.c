/* Interned strings; see strtab.h. */
#include "node/strtab.h"

#include "core/alloc.h"
#include "core/bug.h"
#include "core/container.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define SLOTS_MIN 64

struct veil_node_str {
    struct veil_node_str *next; /* hash chain */
    uint32_t hash;
    uint32_t refs;
    size_t len;
    char s[];
};

static uint32_t hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

void veil_node_strtab_init(struct veil_node_strtab *t)
{
    *t = (struct veil_node_strtab){0};
}

void veil_node_strtab_free(struct veil_node_strtab *t)
{
    VEIL_BUG_ON(t->_n != 0);
    for (size_t i = 0; i < t->_nslots; i++)
        while (t->_slots[i] != NULL) {
            struct veil_node_str *e = t->_slots[i];
            t->_slots[i] = e->next;
            veil_free(e);
        }
    veil_free(t->_slots);
    veil_node_strtab_init(t);
}

/* Moves every string to a table of `n` slots (a power of two). On failure
 * the table stays as it was. */
static int rehash(struct veil_node_strtab *t, size_t n)
{
    struct veil_node_str **slots = veil_calloc(n, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t->_nslots; i++)
        while (t->_slots[i] != NULL) {
            struct veil_node_str *e = t->_slots[i];
            t->_slots[i] = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
        }
    veil_free(t->_slots);
    t->_slots = slots;
    t->_nslots = n;
    return 0;
}

const char *veil_node_strtab_get(struct veil_node_strtab *t, const char *s, size_t len)
{
    uint32_t h = hash(s, len);
    for (struct veil_node_str *e = t->_nslots != 0 ? t->_slots[h & (t->_nslots - 1)] : NULL;
         e != NULL; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0) {
            e->refs++;
            return e->s;
        }
    /* Grow at one string per slot; a failed growth only lengthens chains. */
    if (t->_n >= t->_nslots && rehash(t, t->_nslots != 0 ? 2 * t->_nslots : SLOTS_MIN) != 0 &&
        t->_nslots == 0)
        return NULL;
    struct veil_node_str *e = veil_malloc(sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    e->hash = h;
    e->refs = 1;
    e->len = len;
    memcpy(e->s, s, len);
    e->s[len] = '\0';
    struct veil_node_str **slot = &t->_slots[h & (t->_nslots - 1)];
    e->next = *slot;
    *slot = e;
    t->_n++;
    return e->s;
}

void veil_node_strtab_put(struct veil_node_strtab *t, const char *s)
{
    if (s == NULL)
        return;
    struct veil_node_str *e = VEIL_CONTAINER_OF(s, struct veil_node_str, s);
    VEIL_BUG_ON(e->refs == 0);
    if (--e->refs > 0)
        return;
    struct veil_node_str **p = &t->_slots[e->hash & (t->_nslots - 1)];
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    veil_free(e);
    t->_n--;
    /* Shrink after a crowd of one-off names (passthrough addresses) left. */
    if (t->_nslots > SLOTS_MIN && t->_n < t->_nslots / 8)
        rehash(t, t->_nslots / 2);
}
