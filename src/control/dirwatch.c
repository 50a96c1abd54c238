#include "control/dirwatch.h"

#include <errno.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/container.h"
#include "core/loop.h"

struct veil_dirwatch {
    struct veil_loop *loop;
    struct veil_io io;
    struct veil_timer quiet;
    uint64_t debounce_ms;
    void (*changed)(void *ctx);
    void *ctx;
};

static void quiet_cb(struct veil_timer *t)
{
    struct veil_dirwatch *w = VEIL_CONTAINER_OF(t, struct veil_dirwatch, quiet);
    w->changed(w->ctx);
}

static void inotify_cb(struct veil_io *io, uint32_t events)
{
    struct veil_dirwatch *w = VEIL_CONTAINER_OF(io, struct veil_dirwatch, io);
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    (void)events;
    /* The events' content does not matter: any of them means "reload". */
    while (read(veil_io_fd(io), buf, sizeof(buf)) > 0)
        ;
    veil_timer_start(w->loop, &w->quiet, w->debounce_ms, 0, quiet_cb);
}

struct veil_dirwatch *veil_dirwatch_new(struct veil_loop *loop, const char *dir,
                                        uint64_t debounce_ms, void (*changed)(void *ctx), void *ctx)
{
    struct veil_dirwatch *w = veil_calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->loop = loop;
    w->debounce_ms = debounce_ms;
    w->changed = changed;
    w->ctx = ctx;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    int e = errno;
    if (fd >= 0 && inotify_add_watch(fd, dir,
                                     IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                         IN_MOVED_TO | IN_ONLYDIR) >= 0) {
        int rc = veil_io_start(loop, &w->io, fd, VEIL_IO_READ, inotify_cb);
        if (rc == 0)
            return w;
        e = -rc;
    } else {
        e = errno;
    }
    if (fd >= 0)
        close(fd);
    veil_free(w);
    errno = e;
    return NULL;
}

void veil_dirwatch_free(struct veil_dirwatch *w)
{
    if (w == NULL)
        return;
    int fd = veil_io_fd(&w->io);
    veil_io_stop(&w->io);
    veil_timer_stop(&w->quiet);
    close(fd);
    veil_free(w);
}
