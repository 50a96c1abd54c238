/* veil control, apply, delete, status. */
#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/admin_client.h"
#include "cli/opts.h"
#include "control/control.h"

static int parse_port(const char *cmd, const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) {
        fprintf(stderr, "veil %s: %s: expected a port number 0-65535, got '%s'\n", cmd, opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int veil_cli_control(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    struct veil_control_opts o = {.push_port = -1, .status_port = -1};
    const char *state = NULL, *push = NULL, *status = NULL, *lifetime = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--state-dir", &state)) ||
            (r = veil_cli_opt(argc, argv, &i, "--config-dir", &o.config_dir)) ||
            (r = veil_cli_opt(argc, argv, &i, "--trust-domain", &o.trust_domain)) ||
            (r = veil_cli_opt(argc, argv, &i, "--service-cidr", &o.service_cidr)) ||
            (r = veil_cli_opt(argc, argv, &i, "--listen", &o.listen)) ||
            (r = veil_cli_opt(argc, argv, &i, "--push-port", &push)) ||
            (r = veil_cli_opt(argc, argv, &i, "--status-port", &status)) ||
            (r = veil_cli_opt(argc, argv, &i, "--ca-cert", &o.ca_cert)) ||
            (r = veil_cli_opt(argc, argv, &i, "--ca-key", &o.ca_key)) ||
            (r = veil_cli_opt(argc, argv, &i, "--ca-roots", &o.ca_roots)) ||
            (r = veil_cli_opt(argc, argv, &i, "--cert-lifetime", &lifetime))) {
            if (r < 0)
                return VEIL_EXIT_USAGE;
            continue;
        }
        fprintf(stderr, "veil control: unknown argument '%s'; see 'veil control --help'\n",
                argv[i]);
        return VEIL_EXIT_USAGE;
    }
    if ((push != NULL && parse_port("control", "--push-port", push, &o.push_port) != 0) ||
        (status != NULL && parse_port("control", "--status-port", status, &o.status_port) != 0))
        return VEIL_EXIT_USAGE;
    if (lifetime != NULL && (o.cert_lifetime_s = strtol(lifetime, NULL, 10)) <= 0) {
        fprintf(stderr, "veil control: --cert-lifetime: expected seconds, got '%s'\n", lifetime);
        return VEIL_EXIT_USAGE;
    }
    /* The server itself never falls back to a local cluster's state dir. */
    const char *env = getenv("VEIL_STATE_DIR");
    o.state_dir = state != NULL                   ? state
                  : env != NULL && env[0] != '\0' ? env
                                                  : VEIL_STATE_DIR_DEFAULT;
    return veil_control_run(&o);
}

/* apply and delete: send the files, print what happened or why not. */
static int change(const char *name, int argc, char **argv)
{
    const char *state = NULL, *file = NULL;
    json_t *files = json_array();
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--state-dir", &state)) < 0 ||
            (r == 0 && (r = veil_cli_opt(argc, argv, &i, "-f", &file)) < 0)) {
            json_decref(files);
            return VEIL_EXIT_USAGE;
        }
        if (r == 0) {
            fprintf(stderr, "veil %s: unknown argument '%s'\n", name, argv[i]);
            json_decref(files);
            return VEIL_EXIT_USAGE;
        }
        char err[1024];
        if (file != NULL && veil_cli_collect_files(file, files, err, sizeof(err)) != 0) {
            fprintf(stderr, "veil %s: %s\n", name, err);
            json_decref(files);
            return 1;
        }
        file = NULL;
    }
    if (json_array_size(files) == 0) {
        fprintf(stderr, "veil %s: give at least one -f FILE|DIR (with .yaml, .yml or .json)\n",
                name);
        json_decref(files);
        return VEIL_EXIT_USAGE;
    }
    json_t *req = json_pack("{s:s, s:o}", "op", name, "files", files), *resp = NULL;
    char err[1024];
    int rc = veil_cli_admin_call(veil_cli_state_dir(state), req, &resp, err, sizeof(err));
    json_decref(req);
    if (rc != 0) {
        fprintf(stderr, "veil %s: %s\n", name, err);
        return 1;
    }
    int status = 0;
    if (!json_is_true(json_object_get(resp, "ok"))) {
        fprintf(stderr, "veil %s: refused, nothing was changed: %s\n", name,
                json_string_value(json_object_get(resp, "error")));
        status = 1;
    } else {
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(resp, "results"), i, it)
        {
            printf("%s %s%s\n", json_string_value(json_object_get(it, "id")),
                   json_string_value(json_object_get(it, "outcome")),
                   json_is_true(json_object_get(it, "ignored"))
                       ? " (kept, but veil does not use this kind yet)"
                       : "");
        }
    }
    json_decref(resp);
    return status;
}

