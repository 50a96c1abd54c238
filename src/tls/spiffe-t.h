/* Types of the SPIFFE ID module; see spiffe.h for the contract. */
#ifndef VEIL_TLS_SPIFFE_T_H
#define VEIL_TLS_SPIFFE_T_H

/* Longest SPIFFE ID accepted, in bytes without the NUL (SPIFFE ID spec). */
#define VEIL_SPIFFE_ID_MAX 2048
/* Longest trust domain name (SPIFFE ID spec). */
#define VEIL_SPIFFE_TD_MAX 255
/* Kubernetes limits: a DNS-1123 label and a DNS-1123 subdomain. */
#define VEIL_SPIFFE_LABEL_MAX     63
#define VEIL_SPIFFE_SUBDOMAIN_MAX 253

/* The shapes of identity veil issues and accepts. */
enum veil_spiffe_kind {
    VEIL_SPIFFE_WORKLOAD = 1, /* spiffe://<td>/ns/<namespace>/sa/<service-account> */
    VEIL_SPIFFE_NODE = 2,     /* spiffe://<td>/veil/node/<node-name> */
    VEIL_SPIFFE_CONTROL = 3,  /* spiffe://<td>/veil/control: the control plane */
};

/*
 * A parsed SPIFFE ID. Every string is NUL-terminated; the fields that do
 * not belong to `kind` are empty strings.
 */
struct veil_spiffe_id {
    enum veil_spiffe_kind kind;
    char trust_domain[VEIL_SPIFFE_TD_MAX + 1];
    char ns[VEIL_SPIFFE_LABEL_MAX + 1];       /* workload: namespace */
    char sa[VEIL_SPIFFE_SUBDOMAIN_MAX + 1];   /* workload: service account */
    char node[VEIL_SPIFFE_SUBDOMAIN_MAX + 1]; /* node: node name */
};

#endif
