/* Types of the certificate authority; see ca.h for the contract. */
#ifndef VEIL_TLS_CA_T_H
#define VEIL_TLS_CA_T_H

#include <stdint.h>

#define VEIL_CA_TRUST_DOMAIN_DEFAULT "cluster.local"
#define VEIL_CA_LIFETIME_DEFAULT     86400L           /* leaf certificates: 24 h */
#define VEIL_CA_LIFETIME_MAX         (3650L * 86400L) /* longest leaf asked for: 10 years */
#define VEIL_CA_ROOT_DAYS            3650             /* self-made root: 10 years */
#define VEIL_CA_CLOCK_SKEW           60L              /* leaf notBefore = now - 60 s */
#define VEIL_CA_CSR_MAX              65536            /* bytes of CSR PEM accepted */
#define VEIL_CA_FILE_MAX             (1024 * 1024)    /* bytes of a CA, key or bundle file */

/* Options of veil_ca_open(). Zeroed fields take their defaults. */
struct veil_ca_opts {
    const char *state_dir;    /* required; the CA lives in <state_dir>/ca/ */
    const char *trust_domain; /* NULL: VEIL_CA_TRUST_DOMAIN_DEFAULT */
    /*
     * Bring your own CA (both or neither). ca_cert_path holds the CA
     * certificate first, then optionally the intermediates above it (sent
     * with every leaf). root_bundle_path holds the roots it chains to; it is
     * required when the CA certificate is not self-signed (an intermediate).
     * Used on the first start only: once <state_dir>/ca/ holds a CA, that
     * one is loaded.
     */
    const char *ca_cert_path;
    const char *ca_key_path;
    const char *root_bundle_path;
    long leaf_lifetime_s; /* 0: VEIL_CA_LIFETIME_DEFAULT; at most VEIL_CA_LIFETIME_MAX */
};

/* Counters for metrics (veil_ca_stats()). */
struct veil_ca_stats {
    uint64_t issued;  /* certificates signed */
    uint64_t refused; /* sign or issue calls that returned no certificate */
};

struct veil_ca; /* opaque */

#endif
