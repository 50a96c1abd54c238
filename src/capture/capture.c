#include "capture/capture.h"

#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "capture/capture-int.h"
#include "capture/netns.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#define MAX_EXCLUDE 32
#define RULESET_MAX 4096

static uint16_t or_default(uint16_t v, uint16_t def)
{
    return v != 0 ? v : def;
}

/* Appends to buf at *off; -E2BIG once it does not fit. */
static int put(char *buf, size_t len, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int put(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *off, len - *off, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len - *off)
        return -E2BIG;
    *off += (size_t)n;
    return 0;
}

/* The ruleset: see docs/cluster.md, "Capture rules", for why each rule. */
int veil_capture_ruleset(const struct veil_capture_opts *o, char *buf, size_t len)
{
    static const struct veil_capture_opts defaults;
    if (o == NULL)
        o = &defaults;
    if (buf == NULL || len == 0 || o->n_exclude_inbound > MAX_EXCLUDE)
        return -EINVAL;
    unsigned out = or_default(o->outbound_port, VEIL_PORT_OUTBOUND);
    unsigned in = or_default(o->inbound_port, VEIL_PORT_INBOUND);
    unsigned hbone = or_default(o->hbone_port, VEIL_PORT_HBONE);
    unsigned dns = or_default(o->dns_port, VEIL_PORT_DNS);
    size_t off = 0;
    int rc = put(buf, len, &off,
                 "table inet veil\n"
                 "delete table inet veil\n"
                 "table inet veil {\n"
                 "\tchain nat_out {\n"
                 "\t\ttype nat hook output priority -100; policy accept;\n"
                 "\t\tmeta mark 0x%x return\n"
                 "\t\tip daddr 127.0.0.0/8 return\n"
                 "\t\tip6 daddr ::1 return\n",
                 VEIL_CAPTURE_MARK);
    if (rc == 0 && !o->no_dns)
        rc = put(buf, len, &off,
                 "\t\tudp dport 53 redirect to :%u\n"
                 "\t\ttcp dport 53 redirect to :%u\n",
                 dns, dns);
    if (rc == 0)
        rc = put(buf, len, &off,
                 "\t\tmeta l4proto tcp redirect to :%u\n"
                 "\t}\n"
                 "\tchain nat_pre {\n"
                 "\t\ttype nat hook prerouting priority -100; policy accept;\n"
                 "\t\tiifname \"lo\" return\n"
                 "\t\ttcp dport { %u, %u, %u, %u, %u, %u, %u",
                 out, out, in, hbone, dns, VEIL_PORT_ADMIN, VEIL_PORT_METRICS, VEIL_PORT_READINESS);
    for (unsigned i = 0; rc == 0 && i < o->n_exclude_inbound; i++)
        rc = put(buf, len, &off, ", %u", (unsigned)o->exclude_inbound[i]);
    if (rc == 0)
        rc = put(buf, len, &off,
                 " } return\n"
                 "\t\tmeta l4proto tcp redirect to :%u\n"
                 "\t}\n"
                 "\tchain mangle_out {\n"
                 "\t\ttype route hook output priority -150; policy accept;\n"
                 "\t\tmeta mark 0x%x fib daddr type local ct mark set 0x%x\n"
                 "\t\tmeta mark != 0x%x ct mark 0x%x meta mark set 0x%x\n"
                 "\t}\n"
                 "\tchain mangle_pre {\n"
                 "\t\ttype filter hook prerouting priority -150; policy accept;\n"
                 "\t\tct mark 0x%x meta mark set 0x%x\n"
                 "\t}\n"
                 "}\n",
                 in, VEIL_CAPTURE_MARK, VEIL_CAPTURE_TPROXY_MARK, VEIL_CAPTURE_MARK,
                 VEIL_CAPTURE_TPROXY_MARK, VEIL_CAPTURE_TPROXY_MARK, VEIL_CAPTURE_TPROXY_MARK,
                 VEIL_CAPTURE_TPROXY_MARK);
    return rc < 0 ? rc : (int)off;
}

struct job {
    const char *ruleset;
    int install;
    char *err;
    size_t errlen;
};

static void set_err(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct job *j, const char *fmt, ...)
{
    if (j->errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, j->errlen, fmt, ap);
    va_end(ap);
}

