/*
 * Small files: whole writes, atomic replacement, first-line reads. Used for
 * state files, keys and certificates, and the control plane's small
 * records (ports, join token, trust domain).
 *
 * Returns 0 or -errno (docs/internals.md).
 */
#ifndef VEIL_CORE_FILE_H
#define VEIL_CORE_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all `len` bytes to `fd`, retrying on EINTR and short writes. */
int veil_write_all(int fd, const void *data, size_t len);

/*
 * Replaces `path` atomically with `len` bytes of `data` and exactly `mode`:
 * a new temporary file beside it (O_EXCL, created with `mode`, so a key is
 * never readable by others, not even briefly), written, fsynced, renamed
 * over `path`; then the directory is fsynced. On failure `path` is
 * untouched, the temporary file is gone, and *step (if not NULL) names
 * what failed ("create", "write", "rename", ...) for the caller's message.
 */
int veil_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                           const char **step);

/* Reads the first line of `path` into buf (without its newline). -ENOENT
 * for a missing file, -EIO for an empty one. */
int veil_file_read_line(const char *path, char *buf, size_t n);

/* Raises the soft limit on open files to the hard limit, so that a process
 * serving thousands of connections is not stopped at the usual 1,024.
 * Returns the new soft limit, or -errno. */
long veil_raise_fd_limit(void);

#endif
