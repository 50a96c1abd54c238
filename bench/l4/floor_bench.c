/*
 * bench/l4: the memory floor of a TLS process on this machine, measured in
 * the same run as the node proxy (see docs/benchmarks.md, bench/l4).
 *
 *   floor_bench --cert CHAIN.pem --key KEY.pem --ca ROOT.pem
 *
 * Loads the same shared libraries as `veil` (it is linked like it), makes
 * one TLS server context with veil's own settings (veil_tls_ctx_new: TLS 1.3,
 * client certificates verified against ROOT) and nothing else: no loop, no
 * sockets, no configuration. Prints "floor rss_kb=R anon_kb=A file_kb=F",
 * the resident set that any process doing mutual TLS with OpenSSL starts
 * from here, before it serves anything.
 */
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = strtol(line + kl + 1, NULL, 10);
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *ca = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--ca") == 0)
            ca = argv[i + 1];
    }
    if (cert == NULL || key == NULL || ca == NULL) {
        fprintf(stderr, "usage: floor_bench --cert CHAIN.pem --key KEY.pem --ca ROOT.pem\n");
        return 2;
    }
    char *cert_pem = slurp(cert), *key_pem = slurp(key), *ca_pem = slurp(ca);
    if (cert_pem == NULL || key_pem == NULL || ca_pem == NULL) {
        fprintf(stderr, "floor_bench: cannot read %s, %s or %s\n", cert, key, ca);
        return 1;
    }
    char err[256] = "";
    struct veil_tls_ctx_opts o = {
        .role = VEIL_TLS_SERVER,
        .cert_pem = cert_pem,
        .key_pem = key_pem,
        .trust_bundle_pem = ca_pem,
        .require_client_cert = true,
    };
    struct veil_tls_ctx *ctx = veil_tls_ctx_new(&o, err, sizeof(err));
    if (ctx == NULL) {
        fprintf(stderr, "floor_bench: %s\n", err);
        return 1;
    }
    printf("floor rss_kb=%ld anon_kb=%ld file_kb=%ld\n", status_kb("VmRSS"), status_kb("RssAnon"),
           status_kb("RssFile"));
    veil_tls_ctx_free(ctx);
    free(cert_pem);
    free(key_pem);
    free(ca_pem);
    return 0;
}
