/*
 * Internal to the control plane process (control.c, admin.c): its state
 * and the helpers its parts share. Everything runs on the one loop thread.
 */
#ifndef VEIL_CONTROL_CONTROL_INT_H
#define VEIL_CONTROL_CONTROL_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "control/control.h"
#include "control/resource-t.h"
#include "core/conf-t.h"
#include "core/loop-t.h"

#define VEIL_CONTROL_COMMIT_RING 4096

struct veil_metrics;
struct veil_metrics_series;

/* When a version was committed, for the push latency histogram. */
struct veil_control_commit {
    uint64_t version;
    uint64_t at_ms;
};

struct veil_control {
    struct veil_control_opts opts;
    const char *state_dir;
    char config_dir[4096];
    char trust_domain[256];
    char join_secret[80];
    struct veil_loop *loop;
    struct veil_watchdog *watchdog;
    struct veil_ca *ca;
    struct veil_store *store;
    struct veil_views *views;
    struct veil_push_server *push;
    struct veil_reqsrv *status_srv, *admin_srv;
    struct veil_dirwatch *dirwatch;
    struct veil_io sig_io;
    struct veil_timer notify_timer;
    struct veil_timer trim_timer; /* gives freed heap back after a burst */
    size_t subscribers;
    /* The last refused configuration of each source, for status. */
    bool has_refused[VEIL_RES_NSOURCES];
    struct veil_conf_err refused[VEIL_RES_NSOURCES];
    struct veil_control_commit commit_ring[VEIL_CONTROL_COMMIT_RING];
    struct veil_metrics *metrics;
    struct veil_metrics_series *m_config_errors, *m_connected, *m_push_latency, *m_certs_issued,
        *m_certs_refused, *m_version;
    uint64_t certs_issued_seen, certs_refused_seen;
};

/* After a store operation succeeded: stamp its version, push soon. */
void veil_control__committed(struct veil_control *c);
/* A source's configuration was refused (kept for status, logged, counted) /
 * accepted (its refusal is forgotten). */
void veil_control__refused(struct veil_control *c, enum veil_res_source src,
                           const struct veil_conf_err *err);
void veil_control__accepted(struct veil_control *c, enum veil_res_source src);
/* Brings the counters read from elsewhere (CA) up to date before a render. */
void veil_control__sync_metrics(struct veil_control *c);

/* admin.c: the admin socket and the status port on listening fds. */
struct veil_reqsrv *veil_control__admin_server(struct veil_control *c, int fd);
struct veil_reqsrv *veil_control__status_server(struct veil_control *c, int fd);
/* The status document (the same for `veil status --json` and GET /status). */
struct json_t;
struct json_t *veil_control__status_json(struct veil_control *c);

#endif
