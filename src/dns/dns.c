/* DNS message codec, query answering and service-name mapping; see dns.h. */
#include "dns/dns.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Wire limit of a name, length octets and the root's 0 included. */
#define NAME_WIRE_MAX 255
/* Pointers followed per name; far above any real name's. */
#define MAX_POINTERS 128

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

int veil_dns_parse_header(const uint8_t *msg, size_t len, struct veil_dns_header *h)
{
    if (len < VEIL_DNS_HEADER_LEN)
        return -EINVAL;
    h->id = get16(msg);
    h->flags = get16(msg + 2);
    h->qdcount = get16(msg + 4);
    h->ancount = get16(msg + 6);
    h->nscount = get16(msg + 8);
    h->arcount = get16(msg + 10);
    return 0;
}

int veil_dns_write_header(uint8_t *out, size_t cap, const struct veil_dns_header *h)
{
    if (cap < VEIL_DNS_HEADER_LEN)
        return -ENOBUFS;
    put16(out, h->id);
    put16(out + 2, h->flags);
    put16(out + 4, h->qdcount);
    put16(out + 6, h->ancount);
    put16(out + 8, h->nscount);
    put16(out + 10, h->arcount);
    return 0;
}

static bool label_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '.' || p[i] == '\\' || p[i] == '\0')
            return false;
    return true;
}

int veil_dns_read_name(const uint8_t *msg, size_t len, size_t *off, char *out, size_t cap)
{
    size_t pos = *off, end = 0, wire = 0, text = 0, limit = SIZE_MAX;
    unsigned jumps = 0;
    bool jumped = false;
    for (;;) {
        if (pos >= len)
            return -EINVAL;
        uint8_t c = msg[pos];
        if ((c & 0xc0) == 0xc0) {
            if (pos + 1 >= len)
                return -EINVAL;
            size_t target = ((size_t)(c & 0x3f) << 8) | msg[pos + 1];
            /* Each jump lands strictly before the previous one, so no
             * loop; the count bounds the work on a long chain. */
            if (target < VEIL_DNS_HEADER_LEN || target >= pos || target >= limit ||
                ++jumps > MAX_POINTERS)
                return -EINVAL;
            limit = target;
            if (!jumped)
                end = pos + 2;
            jumped = true;
            pos = target;
            continue;
        }
        if (c & 0xc0)
            return -EINVAL; /* 0x40 extended and 0x80 reserved label types */
        wire += 1u + c;
        if (wire > NAME_WIRE_MAX)
            return -EINVAL;
        if (c == 0) {
            if (!jumped)
                end = pos + 1;
            break;
        }
        if (pos + 1 + c > len || !label_ok(msg + pos + 1, c))
            return -EINVAL;
        if (text + (text > 0) + c + 1 > cap)
            return -ENOBUFS;
        if (text > 0)
            out[text++] = '.';
        memcpy(out + text, msg + pos + 1, c);
        text += c;
        pos += 1u + c;
    }
    if (cap == 0)
        return -ENOBUFS;
    out[text] = '\0';
    *off = end;
    return 0;
}

int veil_dns_write_name(uint8_t *out, size_t cap, size_t *off, const char *name)
{
    size_t n = strlen(name), pos = *off;
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n > VEIL_DNS_NAME_MAX)
        return -EINVAL;
    size_t need = n == 0 ? 1 : n + 2;
    if (pos > cap || cap - pos < need)
        return -ENOBUFS;
    size_t i = 0;
    while (i < n) {
        const char *dot = memchr(name + i, '.', n - i);
        size_t l = dot != NULL ? (size_t)(dot - (name + i)) : n - i;
        if (l == 0 || l > VEIL_DNS_LABEL_MAX)
            return -EINVAL;
        out[pos++] = (uint8_t)l;
        memcpy(out + pos, name + i, l);
        pos += l;
        i += l + 1;
        if (dot != NULL && i == n)
            return -EINVAL; /* "a..": the trailing dot was already cut */
    }
    out[pos++] = 0;
    *off = pos;
    return 0;
}

static int skip_rr(const uint8_t *msg, size_t len, size_t *off, struct veil_dns_rr *rr)
{
    struct veil_dns_rr tmp;
    if (rr == NULL)
        rr = &tmp;
    if (veil_dns_read_name(msg, len, off, rr->name, sizeof(rr->name)) < 0 || len - *off < 10)
        return -EINVAL;
    const uint8_t *p = msg + *off;
    rr->type = get16(p);
    rr->rclass = get16(p + 2);
    rr->ttl = ((uint32_t)get16(p + 4) << 16) | get16(p + 6);
    rr->rdlen = get16(p + 8);
    *off += 10;
    if (len - *off < rr->rdlen)
        return -EINVAL;
    rr->rdata = msg + *off;
    *off += rr->rdlen;
    return 0;
}

