/*
 * Versioned resource store types. See store.h for the contract.
 */
#ifndef VEIL_CONTROL_STORE_T_H
#define VEIL_CONTROL_STORE_T_H

#include "control/resource-t.h"
#include "core/conf-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Internal to src/control (store.c, view.c): a string-keyed open-addressing
 * hash map. The map does not own keys: a key must stay valid while it is in
 * the map (it usually points into the value). `p` and `u` are the value.
 */
struct veil_store__slot {
    const char *key; /* NULL: empty */
    uint64_t h;
    void *p;
    uint64_t u;
};

struct veil_store__map {
    struct veil_store__slot *_slots;
    size_t _cap; /* 0 or a power of two */
    size_t _n;
};

/* One change: created (before NULL), replaced, or deleted (after NULL). */
struct veil_store_change {
    uint64_t version;
    struct veil_res *before;      /* owned by the store's log */
    const struct veil_res *after; /* the resource as stored at `version` */
};

struct veil_store_opts {
    const char *state_dir;    /* NULL: no persistence (tests) */
    const char *service_cidr; /* ClusterIP range; NULL: "198.19.0.0/16" */
    size_t log_max;           /* changes kept; 0: 100000 */
};

/* Called after each committed operation, on the caller's thread. */
typedef void veil_store_listener_fn(void *ctx, const struct veil_store_change *changes, size_t n);

enum veil_store_outcome {
    VEIL_STORE_CREATED,
    VEIL_STORE_CONFIGURED,
    VEIL_STORE_UNCHANGED,
    VEIL_STORE_DELETED,
};

struct veil_store_report_item {
    char *id;
    enum veil_store_outcome what;
    bool ignored; /* a kind veil does not know: stored and listed, not used */
};

/* What an operation did, resource by resource (in the order given). */
struct veil_store_report {
    struct veil_store_report_item *v;
    size_t n;
};

/* ClusterIP allocations: "ns/name" of a Service -> address. */
struct veil_store__ipstate {
    struct veil_store__map by_svc; /* -> struct veil_store__ip */
    struct veil_store__map by_ip;  /* same entries, keyed by address */
    uint8_t *used;                 /* bitmap over the pool */
    uint32_t next;                 /* next-fit cursor */
};

struct veil_store {
    struct veil_store__map _res; /* id -> struct veil_res */
    uint64_t _version;
    struct veil_store__ipstate _ip;
    unsigned char _net[16];
    int _family;
    uint32_t _pool; /* addresses in the pool (offsets 0 .. _pool-1) */
    struct veil_store_change *_log;
    size_t _log_max, _log_head, _log_n;
    uint64_t _log_floor; /* changes after this version are all in the log */
    char *_path;         /* state file, or NULL */
    bool _has_err[VEIL_RES_NSOURCES];
    struct veil_conf_err _err[VEIL_RES_NSOURCES];
    veil_store_listener_fn *_listener;
    void *_listener_ctx;
};

#endif
