/* Pod enrolment: capture rules and the proxy's listeners inside each pod's
 * network namespace (docs/node.md, "Enrolment"). */
#include "node/node-int.h"

#include "capture/capture.h"
#include "capture/netns.h"
#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "dns/dns.h"
#include "node/config.h"
#include "tls/spiffe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_in(int netns_fd, int type, uint16_t port, in_addr_t addr)
{
    int fd = veil_netns_socket(netns_fd, AF_INET, type, 0);
    if (fd < 0)
        return fd;
    int one = 1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = addr};
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        (type == SOCK_STREAM && listen(fd, 1024) != 0)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static void accept_loop(struct veil_io *io, struct veil_node_pod *p,
                        void (*fn)(struct veil_node_pod *p, int fd))
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(veil_io_fd(io), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                VEIL_WARN(LOG, "pod %s/%s: accept: %s", p->ns, p->name, strerror(errno));
            return;
        }
        fn(p, fd);
    }
}

static void out_cb(struct veil_io *io, uint32_t ev)
{
    (void)ev;
    accept_loop(io, VEIL_CONTAINER_OF(io, struct veil_node_pod, out_io), node__outbound_accept);
}

static void in_cb(struct veil_io *io, uint32_t ev)
{
    (void)ev;
    accept_loop(io, VEIL_CONTAINER_OF(io, struct veil_node_pod, in_io), node__inbound_accept);
}

static int resolve(void *arg, const char *fqdn, struct in_addr *out)
{
    struct veil_node_pod *p = arg;
    char svc[64], ns[64];
    if (veil_dns_service_name(fqdn, p->ns, svc, sizeof(svc), ns, sizeof(ns)) != 0)
        return -ENOENT;
    struct veil_node_svc *s = veil_node_cfg_svc_by_name(&p->node->cfg, ns, svc);
    if (s == NULL || !s->has_vip)
        return -ENOENT;
    *out = s->vip;
    return 0;
}

static void close_io(struct veil_io *io)
{
    if (veil_io_is_active(io)) {
        int fd = veil_io_fd(io);
        veil_io_stop(io);
        close(fd);
    }
}

void node__pod_free(struct veil_node_pod *p, bool remove_rules)
{
    struct veil_node *n = p->node;
    node__conns_close_pod(p);
    close_io(&p->out_io);
    close_io(&p->in_io);
    node__pod_hbone_stop(p);
    veil_dns_server_free(p->dns);
    if (remove_rules && p->netns_fd >= 0) {
        char err[256];
        if (veil_capture_remove(p->netns_fd, err, sizeof(err)) != 0)
            VEIL_WARN(LOG, "pod %s/%s: removing the capture: %s", p->ns, p->name, err);
    }
    if (p->netns_fd >= 0)
        close(p->netns_fd);
    if (p->link.next != NULL) {
        node__list_del(&p->link);
        veil_metrics_gauge_add(n->m.pods, -1);
    }
    veil_free(p->ns);
    veil_free(p->name);
    veil_free(p->netns);
    veil_free(p->sa);
    veil_free(p);
}

