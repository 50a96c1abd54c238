/*
 * libFuzzer target for L4 authorization: every input is read as JSON and set
 * as an AuthorizationPolicy spec and a PeerAuthentication spec (in a
 * namespace and in the root namespace); accepted ones are evaluated against
 * a few requests. Evaluation trusts what set-time checking let through, so
 * this is where a gap between the two would crash.
 *
 *   make fuzz && ./build-fuzz/fuzz/authz_fuzz -max_total_time=600 tests/fuzz/corpus/authz
 */
#include "node/authz.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "authz_fuzz: check failed: %s\n", #cond);                              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *label(const void *arg, const char *key)
{
    (void)arg;
    return strcmp(key, "app") == 0 ? "web" : NULL;
}

static void requests(const struct veil_authz *a)
{
    static const char *const principals[] = {"spiffe://cluster.local/ns/default/sa/sleep",
                                             "spiffe://td/x", NULL};
    struct veil_authz_req r = {.dst_ns = "default", .dst_labels = {label, NULL}, .dst_port = 80};
    struct veil_authz_decision d;
    for (int i = 0; i < 3; i++) {
        r.src_principal = principals[i];
        r.src_ip.family = i == 0 ? AF_INET : (i == 1 ? AF_INET6 : 0);
        inet_pton(AF_INET, "10.0.0.5", &r.src_ip.u.v4);
        if (i == 1)
            inet_pton(AF_INET6, "::ffff:10.0.0.5", &r.src_ip.u.v6);
        r.dst_port = (uint16_t)(80 + i);
        enum veil_authz_verdict v = veil_authz_decide(a, &r, &d);
        CHECK(v == d.verdict);
        CHECK((v == VEIL_AUTHZ_DENY) ==
              (d.reason == VEIL_AUTHZ_DENY_MATCHED || d.reason == VEIL_AUTHZ_NO_ALLOW_MATCHED));
        CHECK(d.reason != VEIL_AUTHZ_DENY_MATCHED || d.policy[0] != '\0');
    }
    struct veil_authz_labels l = {label, NULL};
    enum veil_mtls_mode m = veil_authz_peer_mode(a, "default", &l, 8080);
    CHECK(m == VEIL_MTLS_PERMISSIVE || m == VEIL_MTLS_STRICT || m == VEIL_MTLS_DISABLE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *spec = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (spec == NULL)
        return 0;
    struct veil_authz *a = veil_authz_new(NULL);
    char err[256];
    CHECK(a != NULL);
    int rc = veil_authz_set(a, "default", "p", spec, err, sizeof(err));
    CHECK(rc == 0 || rc == 1 || rc == -EINVAL);
    CHECK((rc == 0) == (err[0] == '\0'));
    CHECK(veil_authz_count(a) == (rc >= 0 ? 1u : 0u));
    if (rc >= 0)
        CHECK(veil_authz_set(a, "istio-system", "p", spec, err, sizeof(err)) == rc);
    rc = veil_authz_peer_set(a, "default", "p", spec, err, sizeof(err));
    CHECK(rc == 0 || rc == 1 || rc == -EINVAL);
    if (rc >= 0)
        CHECK(veil_authz_peer_set(a, "istio-system", "p", spec, err, sizeof(err)) == rc);
    requests(a);
    veil_authz_free(a);
    json_decref(spec);
    return 0;
}