static int read_question(const uint8_t *msg, size_t len, size_t *off, struct veil_dns_question *q)
{
    if (veil_dns_read_name(msg, len, off, q->name, sizeof(q->name)) < 0 || len - *off < 4)
        return -EINVAL;
    q->qtype = get16(msg + *off);
    q->qclass = get16(msg + *off + 2);
    *off += 4;
    return 0;
}

int veil_dns_parse(const uint8_t *msg, size_t len, struct veil_dns_msg *m)
{
    size_t off = VEIL_DNS_HEADER_LEN;
    memset(m, 0, sizeof(*m));
    if (veil_dns_parse_header(msg, len, &m->hdr) < 0)
        return -EINVAL;
    for (unsigned i = 0; i < m->hdr.qdcount; i++) {
        struct veil_dns_question tmp;
        if (read_question(msg, len, &off, i == 0 ? &m->q : &tmp) < 0)
            return -EINVAL;
    }
    for (unsigned i = 0; i < m->hdr.ancount; i++) {
        struct veil_dns_rr *rr = m->nan < VEIL_DNS_MAX_RR ? &m->an[m->nan++] : NULL;
        if (skip_rr(msg, len, &off, rr) < 0)
            return -EINVAL;
    }
    unsigned rest = (unsigned)m->hdr.nscount + m->hdr.arcount;
    for (unsigned i = 0; i < rest; i++)
        if (skip_rr(msg, len, &off, NULL) < 0)
            return -EINVAL;
    return off == len ? 0 : -EINVAL;
}

ssize_t veil_dns_build_query(uint8_t *out, size_t cap, uint16_t id, const char *name,
                             uint16_t qtype)
{
    struct veil_dns_header h = {.id = id, .flags = VEIL_DNS_F_RD, .qdcount = 1};
    size_t off = VEIL_DNS_HEADER_LEN;
    int rc = veil_dns_write_header(out, cap, &h);
    if (rc < 0 || (rc = veil_dns_write_name(out, cap, &off, name)) < 0)
        return rc;
    if (cap - off < 4)
        return -ENOBUFS;
    put16(out + off, qtype);
    put16(out + off + 2, VEIL_DNS_C_IN);
    return (ssize_t)(off + 4);
}

/* ---- answering ---- */

