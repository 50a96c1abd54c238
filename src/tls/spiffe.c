#include "tls/spiffe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define SCHEME     "spiffe://"
#define SCHEME_LEN (sizeof(SCHEME) - 1)

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])? over s[0..n), without a length limit. */
static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool subdomain_ok(const char *s, size_t n)
{
    if (n == 0 || n > VEIL_SPIFFE_SUBDOMAIN_MAX)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!label_ok(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

static bool td_ok(const char *s, size_t n)
{
    if (n == 0 || n > VEIL_SPIFFE_TD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

bool veil_spiffe_valid_trust_domain(const char *td)
{
    return td != NULL && td_ok(td, strnlen(td, VEIL_SPIFFE_TD_MAX + 1));
}

bool veil_spiffe_valid_label(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strnlen(name, VEIL_SPIFFE_LABEL_MAX + 1);
    return n <= VEIL_SPIFFE_LABEL_MAX && label_ok(name, n);
}

bool veil_spiffe_valid_subdomain(const char *name)
{
    return name != NULL && subdomain_ok(name, strnlen(name, VEIL_SPIFFE_SUBDOMAIN_MAX + 1));
}

static int finish_format(char *buf, size_t n, int len)
{
    if (len < 0 || (size_t)len >= n) {
        if (n > 0)
            buf[0] = '\0';
        return -ENOBUFS;
    }
    return 0;
}

int veil_spiffe_workload_id(char *buf, size_t n, const char *trust_domain, const char *ns,
                            const char *sa)
{
    if (!veil_spiffe_valid_trust_domain(trust_domain) || !veil_spiffe_valid_label(ns) ||
        !veil_spiffe_valid_subdomain(sa)) {
        if (n > 0)
            buf[0] = '\0';
        return -EINVAL;
    }
    return finish_format(buf, n, snprintf(buf, n, SCHEME "%s/ns/%s/sa/%s", trust_domain, ns, sa));
}

int veil_spiffe_node_id(char *buf, size_t n, const char *trust_domain, const char *node)
{
    if (!veil_spiffe_valid_trust_domain(trust_domain) || !veil_spiffe_valid_subdomain(node)) {
        if (n > 0)
            buf[0] = '\0';
        return -EINVAL;
    }
    return finish_format(buf, n, snprintf(buf, n, SCHEME "%s/veil/node/%s", trust_domain, node));
}

struct seg {
    const char *p;
    size_t n;
};

static bool seg_is(const struct seg *s, const char *lit)
{
    return s->n == strlen(lit) && memcmp(s->p, lit, s->n) == 0;
}

/*
 * Splits "/a/b/c" into at most max segments. Each segment is then matched
 * against a literal or a Kubernetes name, which leaves no room for what the
 * SPIFFE spec forbids in a path: empty, "." and ".." segments, percent-
 * encoding, '?', '#', or anything outside [a-zA-Z0-9._-].
 */
static int split_path(const char *path, size_t len, struct seg *segs, int max)
{
    int count = 0;
    size_t i = 0;
    while (i < len) {
        if (path[i] != '/' || count == max)
            return -1;
        size_t start = ++i;
        while (i < len && path[i] != '/')
            i++;
        segs[count].p = path + start;
        segs[count].n = i - start;
        count++;
    }
    return count;
}

int veil_spiffe_parse(const char *uri, struct veil_spiffe_id *out)
{
    memset(out, 0, sizeof(*out));
    if (uri == NULL)
        return -EINVAL;
    size_t len = strnlen(uri, VEIL_SPIFFE_ID_MAX + 1);
    if (len > VEIL_SPIFFE_ID_MAX || len < SCHEME_LEN || memcmp(uri, SCHEME, SCHEME_LEN) != 0)
        return -EINVAL;

    const char *td = uri + SCHEME_LEN;
    const char *slash = memchr(td, '/', len - SCHEME_LEN);
    if (slash == NULL || !td_ok(td, (size_t)(slash - td)))
        return -EINVAL;

    struct seg s[5];
    int count = split_path(slash, len - (size_t)(slash - uri), s, 5);
    if (count == 4 && seg_is(&s[0], "ns") && seg_is(&s[2], "sa") &&
        s[1].n <= VEIL_SPIFFE_LABEL_MAX && label_ok(s[1].p, s[1].n) &&
        subdomain_ok(s[3].p, s[3].n)) {
        out->kind = VEIL_SPIFFE_WORKLOAD;
        memcpy(out->ns, s[1].p, s[1].n);
        memcpy(out->sa, s[3].p, s[3].n);
    } else if (count == 3 && seg_is(&s[0], "veil") && seg_is(&s[1], "node") &&
               subdomain_ok(s[2].p, s[2].n)) {
        out->kind = VEIL_SPIFFE_NODE;
        memcpy(out->node, s[2].p, s[2].n);
    } else if (count == 2 && seg_is(&s[0], "veil") && seg_is(&s[1], "control")) {
        out->kind = VEIL_SPIFFE_CONTROL;
    } else {
        memset(out, 0, sizeof(*out));
        return -EINVAL;
    }
    memcpy(out->trust_domain, td, (size_t)(slash - td));
    return 0;
}

/* The single URI SAN of gens, or NULL if there is none or more than one. */
static const ASN1_IA5STRING *only_uri(const GENERAL_NAMES *gens)
{
    const ASN1_IA5STRING *uri = NULL;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, i);
        if (gen->type != GEN_URI)
            continue;
        if (uri != NULL)
            return NULL;
        uri = gen->d.uniformResourceIdentifier;
    }
    return uri;
}

int veil_spiffe_from_cert(X509 *cert, char *buf, size_t n)
{
    if (n > 0)
        buf[0] = '\0';
    if (cert == NULL)
        return -EINVAL;

    ERR_set_mark();
    int crit = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    ERR_pop_to_mark();
    if (gens == NULL)
        return -EINVAL; /* absent (crit -1), repeated (crit -2) or undecodable */

    int rc = -EINVAL;
    char id[VEIL_SPIFFE_ID_MAX + 1];
    const ASN1_IA5STRING *uri = only_uri(gens);
    if (uri != NULL) {
        int len = ASN1_STRING_length(uri);
        const unsigned char *data = ASN1_STRING_get0_data(uri);
        if (len > 0 && len <= VEIL_SPIFFE_ID_MAX && memchr(data, '\0', (size_t)len) == NULL) {
            struct veil_spiffe_id parsed;
            memcpy(id, data, (size_t)len);
            id[len] = '\0';
            if (veil_spiffe_parse(id, &parsed) == 0)
                rc = (size_t)len < n ? 0 : -ENOBUFS;
        }
    }
    GENERAL_NAMES_free(gens);
    if (rc == 0)
        memcpy(buf, id, strlen(id) + 1);
    return rc;
}
