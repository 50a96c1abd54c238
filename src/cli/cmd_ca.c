#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "cli/admin_client.h"
#include "cli/opts.h"
#include "core/file.h"
#include "tls/ca.h"
#include "tls/spiffe.h"

struct ca_issue_args {
    const char *ns, *sa, *out, *state_dir, *lifetime;
};

static int parse_issue(int argc, char **argv, struct ca_issue_args *a)
{
    for (int i = 2; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--namespace", &a->ns)) ||
            (r = veil_cli_opt(argc, argv, &i, "--service-account", &a->sa)) ||
            (r = veil_cli_opt(argc, argv, &i, "--out", &a->out)) ||
            (r = veil_cli_opt(argc, argv, &i, "--lifetime", &a->lifetime)) ||
            (r = veil_cli_opt(argc, argv, &i, "--state-dir", &a->state_dir))) {
            if (r < 0)
                return -1;
            continue;
        }
        fprintf(stderr, "veil ca issue: unknown argument '%s'\n", argv[i]);
        return -1;
    }
    if (a->ns == NULL || a->sa == NULL || a->out == NULL) {
        fprintf(stderr, "veil ca issue: --namespace, --service-account and --out are needed\n");
        return -1;
    }
    return 0;
}

/* Reads STATE_DIR/trust-domain, written by the control plane at first start. */
static void read_trust_domain(const char *state_dir, char *td, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/trust-domain", state_dir);
    if (veil_file_read_line(path, td, n) != 0)
        snprintf(td, n, "cluster.local");
}

static int ca_issue(int argc, char **argv)
{
    struct ca_issue_args a = {0};
    if (parse_issue(argc, argv, &a) != 0)
        return VEIL_EXIT_USAGE;
    const char *state_dir = veil_cli_state_dir(a.state_dir);
    long lifetime = 0;
    if (a.lifetime != NULL && sscanf(a.lifetime, "%ld", &lifetime) != 1) {
        fprintf(stderr, "veil ca issue: --lifetime: expected seconds, got '%s'\n", a.lifetime);
        return VEIL_EXIT_USAGE;
    }
    char td[256], id[2048], err[1024];
    read_trust_domain(state_dir, td, sizeof(td));
    if (veil_spiffe_workload_id(id, sizeof(id), td, a.ns, a.sa) != 0) {
        fprintf(stderr, "veil ca issue: '%s' / '%s' is not a valid namespace / service account\n",
                a.ns, a.sa);
        return VEIL_EXIT_USAGE;
    }
    char cadir[4096];
    snprintf(cadir, sizeof(cadir), "%s/ca/ca.crt", state_dir);
    FILE *probe = fopen(cadir, "r");
    if (probe == NULL) {
        fprintf(stderr,
                "veil ca issue: no CA in %s/ca; start the control plane once with "
                "'veil control --state-dir %s' (or set --state-dir / VEIL_STATE_DIR)\n",
                state_dir, state_dir);
        return 1;
    }
    fclose(probe);
    struct veil_ca_opts o = {.state_dir = state_dir, .trust_domain = td};
    struct veil_ca *ca = NULL;
    if (veil_ca_open(&ca, &o, err, sizeof(err)) != 0 ||
        veil_ca_issue_files(ca, id, lifetime, a.out, err, sizeof(err)) != 0) {
        fprintf(stderr, "veil ca issue: %s\n", err);
        veil_ca_free(ca);
        return 1;
    }
    veil_ca_free(ca);
    printf("wrote %s/key.pem, %s/cert-chain.pem and %s/root-cert.pem for %s\n", a.out, a.out, a.out,
           id);
    return 0;
}

int veil_cli_ca(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "issue") == 0)
        return ca_issue(argc, argv);
    fputs(cmd->usage, stderr);
    return VEIL_EXIT_USAGE;
}