int veil_cli_apply(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    return change("apply", argc, argv);
}

int veil_cli_delete(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    return change("delete", argc, argv);
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

static long long num(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void print_nodes(json_t *st)
{
    json_t *nodes = json_object_get(st, "nodes"), *n;
    size_t i;
    printf("Nodes:\n");
    if (json_array_size(nodes) == 0)
        printf("  none has connected yet (start one with 'veil node')\n");
    json_array_foreach(nodes, i, n)
    {
        if (!json_is_true(json_object_get(n, "connected")))
            printf("  %s: not connected (last acknowledged version %lld)\n", str(n, "name"),
                   num(n, "acked"));
        else if (json_is_true(json_object_get(n, "upToDate")))
            printf("  %s: connected, up to date (version %lld)\n", str(n, "name"), num(n, "acked"));
        else if (json_object_get(n, "rejectReason") != NULL)
            printf("  %s: connected, NOT up to date (has version %lld, was sent %lld)\n",
                   str(n, "name"), num(n, "acked"), num(n, "sent"));
        else
            printf("  %s: connected, catching up (has version %lld, was sent %lld)\n",
                   str(n, "name"), num(n, "acked"), num(n, "sent"));
        if (json_object_get(n, "rejectReason") != NULL)
            printf("    it REJECTED version %lld: %s\n", num(n, "rejected"),
                   str(n, "rejectReason"));
    }
}

static void print_workloads(json_t *st)
{
    json_t *w;
    size_t i;
    printf("\nWorkloads:\n");
    if (json_array_size(json_object_get(st, "workloads")) == 0)
        printf("  none registered\n");
    json_array_foreach(json_object_get(st, "workloads"), i, w)
    {
        printf("  %s/%s on %s, %s, runs as %s\n", str(w, "namespace"), str(w, "name"),
               json_object_get(w, "node") ? str(w, "node") : "no node",
               json_object_get(w, "address") ? str(w, "address") : "no address yet",
               str(w, "identity"));
        if (json_is_true(json_object_get(w, "encrypted")))
            printf("    its traffic is encrypted (mutual TLS)\n");
        else
            printf("    its traffic is NOT encrypted yet: %s\n", str(w, "why"));
    }
}

/* "a, b, c" of an array of strings. */
static void print_names(json_t *arr)
{
    json_t *x;
    size_t i;
    json_array_foreach(arr, i, x)
    {
        printf("%s%s", i > 0 ? ", " : "", json_string_value(x));
    }
}

static void print_waypoints(json_t *st)
{
    json_t *w;
    size_t i;
    printf("\nWaypoints:\n");
    if (json_array_size(json_object_get(st, "waypoints")) == 0)
        printf("  none (add one with 'veil waypoint add')\n");
    json_array_foreach(json_object_get(st, "waypoints"), i, w)
    {
        if (json_object_get(w, "address") != NULL)
            printf("  %s/%s at %s, runs as %s\n", str(w, "namespace"), str(w, "name"),
                   str(w, "address"), str(w, "identity"));
        else
            printf("  %s/%s: NOT running: %s\n", str(w, "namespace"), str(w, "name"),
                   str(w, "why"));
        if (json_array_size(json_object_get(w, "services")) == 0) {
            printf("    no Service uses it yet (label one istio.io/use-waypoint: %s)\n",
                   str(w, "name"));
            continue;
        }
        printf("    used by ");
        print_names(json_object_get(w, "services"));
        printf("\n");
    }
}

static void print_routes(json_t *st)
{
    json_t *r, *x;
    size_t i, j;
    json_array_foreach(json_object_get(st, "routes"), i, r)
    {
        if (i == 0)
            printf("\nRoutes:\n");
        printf("  %s %s/%s (%s:%lld)\n", str(r, "kind"), str(r, "namespace"), str(r, "name"),
               str(r, "file"), num(r, "line"));
        if (json_array_size(json_object_get(r, "parents")) == 0)
            printf("    it has no parentRefs: it applies to nothing\n");
        json_array_foreach(json_object_get(r, "parents"), j, x)
        {
            if (json_is_true(json_object_get(x, "accepted")))
                printf("    %s: accepted, applied by waypoint %s\n", str(x, "ref"),
                       str(x, "waypoint"));
            else
                printf("    %s: NOT accepted: %s\n", str(x, "ref"), str(x, "reason"));
        }
        json_array_foreach(json_object_get(r, "unresolvedBackends"), j, x)
        {
            printf("    %s\n", str(x, "reason"));
        }
    }
}

static void print_l7_policies(json_t *st)
{
    json_t *p;
    size_t i;
    json_array_foreach(json_object_get(st, "l7Policies"), i, p)
    {
        if (i == 0)
            printf("\nPolicies with L7 parts on workloads without a waypoint:\n");
        printf("  AuthorizationPolicy %s/%s (%s, %s) binds ", str(p, "namespace"), str(p, "name"),
               str(p, "action"), str(p, "field"));
        print_names(json_object_get(p, "workloads"));
        if (num(p, "count") > (long long)json_array_size(json_object_get(p, "workloads")))
            printf(" and others (%lld in all)", num(p, "count"));
        printf("\n    the node proxy cannot check L7: %s\n", str(p, "enforced"));
    }
}

static void print_policies(json_t *st)
{
    json_t *p;
    size_t i;
    printf("\nPolicies in force:\n");
    if (json_array_size(json_object_get(st, "policies")) == 0)
        printf("  none: every workload may talk to every other one\n");
    json_array_foreach(json_object_get(st, "policies"), i, p)
    {
        printf("  %s %s/%s: %s (%s:%lld)\n", str(p, "kind"), str(p, "namespace"), str(p, "name"),
               str(p, "effect"), str(p, "file"), num(p, "line"));
    }
    print_l7_policies(st);
    json_array_foreach(json_object_get(st, "ignored"), i, p)
    {
        if (i == 0)
            printf("\nKept but not used (kinds veil does not know yet):\n");
        printf("  %s (%s:%lld)\n", str(p, "id"), str(p, "file"), num(p, "line"));
    }
    printf("\nRefused configuration:\n");
    if (json_array_size(json_object_get(st, "refused")) == 0)
        printf("  none\n");
    json_array_foreach(json_object_get(st, "refused"), i, p)
    {
        printf("  from %s: %s\n    (the configuration before it is still in force)\n",
               str(p, "source"), str(p, "error"));
    }
}

int veil_cli_status(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    const char *state = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        int r = veil_cli_opt(argc, argv, &i, "--state-dir", &state);
        if (r < 0)
            return VEIL_EXIT_USAGE;
        if (r == 0 && strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (r == 0) {
            fprintf(stderr, "veil status: unknown argument '%s'\n", argv[i]);
            return VEIL_EXIT_USAGE;
        }
    }
    json_t *req = json_pack("{s:s}", "op", "status"), *resp = NULL;
    char err[1024];
    int rc = veil_cli_admin_call(veil_cli_state_dir(state), req, &resp, err, sizeof(err));
    json_decref(req);
    if (rc != 0) {
        fprintf(stderr, "veil status: %s\n", err);
        return 1;
    }
    json_t *st = json_object_get(resp, "status");
    if (as_json) {
        json_dumpf(st, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        printf("Configuration version %lld, trust domain %s\n\n", num(st, "version"),
               str(st, "trustDomain"));
        print_nodes(st);
        print_workloads(st);
        print_waypoints(st);
        print_routes(st);
        print_policies(st);
    }
    json_decref(resp);
    return 0;
}
