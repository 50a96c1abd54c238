/* Types of the local cluster (src/cluster/cluster.h). */
#ifndef VEIL_CLUSTER_CLUSTER_T_H
#define VEIL_CLUSTER_CLUSTER_T_H

#include <stdio.h>
#include <sys/types.h>

#define VEIL_CLUSTER_RUN_DIR   "/run/veil"
#define VEIL_CLUSTER_DEFAULT   "veil"
#define VEIL_CLUSTER_MAX_NODES 200                /* node i owns 198.18.i.0/24, i = 1..200 */
#define VEIL_CLUSTER_NAME_MAX  16                 /* [a-z0-9], so that netns names never collide */
#define VEIL_CLUSTER_CONTROL   "198.18.0.1:15012" /* the control plane's push port */

struct veil_cluster_opts {
    const char *name;     /* NULL: VEIL_CLUSTER_DEFAULT */
    int nodes;            /* 0: 2 */
    int no_proxies;       /* plumbing only: no `veil node` processes */
    const char *veil_bin; /* the veil binary to start; NULL: this process's own */
    int timeout_s;        /* each wait (control plane, each node); 0: 30 */
    FILE *progress;       /* one line per step; NULL: quiet */
};

/* A pod of the local cluster, as recorded in RUN_DIR/C/pods/NS/NAME.json. */
struct veil_cluster_pod {
    char cluster[VEIL_CLUSTER_NAME_MAX + 1];
    char ns[64];
    char name[64];
    char sa[254];
    char node[32];    /* "node-<i>" */
    int node_index;   /* i */
    int host;         /* j: the pod's address is 198.18.i.j */
    char address[16]; /* "198.18.i.j" */
    char netns[64];   /* "veil-C-pod-<i>-<j>" */
    int mesh;         /* registered with the control plane and enrolled */
    pid_t pid;        /* the pod's command, 0 before it started */
    int waypoint;     /* a waypoint (`veil waypoint add`): registered, never enrolled */
};

#endif
