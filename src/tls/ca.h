/*
 * The mesh's certificate authority: it loads or creates the CA in the
 * control plane's state directory and signs workload and node certificates
 * (X.509-SVIDs). The certificate profile, file layout and verification rules
 * are in docs/identity.md.
 *
 * Returns: 0 on success, else -errno with a message (naming the file and the
 * reason, OpenSSL's reason where it has one) written into err (errlen bytes,
 * NUL-terminated, truncated if needed; err may be NULL when errlen is 0):
 *   -EINVAL  the input is refused (bad option, CA files, CSR or SPIFFE ID);
 *   -ENOMEM  out of memory (veil_malloc or OpenSSL failed to build an object);
 *   -errno   of a failed system call (reading or writing a file).
 * Strings returned through `char **` are allocated with veil_malloc and are
 * the caller's to veil_free; they are NULL when the call fails.
 *
 * Threads: veil_ca_open() and veil_ca_free() are not thread-safe; the other
 * functions only read the CA (plus atomic counters) and may run on several
 * threads at once.
 *
 * Policy is the caller's: the CA signs the SPIFFE ID it is given (it must be
 * a valid veil ID of the CA's trust domain) and never one found in a CSR.
 */
#ifndef VEIL_TLS_CA_H
#define VEIL_TLS_CA_H

#include "tls/ca-t.h"

#include <stddef.h>

/*
 * Opens the CA of opts->state_dir, in this order:
 *  1. <state_dir>/ca/ca.crt and ca.key exist: load them (and bundle.pem);
 *  2. opts->ca_cert_path/ca_key_path given: load, check (the key matches,
 *     the certificate is a CA with keyCertSign, it chains to the roots and
 *     is valid now) and copy them into <state_dir>/ca/;
 *  3. otherwise create a self-signed ECDSA P-256 root there.
 * <state_dir> and <state_dir>/ca are created with mode 0700 if missing. A
 * state dir holding only one of ca.crt and ca.key is refused, never
 * overwritten. On success *out is the CA, freed with veil_ca_free().
 */
int veil_ca_open(struct veil_ca **out, const struct veil_ca_opts *opts, char *err, size_t errlen);
void veil_ca_free(struct veil_ca *ca);

/* The trust domain, e.g. "cluster.local". */
const char *veil_ca_trust_domain(const struct veil_ca *ca);

/*
 * The trust bundle: the PEM concatenation of the root certificates that
 * verify this CA's leaves (the self-made root, or the given root bundle).
 * Peers put it in their trust store. Valid until veil_ca_free().
 */
const char *veil_ca_bundle_pem(const struct veil_ca *ca);

/*
 * The chain sent after each leaf: the CA certificate and the intermediates
 * above it when the CA is an intermediate, "" when it is a root.
 */
const char *veil_ca_chain_pem(const struct veil_ca *ca);

/*
 * Signs a PEM certificate signing request (csr_len bytes, at most
 * VEIL_CA_CSR_MAX; need not be NUL-terminated). The CSR's self-signature must
 * verify and its key must be EC P-256 or RSA of 2048 to 8192 bits; its
 * subject, SANs and extensions are ignored. The certificate carries uri_san
 * as its only SAN and lives lifetime_s seconds (0: the CA's default; at most
 * VEIL_CA_LIFETIME_MAX, cut to the CA certificate's own end). *cert_pem_out
 * is the leaf followed by veil_ca_chain_pem().
 */
int veil_ca_sign_csr(struct veil_ca *ca, const char *csr_pem, size_t csr_len, const char *uri_san,
                     long lifetime_s, char **cert_pem_out, char *err, size_t errlen);

/*
 * Makes an EC P-256 key here and signs it as veil_ca_sign_csr() would:
 * *key_pem_out is the unencrypted PKCS#8 key, *cert_pem_out leaf + chain.
 * For `veil ca issue` and tests; proxies send CSRs instead.
 */
int veil_ca_issue(struct veil_ca *ca, const char *uri_san, long lifetime_s, char **key_pem_out,
                  char **cert_pem_out, char *err, size_t errlen);

/*
 * veil_ca_issue() into files of out_dir (created 0700 if missing), named as
 * Istio's file-mounted certificates: key.pem (0600), cert-chain.pem (leaf +
 * chain, 0644) and root-cert.pem (the trust bundle, 0644). Each file is
 * written atomically (temporary file, fsync, rename).
 */
int veil_ca_issue_files(struct veil_ca *ca, const char *uri_san, long lifetime_s,
                        const char *out_dir, char *err, size_t errlen);

/* Counters since veil_ca_open(); safe from any thread. */
void veil_ca_stats(const struct veil_ca *ca, struct veil_ca_stats *out);

/*
 * For the requesting side (node proxies): makes an EC P-256 key and a CSR
 * signed with it, with an empty subject and uri_san (checked with
 * veil_spiffe_parse()) as its one requested SAN. The CA ignores the request's
 * SAN; it is there for humans and other CAs.
 */
int veil_csr_new(const char *uri_san, char **key_pem_out, char **csr_pem_out, char *err,
                 size_t errlen);

#endif
