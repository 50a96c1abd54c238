#include "cli/admin_client.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/conf.h"

#define MAX_FILE     (16u << 20)
#define MAX_RESPONSE (64u << 20)

const char *veil_cli_state_dir(const char *flag)
{
    if (flag != NULL)
        return flag;
    const char *env = getenv("VEIL_STATE_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    if (access(VEIL_STATE_DIR_LOCAL_CLUSTER "/control.sock", F_OK) == 0)
        return VEIL_STATE_DIR_LOCAL_CLUSTER;
    return VEIL_STATE_DIR_DEFAULT;
}

static int connect_admin(const char *state_dir, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", state_dir);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "state dir path too long: %s", state_dir);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (e == ENOENT || e == ECONNREFUSED)
        snprintf(err, errlen,
                 "no control plane is running with state dir %s (%s); start one with "
                 "'veil control --state-dir %s', or point at another with --state-dir or "
                 "VEIL_STATE_DIR",
                 state_dir, strerror(e), state_dir);
    else
        snprintf(err, errlen, "cannot reach the control plane at %s: %s", sa.sun_path, strerror(e));
    return -1;
}

/* send(MSG_NOSIGNAL): a control plane that hangs up must not kill us. */
static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static char *read_all(int fd, size_t max, size_t *len)
{
    size_t cap = 4096, off = 0;
    char *buf = veil_malloc(cap);
    while (buf != NULL) {
        if (off + 1 >= cap) {
            char *nb = cap >= max ? NULL : veil_realloc(buf, cap * 2);
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + off, cap - off - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (r == 0) {
            buf[off] = '\0';
            *len = off;
            return buf;
        }
        off += (size_t)r;
    }
    veil_free(buf);
    return NULL;
}

int veil_cli_admin_call(const char *state_dir, json_t *req, json_t **resp, char *err, size_t errlen)
{
    int fd = connect_admin(state_dir, err, errlen);
    if (fd < 0)
        return -1;
    char *text = json_dumps(req, JSON_COMPACT);
    int rc = -1;
    size_t len = 0;
    char *answer = NULL;
    if (text != NULL && send_all(fd, text, strlen(text)) == 0 && send_all(fd, "\n", 1) == 0) {
        shutdown(fd, SHUT_WR);
        answer = read_all(fd, MAX_RESPONSE, &len);
    }
    free(text);
    close(fd);
    json_error_t jerr;
    if (answer == NULL || len == 0) {
        snprintf(err, errlen, "the control plane closed the connection without an answer");
    } else if ((*resp = json_loadb(answer, len, 0, &jerr)) == NULL) {
        snprintf(err, errlen, "the control plane's answer is not JSON: %s", jerr.text);
    } else {
        rc = 0;
    }
    veil_free(answer);
    return rc;
}

static int add_file(const char *path, json_t *files, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = veil_malloc(MAX_FILE + 1);
    size_t n = buf != NULL ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    int bad = buf == NULL || ferror(f) || n > MAX_FILE;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path,
                 buf == NULL    ? "out of memory"
                 : n > MAX_FILE ? "larger than 16 MiB"
                                : "read error");
        veil_free(buf);
        return -1;
    }
    json_t *item = json_pack("{s:s, s:s#}", "path", path, "content", buf, n);
    veil_free(buf);
    if (item == NULL) {
        snprintf(err, errlen, "%s: not valid UTF-8 text", path);
        return -1;
    }
    json_array_append_new(files, item);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_dir(const char *dir, json_t *files, char *err, size_t errlen)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, NULL);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = veil_calloc((size_t)n + 1, sizeof(char *));
    int k = 0, rc = names == NULL ? -1 : 0;
    for (int i = 0; i < n; i++) {
        if (names != NULL && veil_conf_is_file_name(list[i]->d_name))
            names[k++] = list[i]->d_name;
    }
    if (names != NULL)
        qsort(names, (size_t)k, sizeof(char *), cmp_names);
    for (int i = 0; rc == 0 && i < k; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        rc = add_file(path, files, err, errlen);
    }
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    veil_free(names);
    return rc;
}

int veil_cli_collect_files(const char *path, json_t *files, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return S_ISDIR(st.st_mode) ? add_dir(path, files, err, errlen)
                               : add_file(path, files, err, errlen);
}