static struct veil_node_pod *find(struct veil_node *n, const char *ns, const char *name)
{
    for (struct veil_node_link *l = n->pods.next; l != &n->pods; l = l->next) {
        struct veil_node_pod *p = VEIL_CONTAINER_OF(l, struct veil_node_pod, link);
        if (strcmp(p->ns, ns) == 0 && strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

struct veil_node_pod *node__pod_by_addr(struct veil_node *n, struct in_addr a)
{
    for (struct veil_node_link *l = n->pods.next; l != &n->pods; l = l->next) {
        struct veil_node_pod *p = VEIL_CONTAINER_OF(l, struct veil_node_pod, link);
        if (p->addr.s_addr == a.s_addr)
            return p;
    }
    return NULL;
}

void node__pod_ident_ready(struct veil_node *n, struct veil_node_ident *id)
{
    for (struct veil_node_link *l = n->pods.next; l != &n->pods; l = l->next) {
        struct veil_node_pod *p = VEIL_CONTAINER_OF(l, struct veil_node_pod, link);
        if (p->ident == id && node__pod_hbone_start(p) != 0)
            VEIL_WARN(LOG, "pod %s/%s: cannot serve HBONE", p->ns, p->name);
    }
}

static int open_listeners(struct veil_node_pod *p, char *err, size_t errlen)
{
    struct veil_node *n = p->node;
    int fd, udp = -1, tcp = -1, rc;
    const char *what = "15001";
    if ((fd = listen_in(p->netns_fd, SOCK_STREAM, VEIL_PORT_OUTBOUND, INADDR_ANY)) < 0 ||
        (rc = veil_io_start(n->loop, &p->out_io, fd, VEIL_IO_READ, out_cb)) != 0)
        goto fail;
    what = "15006";
    if ((fd = listen_in(p->netns_fd, SOCK_STREAM, VEIL_PORT_INBOUND, INADDR_ANY)) < 0 ||
        (rc = veil_io_start(n->loop, &p->in_io, fd, VEIL_IO_READ, in_cb)) != 0)
        goto fail;
    what = "15008";
    if ((fd = listen_in(p->netns_fd, SOCK_STREAM, VEIL_PORT_HBONE, INADDR_ANY)) < 0)
        goto fail;
    p->hbone_fd = fd;
    what = "15053";
    /* DNS on loopback: the output-hook REDIRECT sends the queries to
     * 127.0.0.1, and answers must come from there for conntrack to map them
     * back to the resolver address the app asked. */
    if ((udp = listen_in(p->netns_fd, SOCK_DGRAM, VEIL_PORT_DNS, htonl(INADDR_LOOPBACK))) < 0 ||
        (tcp = listen_in(p->netns_fd, SOCK_STREAM, VEIL_PORT_DNS, htonl(INADDR_LOOPBACK))) < 0) {
        fd = udp < 0 ? udp : tcp;
        if (udp >= 0)
            close(udp);
        goto fail;
    }
    struct veil_dns_lookup lk = {.resolve = resolve, .arg = p, .domain = NULL};
    if ((p->dns = veil_dns_server_new(n->loop, udp, tcp, &lk)) == NULL) {
        fd = -errno;
        close(udp);
        close(tcp);
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0) { /* io_start failed */
        close(fd);
        fd = rc;
    }
    snprintf(err, errlen, "cannot listen on port %s in %s: %s", what, p->netns, strerror(-fd));
    return fd;
}

int node__pod_add(struct veil_node *n, const char *ns, const char *name, const char *netns,
                  const char *addr, const char *sa, bool persist, char *err, size_t errlen)
{
    struct in_addr a;
    if (!veil_spiffe_valid_label(ns) || !veil_spiffe_valid_subdomain(name) ||
        !veil_spiffe_valid_subdomain(sa)) {
        snprintf(err, errlen, "namespace, name or serviceAccount is not a valid name");
        return -EINVAL;
    }
    if (inet_pton(AF_INET, addr, &a) != 1) {
        snprintf(err, errlen, "address \"%s\" is not an IPv4 address", addr);
        return -EINVAL;
    }
    struct veil_node_pod *old = find(n, ns, name);
    if (old != NULL) {
        if (strcmp(old->netns, netns) == 0 && old->addr.s_addr == a.s_addr &&
            strcmp(old->sa, sa) == 0)
            return 0; /* already enrolled: idempotent */
        node__pod_free(old, false);
    }
    struct veil_node_pod *other = node__pod_by_addr(n, a);
    if (other != NULL) {
        snprintf(err, errlen, "address %s is already enrolled as pod %s/%s", addr, other->ns,
                 other->name);
        return -EEXIST;
    }
    struct veil_node_pod *p = veil_calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->node = n;
    p->netns_fd = p->hbone_fd = -1;
    p->addr = a;
    inet_ntop(AF_INET, &a, p->addr_str, sizeof(p->addr_str));
    node__list_init(&p->conns);
    p->ns = veil_strdup(ns);
    p->name = veil_strdup(name);
    p->netns = veil_strdup(netns);
    p->sa = veil_strdup(sa);
    int rc = -ENOMEM;
    if (p->ns == NULL || p->name == NULL || p->netns == NULL || p->sa == NULL ||
        (p->ident = node__ident_get(n, ns, sa)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((rc = p->netns_fd = veil_netns_open(netns)) < 0) {
        snprintf(err, errlen, "cannot open the network namespace %s: %s", netns, strerror(-rc));
        goto fail;
    }
    if ((rc = open_listeners(p, err, errlen)) != 0)
        goto fail;
    char cerr[256];
    if ((rc = veil_capture_install(p->netns_fd, NULL, cerr, sizeof(cerr))) != 0) {
        snprintf(err, errlen, "cannot install the capture rules in %s: %s", netns, cerr);
        goto fail;
    }
    node__list_add(&n->pods, &p->link);
    veil_metrics_gauge_add(n->m.pods, 1);
    if (p->ident->server_ctx != NULL && node__pod_hbone_start(p) != 0)
        VEIL_WARN(LOG, "pod %s/%s: cannot serve HBONE yet", ns, name);
    VEIL_INFO(LOG, "pod %s/%s (%s, %s) enrolled: listeners and capture in %s", ns, name, addr,
              p->ident->id, netns);
    if (persist)
        node__save_pods(n);
    return 0;
fail:
    veil_metrics_counter_add(n->m.enrol_errors, 1);
    node__pod_free(p, false);
    return rc != 0 ? rc : -EINVAL;
}

int node__pod_del(struct veil_node *n, const char *ns, const char *name, char *err, size_t errlen)
{
    struct veil_node_pod *p = find(n, ns, name);
    if (p == NULL) {
        snprintf(err, errlen, "pod %s/%s is not enrolled", ns, name);
        return -ENOENT;
    }
    VEIL_INFO(LOG, "pod %s/%s removed", ns, name);
    node__pod_free(p, true);
    node__save_pods(n);
    return 0;
}
