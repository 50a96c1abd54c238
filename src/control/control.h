/*
 * `veil control`: the control plane process. Wires the store, the views,
 * the CA, the push server (15012), the status port (15014), the admin
 * socket (STATE_DIR/control.sock) and the watched config directory onto one
 * event loop, and runs it until SIGINT or SIGTERM.
 */
#ifndef VEIL_CONTROL_CONTROL_H
#define VEIL_CONTROL_CONTROL_H

#define VEIL_CONTROL_STATUS_PORT 15014

struct veil_control_opts {
    const char *state_dir;    /* required */
    const char *config_dir;   /* NULL: STATE_DIR/config (created) */
    const char *trust_domain; /* NULL: the one recorded in the state dir, else cluster.local */
    const char *service_cidr; /* NULL: the store's default */
    const char *listen;       /* address of 15012 and 15014; NULL: 0.0.0.0 */
    int push_port;            /* < 0: 15012; 0: any free port */
    int status_port;          /* < 0: 15014; 0: any free port */
    const char *ca_cert, *ca_key, *ca_roots; /* bring your own CA (first start) */
    long cert_lifetime_s;                    /* 0: 24 h */
};

/*
 * Runs in the foreground. Writes STATE_DIR/ports ("push PORT\nstatus PORT\n")
 * and STATE_DIR/join-token (0600) once listening. Returns the exit status.
 */
int veil_control_run(const struct veil_control_opts *opts);

#endif
