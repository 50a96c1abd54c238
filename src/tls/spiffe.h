/*
 * SPIFFE IDs: validation, formatting and parsing of the identities veil puts
 * in certificates (docs/identity.md).
 *
 *   workload  spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
 *   node      spiffe://<trust-domain>/veil/node/<node-name>
 *
 * Names follow Kubernetes: a namespace is a DNS-1123 label (lowercase
 * alphanumerics and '-', starting and ending with an alphanumeric, at most
 * 63 bytes); a service account and a node name are DNS-1123 subdomains
 * (such labels joined by '.', at most 253 bytes). A trust domain is 1 to 255
 * bytes of [a-z0-9._-] (SPIFFE ID spec).
 *
 * Parsing is strict: anything that is not exactly one of the two forms
 * above is refused, including every URI feature a SPIFFE ID may not have
 * (query, fragment, port, userinfo, percent-encoding, empty, "." or ".."
 * path segments, a trailing '/', an upper-case scheme or trust domain) and
 * IDs longer than VEIL_SPIFFE_ID_MAX bytes.
 *
 * All functions are pure (no allocation, no global state) and thread-safe.
 */
#ifndef VEIL_TLS_SPIFFE_H
#define VEIL_TLS_SPIFFE_H

#include "tls/spiffe-t.h"

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

/* Name checks; NULL is never valid. */
bool veil_spiffe_valid_trust_domain(const char *td);
bool veil_spiffe_valid_label(const char *name);     /* DNS-1123 label: a namespace */
bool veil_spiffe_valid_subdomain(const char *name); /* DNS-1123 subdomain: an SA, a node */

/*
 * Writes spiffe://<td>/ns/<ns>/sa/<sa> (resp. spiffe://<td>/veil/node/<node>)
 * into buf. Returns 0; -EINVAL if a name is invalid (buf is then ""),
 * -ENOBUFS if buf (n bytes with the NUL) is too small (buf is then "" too).
 */
int veil_spiffe_workload_id(char *buf, size_t n, const char *trust_domain, const char *ns,
                            const char *sa);
int veil_spiffe_node_id(char *buf, size_t n, const char *trust_domain, const char *node);

/*
 * Parses a NUL-terminated SPIFFE ID into *out. Returns 0, or -EINVAL if uri
 * is not a veil workload or node ID (then *out is zeroed).
 */
int veil_spiffe_parse(const char *uri, struct veil_spiffe_id *out);

/*
 * The SPIFFE ID of an X.509-SVID: the certificate must carry exactly one URI
 * SAN (X.509-SVID spec; DNS or IP SANs next to it are allowed) and that URI
 * must parse with veil_spiffe_parse(). Writes it, NUL-terminated, into buf.
 * Returns 0; -EINVAL otherwise (no SAN extension, several SAN extensions, no
 * or several URI SANs, a URI that is not a veil SPIFFE ID); -ENOBUFS if buf
 * is too small (VEIL_SPIFFE_ID_MAX + 1 is always enough). buf is "" on
 * failure. Only the SAN is examined: chain, validity and key usage are the
 * verifier's job (docs/identity.md, "Verification"). The OpenSSL error queue
 * is left as it was found.
 */
int veil_spiffe_from_cert(X509 *cert, char *buf, size_t n);

#endif