bool veil_dns_in_domain(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);
    if (n < d || strcmp(name + n - d, domain) != 0)
        return false;
    return n == d || name[n - d - 1] == '.';
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Writes a response: header, the question (re-encoded, never copied: the
 * query's bytes are not trusted), and one A record if `a` is given. */
static ssize_t respond(const struct veil_dns_header *qh, const struct veil_dns_question *qn,
                       enum veil_dns_rcode rcode, const struct in_addr *a, uint8_t *out, size_t cap)
{
    struct veil_dns_header h = {
        .id = qh->id,
        .flags = (uint16_t)(VEIL_DNS_F_QR | (qh->flags & (0xf << 11)) | VEIL_DNS_F_AA |
                            (qh->flags & VEIL_DNS_F_RD) | rcode),
        .qdcount = qn != NULL ? 1 : 0,
        .ancount = a != NULL ? 1 : 0,
    };
    size_t off = VEIL_DNS_HEADER_LEN;
    int rc = veil_dns_write_header(out, cap, &h);
    if (rc < 0)
        return rc;
    if (qn != NULL) {
        if ((rc = veil_dns_write_name(out, cap, &off, qn->name)) < 0)
            return rc;
        if (cap - off < 4)
            return -ENOBUFS;
        put16(out + off, qn->qtype);
        put16(out + off + 2, qn->qclass);
        off += 4;
    }
    if (a != NULL) {
        if (cap - off < 16)
            return -ENOBUFS;
        uint8_t *p = out + off;
        put16(p, 0xc000 | VEIL_DNS_HEADER_LEN); /* the question's name */
        put16(p + 2, VEIL_DNS_T_A);
        put16(p + 4, VEIL_DNS_C_IN);
        put32(p + 6, VEIL_DNS_TTL);
        put16(p + 10, 4);
        memcpy(p + 12, &a->s_addr, 4);
        off += 16;
    }
    return (ssize_t)off;
}

ssize_t veil_dns_answer_rcode(const uint8_t *q, size_t qlen, uint8_t *out, size_t cap,
                              const struct veil_dns_lookup *lk, enum veil_dns_rcode *rcode_out)
{
    struct veil_dns_header h;
    struct veil_dns_question qn;
    char name[VEIL_DNS_NAME_MAX + 1];
    enum veil_dns_rcode rc;
    enum veil_dns_rcode dummy;
    size_t off = VEIL_DNS_HEADER_LEN;
    struct in_addr addr;
    bool found = false, echo = false;
    if (rcode_out == NULL)
        rcode_out = &dummy;
    if (veil_dns_parse_header(q, qlen, &h) < 0 || (h.flags & VEIL_DNS_F_QR))
        return -EINVAL;
    if (VEIL_DNS_OPCODE(h.flags) != 0) {
        rc = VEIL_DNS_NOTIMP; /* no question echoed: we did not read it */
    } else if (h.qdcount != 1 || read_question(q, qlen, &off, &qn) < 0) {
        rc = VEIL_DNS_FORMERR;
    } else if (qn.qclass != VEIL_DNS_C_IN && qn.qclass != VEIL_DNS_C_ANY) {
        rc = VEIL_DNS_REFUSED;
        echo = true;
    } else {
        const char *domain = lk->domain != NULL ? lk->domain : VEIL_DNS_CLUSTER_DOMAIN;
        memcpy(name, qn.name, sizeof(name));
        lower(name);
        found = name[0] != '\0' && lk->resolve(lk->arg, name, &addr) == 0;
        if (found)
            rc = VEIL_DNS_NOERROR;
        else
            rc = veil_dns_in_domain(name, domain) ? VEIL_DNS_NXDOMAIN : VEIL_DNS_REFUSED;
        found = found && (qn.qtype == VEIL_DNS_T_A || qn.qtype == VEIL_DNS_T_ANY);
        echo = true;
    }
    *rcode_out = rc;
    return respond(&h, echo ? &qn : NULL, rc, found ? &addr : NULL, out, cap);
}

ssize_t veil_dns_answer(const uint8_t *q, size_t qlen, uint8_t *out, size_t cap,
                        const struct veil_dns_lookup *lk)
{
    return veil_dns_answer_rcode(q, qlen, out, cap, lk, NULL);
}

/* ---- service names ---- */

static bool dns_label(const char *s, size_t n)
{
    if (n == 0 || n > VEIL_DNS_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

static int copy_lower(const char *s, size_t n, char *out, size_t cap)
{
    if (n + 1 > cap)
        return -ENOBUFS;
    for (size_t i = 0; i < n; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    out[n] = '\0';
    return 0;
}

/* Case-insensitive: does name[0..n) end with "." suffix (or equal it when
 * whole)? Returns the length before the dot, or -1. */
static long strip_suffix(const char *name, size_t n, const char *suffix)
{
    size_t s = strlen(suffix);
    if (n <= s + 1 || name[n - s - 1] != '.' || strncasecmp(name + n - s, suffix, s) != 0)
        return -1;
    return (long)(n - s - 1);
}

int veil_dns_service_name_in(const char *qname, const char *domain, const char *pod_ns, char *svc,
                             size_t svc_cap, char *ns, size_t ns_cap)
{
    size_t n = strlen(qname);
    long m;
    bool svc_form = false;
    char full[VEIL_DNS_NAME_MAX + 8];
    if (domain == NULL)
        domain = VEIL_DNS_CLUSTER_DOMAIN;
    if (n > 0 && qname[n - 1] == '.')
        n--;
    if (n == 0 || n > VEIL_DNS_NAME_MAX)
        return -ENOENT;
    /* "<svc>.<ns>.svc.<domain>" and "<svc>.<ns>.svc" both leave "<svc>.<ns>". */
    if (strlen(domain) + 5 < sizeof(full)) {
        snprintf(full, sizeof(full), "svc.%s", domain);
        if ((m = strip_suffix(qname, n, full)) >= 0 || (m = strip_suffix(qname, n, "svc")) >= 0) {
            n = (size_t)m;
            svc_form = true;
        } else if (strip_suffix(qname, n, domain) >= 0 ||
                   (n == strlen(domain) && strncasecmp(qname, domain, n) == 0))
            return -ENOENT; /* in the domain, but not a service name */
    }
    const char *dot = memchr(qname, '.', n);
    if (dot == NULL) {
        if (svc_form || pod_ns == NULL || !dns_label(qname, n))
            return -ENOENT;
        int rc = copy_lower(qname, n, svc, svc_cap);
        return rc < 0 ? rc : copy_lower(pod_ns, strlen(pod_ns), ns, ns_cap);
    }
    size_t sl = (size_t)(dot - qname), nl = n - sl - 1;
    if (!dns_label(qname, sl) || !dns_label(dot + 1, nl))
        return -ENOENT;
    int rc = copy_lower(qname, sl, svc, svc_cap);
    return rc < 0 ? rc : copy_lower(dot + 1, nl, ns, ns_cap);
}

int veil_dns_service_name(const char *qname, const char *pod_ns, char *svc, size_t svc_cap,
                          char *ns, size_t ns_cap)
{
    return veil_dns_service_name_in(qname, NULL, pod_ns, svc, svc_cap, ns, ns_cap);
}
