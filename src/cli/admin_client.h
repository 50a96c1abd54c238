/*
 * The user commands' side of the control plane's admin socket
 * (STATE_DIR/control.sock, mode 0600: access is whoever may open it).
 *
 * Wire format (docs/control.md, "Admin socket"): one JSON object and a
 * newline in each direction, then the server closes.
 */
#ifndef VEIL_CLI_ADMIN_CLIENT_H
#define VEIL_CLI_ADMIN_CLIENT_H

#include <jansson.h>
#include <stddef.h>

#define VEIL_STATE_DIR_DEFAULT "/var/lib/veil"
/* The control plane of the default local cluster (`veil cluster create`). */
#define VEIL_STATE_DIR_LOCAL_CLUSTER "/run/veil/veil/control"

/* --state-dir if given, else $VEIL_STATE_DIR, else the default local
 * cluster's control plane when it runs (VEIL_STATE_DIR_LOCAL_CLUSTER has a
 * control.sock), else VEIL_STATE_DIR_DEFAULT. */
const char *veil_cli_state_dir(const char *flag);

/* Sends `req` and returns the parsed answer in *resp (caller json_decref's).
 * 0, or -1 with a sentence in `err` that says what to do. */
int veil_cli_admin_call(const char *state_dir, json_t *req, json_t **resp, char *err,
                        size_t errlen);

/* Adds {"path": ..., "content": ...} for FILE, or for each *.yaml, *.yml and
 * *.json file of DIR (sorted), to the array `files`. 0, or -1 with err. */
int veil_cli_collect_files(const char *path, json_t *files, char *err, size_t errlen);

#endif