/*
 * libnftables is loaded only while a ruleset is installed or removed, then
 * unloaded: the node proxy does not keep it, and what it pulls in (libnftnl,
 * libmnl, libgmp, libxtables), mapped for its whole life (about 1.5 MB of
 * its resident set). Under AddressSanitizer it stays loaded: LeakSanitizer
 * cannot follow pointers held by an unloaded library.
 */
#define NFT_LIB "libnftables.so.1"

struct nft_api {
    void *dl;
    __typeof__(nft_ctx_new) *ctx_new;
    __typeof__(nft_ctx_free) *ctx_free;
    __typeof__(nft_ctx_buffer_output) *buffer_output;
    __typeof__(nft_ctx_buffer_error) *buffer_error;
    __typeof__(nft_run_cmd_from_buffer) *run_cmd;
    __typeof__(nft_ctx_get_error_buffer) *error_buffer;
};

#if defined(__SANITIZE_ADDRESS__)
#define NFT_UNLOAD 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NFT_UNLOAD 0
#endif
#endif
#ifndef NFT_UNLOAD
#define NFT_UNLOAD 1
#endif

static void nft_unload(struct nft_api *a)
{
    if (a->dl != NULL && NFT_UNLOAD)
        dlclose(a->dl);
    a->dl = NULL;
}

static int nft_load(struct nft_api *a, struct job *j)
{
    *a = (struct nft_api){0};
    a->dl = dlopen(NFT_LIB, RTLD_NOW | RTLD_LOCAL);
    if (a->dl == NULL) {
        const char *e = dlerror();
        set_err(j, "nftables: cannot load %s: %s", NFT_LIB, e != NULL ? e : "unknown error");
        return -ENOENT;
    }
    struct {
        void **fn;
        const char *name;
    } syms[] = {
        {(void **)&a->ctx_new, "nft_ctx_new"},
        {(void **)&a->ctx_free, "nft_ctx_free"},
        {(void **)&a->buffer_output, "nft_ctx_buffer_output"},
        {(void **)&a->buffer_error, "nft_ctx_buffer_error"},
        {(void **)&a->run_cmd, "nft_run_cmd_from_buffer"},
        {(void **)&a->error_buffer, "nft_ctx_get_error_buffer"},
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        *syms[i].fn = dlsym(a->dl, syms[i].name);
        if (*syms[i].fn == NULL) {
            set_err(j, "nftables: %s has no %s", NFT_LIB, syms[i].name);
            nft_unload(a);
            return -ENOENT;
        }
    }
    return 0;
}

/* Runs inside the pod's netns: the nft context (and its netlink socket)
 * must be made there. */
static int run_nft(struct job *j)
{
    struct nft_api a;
    int rc = nft_load(&a, j);
    if (rc < 0)
        return rc;
    struct nft_ctx *nft = a.ctx_new(NFT_CTX_DEFAULT);
    if (nft == NULL) {
        set_err(j, "nftables: cannot create a context");
        nft_unload(&a);
        return -ENOMEM;
    }
    if (a.buffer_output(nft) != 0 || a.buffer_error(nft) != 0) {
        set_err(j, "nftables: cannot buffer its output");
        rc = -ENOMEM;
    } else if (a.run_cmd(nft, j->ruleset) != 0) {
        const char *e = a.error_buffer(nft);
        size_t n = e != NULL ? strlen(e) : 0;
        while (n > 0 && (e[n - 1] == '\n' || e[n - 1] == ' '))
            n--;
        set_err(j, "nftables refused the ruleset: %.*s", (int)n, e != NULL ? e : "");
        rc = -EINVAL;
    }
    a.ctx_free(nft);
    nft_unload(&a);
    return rc;
}

