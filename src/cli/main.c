#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

static int cmd_help(const struct veil_cli_cmd *cmd, int argc, char **argv);
static int cmd_version(const struct veil_cli_cmd *cmd, int argc, char **argv);

static const struct veil_cli_cmd commands[] = {
    {"demo", "build a local cluster, run a few apps and show their traffic encrypted",
     "usage: veil demo [--name NAME] [--cleanup | --keep] [--timeout SECONDS]\n\n"
     "Builds a local cluster NAME (default 'demo': a control plane and two nodes,\n"
     "each a network namespace with its node proxy), starts ordinary programs as\n"
     "pods behind Services (python3 http.server 'web', nginx 'frontend', redis-server\n"
     "'redis') and a client pod, sends traffic between them (curl, redis-cli,\n"
     "redis-benchmark) and explains what talked to what, and under which identity.\n"
     "A cluster NAME left by an earlier run is deleted first. Needs root.\n\n"
     "  --keep      leave the cluster running at the end (the default), to look\n"
     "              around; also keeps it when the demo fails\n"
     "  --cleanup   delete the cluster at the end\n"
     "  --timeout   how long to wait for each app to answer (default 30)\n",
     veil_cli_demo},
    {"control", "run the control plane (config, registry, CA, push)",
     "usage: veil control [--state-dir DIR] [--config-dir DIR] [--trust-domain TD]\n"
     "                    [--listen ADDR] [--push-port N] [--status-port N]\n"
     "                    [--service-cidr CIDR] [--cert-lifetime SECONDS]\n"
     "                    [--ca-cert FILE --ca-key FILE [--ca-roots FILE]]\n\n"
     "Runs the control plane in the foreground: config store, workload registry,\n"
     "certificate authority, config push to proxies (15012), status and metrics\n"
     "(15014). The state dir defaults to $VEIL_STATE_DIR or /var/lib/veil; the\n"
     "config dir (watched for changes) to STATE_DIR/config.\n",
     veil_cli_control},
    {"node", "run the node proxy (transparent mTLS between workloads)",
     "usage: veil node --name NODE --state-dir DIR --control ADDR:PORT --token-file FILE\n"
     "                 [--metrics-port 15020] [--ready-port 15021] [--admin-port 15000]\n\n"
     "Runs the per-node L4 proxy: captures pod traffic, carries it over HBONE\n"
     "(mutual TLS, HTTP/2 CONNECT on 15008), applies L4 policy, serves metrics.\n"
     "Pods are enrolled through DIR/node.sock (docs/node.md).\n",
     veil_cli_node},
    {"waypoint", "deploy or run a waypoint (the L7 proxy of a namespace or service)",
     "usage: veil waypoint add --namespace NS [--name NAME] [--node NODE] [--enroll]\n"
     "                         [--timeout SECONDS] [--cluster C]\n"
     "       veil waypoint remove --namespace NS [--name NAME] [--cluster C]\n"
     "       veil waypoint list [--cluster C]\n"
     "       veil waypoint run --namespace NS --name NAME --state-dir DIR --control ADDR:PORT\n"
     "                         --token-file FILE [--drain-seconds 2] [--metrics-port 15020]\n"
     "                         [--ready-port 15021] [--admin-port 15000]\n\n"
     "A waypoint is the L7 proxy (HTTP routing, retries, timeouts, L7 authorization,\n"
     "request metrics) that node proxies send a namespace's or a Service's traffic\n"
     "to when it carries the label istio.io/use-waypoint=NAME (docs/waypoint.md).\n\n"
     "'add' starts one as its own pod on NODE (default node-1) of the local cluster:\n"
     "a Pod labelled gateway.networking.k8s.io/gateway-name=NAME and\n"
     "istio.io/dataplane-mode=none (not captured), identity ns/NS/sa/NAME, serving\n"
     "HBONE on its address:15008; it waits until the waypoint is ready. NAME\n"
     "defaults to 'waypoint'. --enroll labels the namespace NS to use it.\n"
     "'remove' takes the namespace label off (if it names this waypoint), deletes\n"
     "the Pod first, lets open tunnels finish (a short drain), then stops it.\n"
     "'run' is the process itself (what 'add' starts inside the pod).\n",
     veil_cli_waypoint},
    {"status", "say what the mesh is doing, in plain words",
     "usage: veil status [--json] [--state-dir DIR]\n\n"
     "Shows connected nodes, workloads and their identities, policies in force\n"
     "and every refused configuration with its reason.\n",
     veil_cli_status},
    {"apply", "add or change configuration from YAML files",
     "usage: veil apply -f FILE|DIR [-f ...] [--state-dir DIR]\n\n"
     "Adds or changes the resources in the files, all or nothing: one bad\n"
     "resource refuses the whole apply, with its file, line and reason.\n",
     veil_cli_apply},
    {"delete", "remove configuration named in YAML files",
     "usage: veil delete -f FILE|DIR [-f ...] [--state-dir DIR]\n\n"
     "Removes the resources named in the files (all or nothing).\n",
     veil_cli_delete},
    {"cluster", "create or delete a local cluster of network namespaces",
     "usage: veil cluster create [--name NAME] [--nodes K] [--no-proxies] [--timeout SECONDS]\n"
     "       veil cluster delete [--name NAME]\n\n"
     "Builds a multi-node cluster on this host out of network namespaces: a\n"
     "control plane at 198.18.0.1, nodes node-1..node-K (pods of node-i get\n"
     "198.18.i.0/24), one 'veil node' proxy per node. State and logs are under\n"
     "/run/veil/NAME. NAME defaults to $VEIL_CLUSTER or 'veil' (docs/cluster.md).\n"
     "--no-proxies builds the network and the control plane only. Needs root.\n"
     "'delete' stops every process of the cluster and removes all it made.\n",
     veil_cli_cluster},
    {"run", "start a program as a pod on a node of the local cluster",
     "usage: veil run --node NODE --name NAME [--namespace NS] [--service-account SA]\n"
     "                [--label k=v]... [--no-mesh] [--cluster C] -- CMD [ARGS...]\n\n"
     "Makes the pod's network namespace on NODE (next free address of the node's\n"
     "subnet), registers it as a Pod with the control plane, enrols it with the\n"
     "node proxy (its traffic is then captured and encrypted) and starts CMD in\n"
     "it in the background. --no-mesh: a plain client outside the mesh. The\n"
     "namespace defaults to 'default', the service account to NAME.\n",
     veil_cli_run},
    {"exec", "run a command inside a pod",
     "usage: veil exec [--cluster C] [--namespace NS] NAME -- CMD [ARGS...]\n\n"
     "Runs CMD in the pod's network namespace (with its resolv.conf), in the\n"
     "foreground; exits with CMD's status.\n",
     veil_cli_exec},
    {"logs", "show a pod's output", "usage: veil logs [--cluster C] [--namespace NS] NAME\n",
     veil_cli_logs},
    {"rm", "stop and delete a pod of the local cluster",
     "usage: veil rm [--cluster C] [--namespace NS] NAME\n", veil_cli_rm},
    {"ca", "issue certificates for mesh identities",
     "usage: veil ca issue --namespace NS --service-account SA --out DIR\n"
     "                     [--lifetime SECONDS] [--state-dir DIR]\n\n"
     "Writes key.pem, cert-chain.pem and root-cert.pem for the identity\n"
     "spiffe://<trust-domain>/ns/NS/sa/SA, signed by the control plane's CA.\n"
     "Run it on the control plane's host.\n",
     veil_cli_ca},
    {"debug", "tools for looking inside the mesh",
     "usage: veil debug watch --node NODE [--version V] [--count N] [--ack | --nack REASON]\n"
     "                        [--state-dir DIR] [--addr ADDR]\n\n"
     "Joins the local control plane as NODE and prints the configuration updates\n"
     "that node receives, one JSON object per line. By default it only observes;\n"
     "--ack acknowledges each version as the node proxy would (it then counts as\n"
     "the node), --nack REASON rejects each one. --count N exits after N updates.\n",
     veil_cli_debug},
    {"version", "print the version", "usage: veil version\n", cmd_version},
    {"help", "list the commands, or explain one", "usage: veil help [COMMAND]\n", cmd_help},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct veil_cli_cmd *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

static void print_overview(FILE *f)
{
    fprintf(f,
            "veil %s: a sidecar-less service mesh (mutual TLS between workloads,\n"
            "no change to the apps)\n\n"
            "usage: veil [--log-level LEVEL] [--log-format text|json] COMMAND [ARGS]\n\n"
            "commands:\n",
            VEIL_VERSION);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'veil COMMAND --help' for more about a command.\n");
}

static int cmd_help(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    if (argc < 2) {
        print_overview(stdout);
        return 0;
    }
    const struct veil_cli_cmd *c = find_command(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "veil help: unknown command '%s'; 'veil help' lists them\n", argv[1]);
        return VEIL_EXIT_USAGE;
    }
    fputs(c->usage, stdout);
    return 0;
}

