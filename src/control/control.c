#include "control/control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control-int.h"
#include "control/dirwatch.h"
#include "control/push.h"
#include "control/reqsrv.h"
#include "control/resource.h"
#include "control/store.h"
#include "control/view.h"
#include "core/alloc.h"
#include "core/conf.h"
#include "core/container.h"
#include "core/file.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "tls/ca.h"

#define LOG "control"

static void dir_reload(void *arg);
static void notify_cb(struct veil_timer *t);

/* STATE_DIR/name: small records, written atomically. */
static int write_small_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return veil_file_write_atomic(path, text, strlen(text), mode, NULL);
}

static int read_small_file(const char *dir, const char *name, char *buf, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return veil_file_read_line(path, buf, n);
}

/* The trust domain is fixed at first start: certificates already issued
 * carry it. */
static int settle_trust_domain(struct veil_control *c)
{
    char recorded[256];
    if (read_small_file(c->state_dir, "trust-domain", recorded, sizeof(recorded)) == 0) {
        if (c->opts.trust_domain != NULL && strcmp(recorded, c->opts.trust_domain) != 0) {
            VEIL_ERROR(LOG,
                       "trust domain %s was asked for, but %s/trust-domain records %s from the "
                       "first start; certificates in use carry it",
                       c->opts.trust_domain, c->state_dir, recorded);
            return -1;
        }
        snprintf(c->trust_domain, sizeof(c->trust_domain), "%s", recorded);
        return 0;
    }
    snprintf(c->trust_domain, sizeof(c->trust_domain), "%s",
             c->opts.trust_domain != NULL ? c->opts.trust_domain : "cluster.local");
    char line[300];
    snprintf(line, sizeof(line), "%s\n", c->trust_domain);
    if (write_small_file(c->state_dir, "trust-domain", line, 0644) != 0) {
        VEIL_ERROR(LOG, "cannot write %s/trust-domain: %s", c->state_dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The join secret: 32 random bytes, hex, kept in STATE_DIR/join-secret. */
static int settle_join_secret(struct veil_control *c)
{
    if (read_small_file(c->state_dir, "join-secret", c->join_secret, sizeof(c->join_secret)) == 0 &&
        strlen(c->join_secret) == 64)
        return 0;
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(c->join_secret + 2 * i, 3, "%02x", raw[i]);
    char line[sizeof(c->join_secret) + 2];
    snprintf(line, sizeof(line), "%s\n", c->join_secret);
    return write_small_file(c->state_dir, "join-secret", line, 0600);
}

static int is_config_file(const struct dirent *d)
{
    return veil_conf_is_file_name(d->d_name);
}

void veil_control__refused(struct veil_control *c, enum veil_res_source src,
                           const struct veil_conf_err *err)
{
    char msg[1200];
    veil_conf_err_format(err, msg, sizeof(msg));
    VEIL_WARN(LOG, "configuration refused (%s), the last good one stays in force: %s",
              veil_res_source_str(src), msg);
    veil_metrics_counter_add(c->m_config_errors, 1);
    c->refused[src] = *err;
    c->has_refused[src] = true;
}

void veil_control__accepted(struct veil_control *c, enum veil_res_source src)
{
    c->has_refused[src] = false;
}

/* Re-reads the whole config directory; any bad file refuses all of it. */
static void dir_reload(void *arg)
{
    struct veil_control *c = arg;
    struct dirent **list = NULL;
    int n = scandir(c->config_dir, &list, is_config_file, alphasort);
    if (n < 0) {
        VEIL_WARN(LOG, "cannot read %s: %s", c->config_dir, strerror(errno));
        return;
    }
    struct veil_conf **confs = veil_calloc((size_t)n + 1, sizeof(*confs));
    struct veil_conf_err err = {0};
    int rc = confs == NULL ? -ENOMEM : 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        char path[4096 + 256];
        snprintf(path, sizeof(path), "%s/%s", c->config_dir, list[i]->d_name);
        rc = veil_conf_load_file(&confs[i], path, &err);
    }
    if (rc == 0)
        rc = veil_store_replace_dir(c->store, confs, (size_t)n, NULL, &err);
    if (rc == 0) {
        veil_control__accepted(c, VEIL_RES_SRC_DIR);
        veil_control__committed(c);
    } else if (rc != -ENOMEM)
        veil_control__refused(c, VEIL_RES_SRC_DIR, &err);
    for (int i = 0; i < n; i++) {
        if (confs != NULL)
            veil_conf_free(confs[i]);
        free(list[i]);
    }
    free(list);
    veil_free(confs);
}

/* ---- the provider the push server serves from: the views, plus metrics */

struct csub {
    struct veil_control *c;
    struct veil_view_sub *vs;
    bool observer;
};

void veil_control__committed(struct veil_control *c)
{
    uint64_t version = veil_store_version(c->store);
    struct veil_control_commit *cm = &c->commit_ring[version % VEIL_CONTROL_COMMIT_RING];
    cm->version = version;
    cm->at_ms = veil_now_ms();
    /* Send once the current callback has returned, coalescing bursts. */
    if (!veil_timer_is_active(&c->notify_timer))
        veil_timer_start(c->loop, &c->notify_timer, 0, 0, notify_cb);
}

static void schedule_trim(struct veil_control *c);

static int prov_subscribe(void *ctx, const char *node, uint64_t version, bool observer, void **sub,
                          char **update)
{
    struct veil_control *c = ctx;
    struct csub *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    int rc = veil_view_subscribe(c->views, node, version, observer, &s->vs, update);
    if (rc != 0) {
        veil_free(s);
        return rc;
    }
    s->c = c;
    schedule_trim(c);
    s->observer = observer;
    if (!observer) {
        c->subscribers++;
        veil_metrics_gauge_set(c->m_connected, (double)c->subscribers);
        VEIL_INFO(LOG, "node %s subscribed at version %llu", node, (unsigned long long)version);
    }
    *sub = s;
    return 0;
}

static int prov_poll(void *sub, char **update)
{
    return veil_view_poll(((struct csub *)sub)->vs, update);
}

static void prov_ack(void *sub, uint64_t version)
{
    struct csub *s = sub;
    veil_view_ack(s->vs, version);
    if (s->observer)
        return;
    /* Push latency: from the commit of `version` to the node's ack of it. */
    const struct veil_control_commit *cm = &s->c->commit_ring[version % VEIL_CONTROL_COMMIT_RING];
    if (cm->version == version)
        veil_metrics_histogram_observe(s->c->m_push_latency,
                                       (double)(veil_now_ms() - cm->at_ms) / 1000.0);
}

static void prov_nack(void *sub, uint64_t version, const char *reason)
{
    struct csub *s = sub;
    veil_view_nack(s->vs, version, reason);
    VEIL_WARN(LOG, "a node rejected version %llu: %s", (unsigned long long)version, reason);
}

static void prov_unsubscribe(void *sub)
{
    struct csub *s = sub;
    veil_view_unsubscribe(s->vs);
    if (!s->observer) {
        s->c->subscribers--;
        veil_metrics_gauge_set(s->c->m_connected, (double)s->c->subscribers);
    }
    veil_free(s);
}

static bool prov_may_have(void *ctx, const char *node, const char *ns, const char *sa)
{
    struct veil_control *c = ctx;
    return veil_view_node_may_have(c->views, node, ns, sa);
}

static void trim_cb(struct veil_timer *t)
{
    (void)t;
    malloc_trim(0);
}

/* Snapshots and deltas of megabytes are built and dropped per proxy; once
 * a burst is over the free pages go back to the system. */
static void schedule_trim(struct veil_control *c)
{
    if (!veil_timer_is_active(&c->trim_timer))
        veil_timer_start(c->loop, &c->trim_timer, 2000, 0, trim_cb);
}

static void notify_cb(struct veil_timer *t)
{
    struct veil_control *c = VEIL_CONTAINER_OF(t, struct veil_control, notify_timer);
    veil_push_server_notify(c->push);
    schedule_trim(c);
}

/* ---- signals ---- */

static void signal_cb(struct veil_io *io, uint32_t events)
{
    struct veil_control *c = VEIL_CONTAINER_OF(io, struct veil_control, sig_io);
    struct signalfd_siginfo si;
    (void)events;
    while (read(veil_io_fd(io), &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        VEIL_INFO(LOG, "signal %u: stopping", si.ssi_signo);
        veil_loop_stop(c->loop);
    }
}

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

static int setup_signals(struct veil_control *c)
{
    sigset_t set;
    stop_signals(&set);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    return veil_io_start(c->loop, &c->sig_io, fd, VEIL_IO_READ, signal_cb);
}

/* ---- metrics ---- */

static int setup_metrics(struct veil_control *c)
{
    static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    c->metrics = veil_metrics_new();
    if (c->metrics == NULL)
        return -ENOMEM;
    struct veil_metrics_family *f;
    f = veil_metrics_counter(c->metrics, "veil_control_config_errors_total",
                             "Configurations refused (apply, delete or a config dir reload).", 0,
                             NULL);
    c->m_config_errors = f != NULL ? veil_metrics_series(f, NULL) : NULL;
    f = veil_metrics_gauge(c->metrics, "veil_control_connected_proxies",
                           "Proxies subscribed to configuration now.", 0, NULL);
    c->m_connected = f != NULL ? veil_metrics_series(f, NULL) : NULL;
    f = veil_metrics_histogram(c->metrics, "veil_control_push_latency_seconds",
                               "Time from a configuration change to a proxy's acknowledgement.", 0,
                               NULL, sizeof(latency_bounds) / sizeof(latency_bounds[0]),
                               latency_bounds);
    c->m_push_latency = f != NULL ? veil_metrics_series(f, NULL) : NULL;
    f = veil_metrics_counter(c->metrics, "veil_control_certificates_issued_total",
                             "Certificates signed by the control plane's CA.", 0, NULL);
    c->m_certs_issued = f != NULL ? veil_metrics_series(f, NULL) : NULL;
    f = veil_metrics_counter(c->metrics, "veil_control_certificates_refused_total",
                             "Certificate requests the CA refused.", 0, NULL);
    c->m_certs_refused = f != NULL ? veil_metrics_series(f, NULL) : NULL;
    f = veil_metrics_gauge(c->metrics, "veil_control_config_version",
                           "Version of the configuration in force.", 0, NULL);
    c->m_version = f != NULL ? veil_metrics_series(f, NULL) : NULL;
    return c->m_config_errors && c->m_connected && c->m_push_latency && c->m_certs_issued &&
                   c->m_certs_refused && c->m_version
               ? 0
               : -ENOMEM;
}

void veil_control__sync_metrics(struct veil_control *c)
{
    struct veil_ca_stats st;
    veil_ca_stats(c->ca, &st);
    veil_metrics_counter_add(c->m_certs_issued, st.issued - c->certs_issued_seen);
    veil_metrics_counter_add(c->m_certs_refused, st.refused - c->certs_refused_seen);
    c->certs_issued_seen = st.issued;
    c->certs_refused_seen = st.refused;
    veil_metrics_gauge_set(c->m_version, (double)veil_store_version(c->store));
}

/* ---- start and stop ---- */

static int mkdir_p(const char *dir, mode_t mode)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int start_listeners(struct veil_control *c)
{
    char err[512];
    const char *addr = c->opts.listen != NULL ? c->opts.listen : "0.0.0.0";
    struct veil_push_server_opts po = {
        .bind = addr,
        .port = (uint16_t)(c->opts.push_port < 0 ? VEIL_PUSH_PORT : c->opts.push_port),
        .ca = c->ca,
        .join_token = c->join_secret,
        .provider = {c, prov_subscribe, prov_poll, prov_ack, prov_nack, prov_unsubscribe,
                     prov_may_have},
        .cert_lifetime_s = c->opts.cert_lifetime_s,
        .metrics = c->metrics,
    };
    c->push = veil_push_server_new(c->loop, &po, err, sizeof(err));
    if (c->push == NULL) {
        VEIL_ERROR(LOG, "cannot serve on %s:%u: %s", addr, po.port,
                   err[0] != '\0' ? err : strerror(errno));
        return -1;
    }
    uint16_t status_port = 0;
    int fd = veil_listen_tcp(
        addr, (uint16_t)(c->opts.status_port < 0 ? VEIL_CONTROL_STATUS_PORT : c->opts.status_port),
        &status_port);
    if (fd < 0) {
        VEIL_ERROR(LOG, "cannot listen for status on %s: %s", addr, strerror(-fd));
        return -1;
    }
    c->status_srv = veil_control__status_server(c, fd);
    char sock[4200];
    snprintf(sock, sizeof(sock), "%s/control.sock", c->state_dir);
    fd = veil_listen_unix(sock, 0600);
    if (fd < 0) {
        VEIL_ERROR(LOG, "cannot listen on %s: %s", sock, strerror(-fd));
        return -1;
    }
    c->admin_srv = veil_control__admin_server(c, fd);
    if (c->status_srv == NULL || c->admin_srv == NULL)
        return -1;
    char ports[128];
    snprintf(ports, sizeof(ports), "push %u\nstatus %u\n", veil_push_server_port(c->push),
             status_port);
    write_small_file(c->state_dir, "ports", ports, 0644);
    write_small_file(c->state_dir, "join-token", veil_push_server_join_token(c->push), 0600);
    VEIL_INFO(LOG, "ready: proxies on %s:%u, status and metrics on http://%s:%u/, admin socket %s",
              addr, veil_push_server_port(c->push), addr, status_port, sock);
    VEIL_INFO(LOG, "join token (also in %s/join-token): %s", c->state_dir,
              veil_push_server_join_token(c->push));
    return 0;
}

static int start(struct veil_control *c)
{
    char err[1024];
    struct veil_conf_err cerr = {0};
    if (mkdir_p(c->state_dir, 0700) != 0 || mkdir_p(c->config_dir, 0755) != 0) {
        VEIL_ERROR(LOG, "cannot create %s or %s: %s", c->state_dir, c->config_dir, strerror(errno));
        return -1;
    }
    if (settle_trust_domain(c) != 0 || settle_join_secret(c) != 0)
        return -1;
    struct veil_ca_opts co = {
        .state_dir = c->state_dir,
        .trust_domain = c->trust_domain,
        .ca_cert_path = c->opts.ca_cert,
        .ca_key_path = c->opts.ca_key,
        .root_bundle_path = c->opts.ca_roots,
        .leaf_lifetime_s = c->opts.cert_lifetime_s,
    };
    if (veil_ca_open(&c->ca, &co, err, sizeof(err)) != 0) {
        VEIL_ERROR(LOG, "CA: %s", err);
        return -1;
    }
    struct veil_store_opts so = {.state_dir = c->state_dir, .service_cidr = c->opts.service_cidr};
    if (veil_store_open(&c->store, &so, &cerr) != 0) {
        veil_conf_err_format(&cerr, err, sizeof(err));
        VEIL_ERROR(LOG, "store: %s", err);
        return -1;
    }
    struct veil_views_opts vo = {.trust_domain = c->trust_domain};
    c->views = veil_views_new(c->store, &vo);
    if (c->views == NULL || setup_metrics(c) != 0)
        return -1;
    dir_reload(c);
    c->dirwatch = veil_dirwatch_new(c->loop, c->config_dir, 100, dir_reload, c);
    if (c->dirwatch == NULL) {
        VEIL_ERROR(LOG, "cannot watch %s: %s", c->config_dir, strerror(errno));
        return -1;
    }
    if (setup_signals(c) != 0)
        return -1;
    return start_listeners(c);
}

static void stop(struct veil_control *c)
{
    veil_timer_stop(&c->notify_timer);
    veil_timer_stop(&c->trim_timer);
    veil_push_server_free(c->push);
    veil_reqsrv_free(c->status_srv);
    veil_reqsrv_free(c->admin_srv);
    veil_dirwatch_free(c->dirwatch);
    if (veil_io_is_active(&c->sig_io)) {
        int fd = veil_io_fd(&c->sig_io);
        veil_io_stop(&c->sig_io);
        close(fd);
    }
    veil_views_free(c->views);
    veil_store_free(c->store);
    veil_ca_free(c->ca);
    veil_metrics_free(c->metrics);
}

int veil_control_run(const struct veil_control_opts *opts)
{
    struct veil_control *c = veil_calloc(1, sizeof(*c));
    if (c == NULL)
        return 1;
    c->opts = *opts;
    c->state_dir = opts->state_dir;
    snprintf(c->config_dir, sizeof(c->config_dir), "%s",
             opts->config_dir != NULL ? opts->config_dir : "");
    if (opts->config_dir == NULL)
        snprintf(c->config_dir, sizeof(c->config_dir), "%s/config", opts->state_dir);
    /* Blocked before any thread starts, so that only the signalfd sees them. */
    sigset_t set;
    stop_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* One socket per subscribed proxy: thousands of them. */
    long fds = veil_raise_fd_limit();
    if (fds > 0 && fds < 4200)
        VEIL_WARN(LOG, "open files limited to %ld: fewer proxies can subscribe", fds);
    /* Snapshots of megabytes come and go per proxy: a fixed mmap threshold
     * gives them back to the system instead of keeping the peak in the heap. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    c->loop = veil_loop_new("control");
    c->watchdog = veil_watchdog_new();
    int status = 1;
    if (c->loop != NULL && c->watchdog != NULL) {
        veil_watchdog_add(c->watchdog, c->loop);
        if (start(c) == 0 && veil_loop_run(c->loop) == 0)
            status = 0;
        stop(c);
    }
    char sock[4200];
    snprintf(sock, sizeof(sock), "%s/control.sock", c->state_dir);
    unlink(sock);
    veil_watchdog_free(c->watchdog);
    veil_loop_free(c->loop);
    veil_free(c);
    return status;
}
