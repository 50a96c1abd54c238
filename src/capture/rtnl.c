/* A minimal rtnetlink client: one request, one acknowledgement. */
#include "capture/capture-int.h"

#include <errno.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Before the main table's rule (32766); only marked packets match it. */
#define CAPTURE_RULE_PRIORITY 32764

struct nlreq {
    struct nlmsghdr n;
    union {
        struct ifinfomsg ifi;
        struct rtmsg rt;
        struct fib_rule_hdr fr;
    } u;
    char attrs[128];
};

static void put_attr(struct nlreq *r, unsigned short type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((char *)&r->n + NLMSG_ALIGN(r->n.nlmsg_len));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    r->n.nlmsg_len = NLMSG_ALIGN(r->n.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

static void put_u32(struct nlreq *r, unsigned short type, uint32_t v)
{
    put_attr(r, type, &v, sizeof(v));
}

/* Sends the request and returns the kernel's verdict (0 or -errno). */
static int transact(struct nlreq *r)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    r->n.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    r->n.nlmsg_seq = 1;
    int rc = -EPROTO;
    if (sendto(fd, r, r->n.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        goto out;
    }
    for (;;) {
        char buf[4096] __attribute__((aligned(NLMSG_ALIGNTO)));
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        /* NLMSG_OK compares the length as unsigned. */
        unsigned int left = (unsigned int)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                rc = e->error;
                goto out;
            }
        }
        if (n == 0)
            goto out;
    }
out:
    close(fd);
    return rc;
}

static void init(struct nlreq *r, unsigned short type, unsigned short flags, size_t hdr)
{
    memset(r, 0, sizeof(*r));
    r->n.nlmsg_len = (uint32_t)NLMSG_LENGTH(hdr);
    r->n.nlmsg_type = type;
    r->n.nlmsg_flags = flags;
}

int capture__rtnl_link_up(const char *ifname)
{
    unsigned idx = if_nametoindex(ifname);
    if (idx == 0)
        return -errno;
    struct nlreq r;
    init(&r, RTM_NEWLINK, 0, sizeof(r.u.ifi));
    r.u.ifi.ifi_family = AF_UNSPEC;
    r.u.ifi.ifi_index = (int)idx;
    r.u.ifi.ifi_flags = IFF_UP;
    r.u.ifi.ifi_change = IFF_UP;
    return transact(&r);
}

int capture__rtnl_fwmark_rule(int family, int add, uint32_t mark, uint32_t table)
{
    struct nlreq r;
    init(&r, add ? RTM_NEWRULE : RTM_DELRULE, add ? NLM_F_CREATE | NLM_F_EXCL : 0, sizeof(r.u.fr));
    r.u.fr.family = (unsigned char)family;
    r.u.fr.action = FR_ACT_TO_TBL;
    r.u.fr.table = table < 256 ? (unsigned char)table : RT_TABLE_UNSPEC;
    put_u32(&r, FRA_FWMARK, mark);
    put_u32(&r, FRA_FWMASK, 0xffffffffu);
    put_u32(&r, FRA_TABLE, table);
    put_u32(&r, FRA_PRIORITY, CAPTURE_RULE_PRIORITY);
    int rc = transact(&r);
    if (add)
        return rc == -EEXIST ? 0 : rc;
    /* Delete every copy (an older install may have left more than one). */
    for (int i = 0; rc == 0 && i < 64; i++)
        rc = transact(&r);
    return rc == -ENOENT ? 0 : rc;
}

int capture__rtnl_local_default(int family, int add, uint32_t table)
{
    unsigned lo = if_nametoindex("lo");
    if (lo == 0)
        return -errno;
    struct nlreq r;
    init(&r, add ? RTM_NEWROUTE : RTM_DELROUTE, add ? NLM_F_CREATE | NLM_F_REPLACE : 0,
         sizeof(r.u.rt));
    r.u.rt.rtm_family = (unsigned char)family;
    r.u.rt.rtm_dst_len = 0;
    r.u.rt.rtm_table = table < 256 ? (unsigned char)table : RT_TABLE_UNSPEC;
    r.u.rt.rtm_protocol = RTPROT_BOOT;
    r.u.rt.rtm_scope = RT_SCOPE_HOST;
    r.u.rt.rtm_type = RTN_LOCAL;
    put_u32(&r, RTA_TABLE, table);
    put_u32(&r, RTA_OIF, lo);
    int rc = transact(&r);
    if (!add && (rc == -ESRCH || rc == -ENOENT))
        rc = 0;
    return rc;
}
