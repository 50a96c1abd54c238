/*
 * Logging with levels, as text lines or JSON lines.
 *
 * Output goes to one file descriptor (stderr by default); each record is
 * formatted into a bounded stack buffer and written with a single write(2),
 * so records from several threads never interleave. A record longer than
 * VEIL_LOG_MAX is truncated (and marked with "..." in text form).
 *
 * The settings (level, format, fd) are process-wide and meant to be set once
 * at start-up, before threads start; they are read with relaxed atomics.
 */
#ifndef VEIL_CORE_LOG_H
#define VEIL_CORE_LOG_H

#include "core/log-t.h"

#include <stdarg.h>

#define VEIL_LOG_MAX 4096

void veil_log_set_level(enum veil_log_level level);
void veil_log_set_format(enum veil_log_format format);
void veil_log_set_fd(int fd);
enum veil_log_level veil_log_get_level(void);

/* Parses "debug", "info", "warn", "error", "off". Returns 0, or -EINVAL. */
int veil_log_parse_level(const char *s, enum veil_log_level *out);

/* `module` is a short static name ("loop", "conf", ...). */
void veil_log(enum veil_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void veil_logv(enum veil_log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define veil_log_enabled(level) ((level) >= veil_log_get_level())

#define VEIL_DEBUG(mod, ...)                                                                       \
    do {                                                                                           \
        if (veil_log_enabled(VEIL_LOG_DEBUG))                                                      \
            veil_log(VEIL_LOG_DEBUG, mod, __VA_ARGS__);                                            \
    } while (0)
#define VEIL_INFO(mod, ...)  veil_log(VEIL_LOG_INFO, mod, __VA_ARGS__)
#define VEIL_WARN(mod, ...)  veil_log(VEIL_LOG_WARN, mod, __VA_ARGS__)
#define VEIL_ERROR(mod, ...) veil_log(VEIL_LOG_ERROR, mod, __VA_ARGS__)

#endif