static int cmd_version(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    (void)argc;
    (void)argv;
    printf("veil %s\n", VEIL_VERSION);
    return 0;
}

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    }
    return 0;
}

/* Global options come before the command. Returns the index of the command. */
static int parse_globals(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--log-level") == 0 && val != NULL) {
            enum veil_log_level l;
            if (veil_log_parse_level(val, &l) != 0) {
                fprintf(stderr,
                        "veil: --log-level: unknown level '%s' "
                        "(debug, info, warn, error, off)\n",
                        val);
                return -1;
            }
            veil_log_set_level(l);
            i++;
        } else if (strcmp(opt, "--log-format") == 0 && val != NULL) {
            if (strcmp(val, "json") != 0 && strcmp(val, "text") != 0) {
                fprintf(stderr, "veil: --log-format: expected text or json, got '%s'\n", val);
                return -1;
            }
            veil_log_set_format(strcmp(val, "json") == 0 ? VEIL_LOG_JSON : VEIL_LOG_TEXT);
            i++;
        } else if (strcmp(opt, "--version") == 0) {
            return -2;
        } else if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            return argc;
        } else {
            fprintf(stderr, "veil: unknown option '%s'; 'veil help' lists the commands\n", opt);
            return -1;
        }
    }
    return i;
}

int main(int argc, char **argv)
{
    int i = parse_globals(argc, argv);
    if (i == -2)
        return cmd_version(NULL, 0, NULL);
    if (i < 0)
        return VEIL_EXIT_USAGE;
    if (i >= argc) {
        print_overview(stdout);
        return 0;
    }
    const struct veil_cli_cmd *c = find_command(argv[i]);
    if (c == NULL) {
        fprintf(stderr, "veil: unknown command '%s'; 'veil help' lists them\n", argv[i]);
        return VEIL_EXIT_USAGE;
    }
    if (wants_help(argc - i, argv + i)) {
        fputs(c->usage, stdout);
        return 0;
    }
    return c->run(c, argc - i, argv + i);
}
