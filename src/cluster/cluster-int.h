/* Shared inside src/cluster only. */
#ifndef VEIL_CLUSTER_CLUSTER_INT_H
#define VEIL_CLUSTER_CLUSTER_INT_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#define CLUSTER_PATH_MAX 512

/* snprintf that says nothing about truncation at compile time: paths here
 * are built from bounded names; it returns what vsnprintf returns. */
int cluster__fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Runs argv (execvp) with `input` on its stdin (NULL: /dev/null); 0 when it
 * exits 0, else -1 with "<argv[0..2]>: <its stderr>" in err. */
int cluster__run(const char *const argv[], const char *input, char *err, size_t errlen);

/* `ip -n NETNS -batch -` with the commands in `batch` (one per line). */
int cluster__ip_batch(const char *netns, const char *batch, char *err, size_t errlen);

/* Starts `ip netns exec NETNS argv...` in its own session with stdin from
 * /dev/null and stdout+stderr appended to `log`. *pid is the process
 * (ip execs the command: same pid). */
int cluster__spawn(const char *netns, const char *const argv[], const char *log, pid_t *pid,
                   char *err, size_t errlen);

/* 1 while pid runs (reaps it if it is our exited child), else 0. */
int cluster__alive(pid_t pid);

/* Sends SIGTERM to every process whose netns is one of `names` (ip netns
 * NAME), waits up to grace_ms for them to go, then SIGKILLs the rest. */
void cluster__kill_netns(char *const names[], size_t n, int grace_ms);

/* Waits up to ms for the processes to be gone (exited; zombies count as
 * gone). Signals nothing: a recorded pid may have been reused. */
void cluster__wait_gone(const pid_t *pids, size_t n, int ms);

/* Whether `ip netns` NAME exists; delete it (absent is fine). */
int cluster__netns_exists(const char *name);
void cluster__netns_del(const char *name);

/* Appends a line to RUN_DIR/C/netns (the names to delete, written before
 * each netns is made). */
int cluster__record_netns(const char *dir, const char *netns);

/* GET http://127.0.0.1:PORT/PATH inside NETNS; 1 when it answers 200. */
int cluster__http_ok(const char *netns, int port, const char *path);
/* The same, with the answer's status (-1: no HTTP answer within a second)
 * and the start of its body (NUL-terminated, at most len - 1 bytes) into body. */
int cluster__http_get(const char *netns, int port, const char *path, char *body, size_t len);

/* One JSON line to the Unix socket `path`, one JSON line back. */
int cluster__unix_call(const char *path, json_t *req, json_t **resp, int timeout_ms, char *err,
                       size_t errlen);

/* Exclusive lock on DIR/lock; returns the fd (close to unlock) or -1. */
int cluster__lock(const char *dir, char *err, size_t errlen);

/* rm -rf of one of our own dirs. */
void cluster__rm_rf(const char *path);

/* mkdir -p with mode. 0 or -errno. */
int cluster__mkdirs(const char *path, mode_t mode);

/* The last `lines` lines of a log file, for error messages ("" if none). */
void cluster__log_tail(const char *path, int lines, char *buf, size_t len);

#endif
