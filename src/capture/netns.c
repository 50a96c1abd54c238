#include "capture/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

static pthread_key_t home_key;
static pthread_once_t home_once = PTHREAD_ONCE_INIT;
static int home_key_err;

static void home_close(void *p)
{
    close((int)(intptr_t)p - 1);
}

static void home_key_init(void)
{
    home_key_err = pthread_key_create(&home_key, home_close);
}

/* The thread's home netns fd, opened on first use. Stored as fd + 1 so that
 * NULL (the key's initial value) means "not opened yet". */
static int home_fd(void)
{
    pthread_once(&home_once, home_key_init);
    if (home_key_err != 0)
        return -home_key_err;
    void *p = pthread_getspecific(home_key);
    if (p != NULL)
        return (int)(intptr_t)p - 1;
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = pthread_setspecific(home_key, (void *)(intptr_t)(fd + 1));
    if (rc != 0) {
        close(fd);
        return -rc;
    }
    return fd;
}

int veil_netns_open(const char *name_or_path)
{
    char path[256];
    if (name_or_path == NULL || name_or_path[0] == '\0')
        return -EINVAL;
    if (strchr(name_or_path, '/') == NULL) {
        int n = snprintf(path, sizeof(path), "/run/netns/%s", name_or_path);
        if (n < 0 || (size_t)n >= sizeof(path))
            return -ENAMETOOLONG;
        name_or_path = path;
    }
    int fd = open(name_or_path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int veil_netns_run(int netns_fd, int (*fn)(void *), void *arg)
{
    int home = home_fd();
    if (home < 0)
        return home;
    if (setns(netns_fd, CLONE_NEWNET) != 0)
        return -errno;
    int rc = fn(arg);
    int saved = errno;
    if (setns(home, CLONE_NEWNET) != 0) {
        VEIL_ERROR("netns", "cannot switch this thread back to its own netns: %s", strerror(errno));
        return -ENOTRECOVERABLE;
    }
    errno = saved;
    return rc;
}

struct socket_args {
    int domain, type, protocol;
};

static int make_socket(void *p)
{
    const struct socket_args *a = p;
    int fd = socket(a->domain, a->type | SOCK_NONBLOCK | SOCK_CLOEXEC, a->protocol);
    return fd < 0 ? -errno : fd;
}

int veil_netns_socket(int netns_fd, int domain, int type, int protocol)
{
    struct socket_args a = {domain, type, protocol};
    return veil_netns_run(netns_fd, make_socket, &a);
}
