/*
 * Watches a directory with inotify and calls `changed` once things have been
 * quiet for `debounce_ms` after a file in it was written, created, moved or
 * removed, so an editor's save (write temp, rename) gives one reload, not
 * three. The callback runs on the loop thread and reads the directory itself.
 */
#ifndef VEIL_CONTROL_DIRWATCH_H
#define VEIL_CONTROL_DIRWATCH_H

#include <stdint.h>

struct veil_loop;
struct veil_dirwatch;

/* Returns NULL with errno set (e.g. ENOENT for a missing directory). */
struct veil_dirwatch *veil_dirwatch_new(struct veil_loop *loop, const char *dir,
                                        uint64_t debounce_ms, void (*changed)(void *ctx),
                                        void *ctx);
void veil_dirwatch_free(struct veil_dirwatch *w);

#endif
