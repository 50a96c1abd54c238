#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

int veil_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int set_step(const char **step, const char *what, int rc)
{
    if (step != NULL)
        *step = what;
    return rc;
}

int veil_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                           const char **step)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%ld", path, (long)getpid(),
                         (long)gettid()) >= sizeof(tmp))
        return set_step(step, "path", -ENAMETOOLONG);
    (void)unlink(tmp); /* left by a crashed process that had our pid */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return set_step(step, "create", -errno);
    const char *what = "chmod";
    int rc = fchmod(fd, mode) == 0 ? 0 : -errno; /* exact mode, whatever the umask */
    if (rc == 0) {
        what = "write";
        rc = veil_write_all(fd, data, len);
    }
    if (rc == 0) {
        what = "fsync";
        rc = fsync(fd) == 0 ? 0 : -errno;
    }
    if (close(fd) != 0 && rc == 0) {
        what = "close";
        rc = -errno;
    }
    if (rc == 0) {
        what = "rename";
        rc = rename(tmp, path) == 0 ? 0 : -errno;
    }
    if (rc != 0) {
        (void)unlink(tmp);
        return set_step(step, what, rc);
    }
    rc = fsync_parent(path);
    return rc != 0 ? set_step(step, "fsync of its directory", rc) : 0;
}

int veil_file_read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    char *got = fgets(buf, (int)n, f);
    fclose(f);
    if (got == NULL)
        return -EIO;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

long veil_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -errno;
    }
    return (long)rl.rlim_cur;
}