static int do_install(void *p)
{
    struct job *j = p;
    int rc = capture__rtnl_link_up("lo");
    if (rc < 0) {
        set_err(j, "cannot bring lo up: %s", strerror(-rc));
        return rc;
    }
    if ((rc = run_nft(j)) < 0)
        return rc;
    rc = capture__rtnl_fwmark_rule(AF_INET, 1, VEIL_CAPTURE_TPROXY_MARK, VEIL_CAPTURE_TPROXY_TABLE);
    if (rc < 0) {
        set_err(j, "ip rule add fwmark 0x%x lookup %d: %s", VEIL_CAPTURE_TPROXY_MARK,
                VEIL_CAPTURE_TPROXY_TABLE, strerror(-rc));
        return rc;
    }
    rc = capture__rtnl_local_default(AF_INET, 1, VEIL_CAPTURE_TPROXY_TABLE);
    if (rc < 0) {
        set_err(j, "ip route add local 0.0.0.0/0 dev lo table %d: %s", VEIL_CAPTURE_TPROXY_TABLE,
                strerror(-rc));
        return rc;
    }
    /* IPv6 is best effort: a netns may have it disabled. */
    if (capture__rtnl_fwmark_rule(AF_INET6, 1, VEIL_CAPTURE_TPROXY_MARK,
                                  VEIL_CAPTURE_TPROXY_TABLE) == 0)
        (void)capture__rtnl_local_default(AF_INET6, 1, VEIL_CAPTURE_TPROXY_TABLE);
    return 0;
}

static int do_remove(void *p)
{
    struct job *j = p;
    int rc = run_nft(j);
    int r2 =
        capture__rtnl_fwmark_rule(AF_INET, 0, VEIL_CAPTURE_TPROXY_MARK, VEIL_CAPTURE_TPROXY_TABLE);
    int r3 = capture__rtnl_local_default(AF_INET, 0, VEIL_CAPTURE_TPROXY_TABLE);
    (void)capture__rtnl_fwmark_rule(AF_INET6, 0, VEIL_CAPTURE_TPROXY_MARK,
                                    VEIL_CAPTURE_TPROXY_TABLE);
    (void)capture__rtnl_local_default(AF_INET6, 0, VEIL_CAPTURE_TPROXY_TABLE);
    if (rc == 0 && (r2 < 0 || r3 < 0)) {
        rc = r2 < 0 ? r2 : r3;
        set_err(j, "cannot remove the policy routing of the capture: %s", strerror(-rc));
    }
    return rc;
}

static int enter(int netns_fd, int (*fn)(void *), struct job *j)
{
    if (j->errlen > 0)
        j->err[0] = '\0';
    int rc = veil_netns_run(netns_fd, fn, j);
    if (rc < 0 && j->errlen > 0 && j->err[0] == '\0')
        set_err(j, "cannot enter the pod's network namespace: %s", strerror(-rc));
    return rc;
}

int veil_capture_install(int netns_fd, const struct veil_capture_opts *o, char *err, size_t errlen)
{
    char ruleset[RULESET_MAX];
    struct job j = {ruleset, 1, err, errlen};
    int n = veil_capture_ruleset(o, ruleset, sizeof(ruleset));
    if (n < 0) {
        set_err(&j, "bad capture options: %s", strerror(-n));
        return n;
    }
    return enter(netns_fd, do_install, &j);
}

int veil_capture_remove(int netns_fd, char *err, size_t errlen)
{
    struct job j = {"table inet veil\ndelete table inet veil\n", 0, err, errlen};
    return enter(netns_fd, do_remove, &j);
}

int veil_capture_original_dst(int fd, struct sockaddr_storage *out)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &len) != 0)
        return -errno;
    memset(out, 0, sizeof(*out));
    len = sizeof(*out);
    int rc = local.ss_family == AF_INET6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &len)
                                         : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len);
    return rc == 0 ? 0 : -errno;
}

int veil_capture_mark(int fd)
{
    int mark = VEIL_CAPTURE_MARK;
    return setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == 0 ? 0 : -errno;
}

int veil_capture_transparent_prep(int fd, const struct sockaddr *caller, socklen_t len)
{
    struct sockaddr_storage a;
    int one = 1, rc;
    if (caller == NULL || len > sizeof(a) ||
        (caller->sa_family != AF_INET && caller->sa_family != AF_INET6))
        return -EINVAL;
    memcpy(&a, caller, len);
    if (a.ss_family == AF_INET) {
        ((struct sockaddr_in *)&a)->sin_port = 0;
        rc = setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
    } else {
        ((struct sockaddr_in6 *)&a)->sin6_port = 0;
        rc = setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
    }
    if (rc != 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        return -errno;
    if ((rc = veil_capture_mark(fd)) < 0)
        return rc;
    return bind(fd, (struct sockaddr *)&a, len) == 0 ? 0 : -errno;
}
