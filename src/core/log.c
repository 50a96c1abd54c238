#include "core/log.h"

#include "core/file.h"
#include "core/jsonw.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = VEIL_LOG_INFO;
static _Atomic int log_format = VEIL_LOG_TEXT;
static _Atomic int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const level_tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "OFF  "};

void veil_log_set_level(enum veil_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

void veil_log_set_format(enum veil_log_format format)
{
    atomic_store_explicit(&log_format, (int)format, memory_order_relaxed);
}

void veil_log_set_fd(int fd)
{
    atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
}

enum veil_log_level veil_log_get_level(void)
{
    return (enum veil_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int veil_log_parse_level(const char *s, enum veil_log_level *out)
{
    for (int i = VEIL_LOG_DEBUG; i <= VEIL_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum veil_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = VEIL_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

static void format_time(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

void veil_logv(enum veil_log_level level, const char *module, const char *fmt, va_list ap)
{
    if (level < veil_log_get_level() || level >= VEIL_LOG_OFF)
        return;
    char msg[VEIL_LOG_MAX], ts[40], out[VEIL_LOG_MAX + 256];
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (m >= (int)sizeof(msg))
        memcpy(msg + sizeof(msg) - 4, "...", 4);
    format_time(ts, sizeof(ts));

    /* Leave room for the closing characters so a record is always whole. */
    struct veil_jw l;
    veil_jw_init(&l, out, sizeof(out) - 3);
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == VEIL_LOG_JSON) {
        VEIL_JW_LIT(&l, "{\"ts\":\"");
        veil_jw_raw(&l, ts, strlen(ts));
        VEIL_JW_LIT(&l, "\",\"level\":\"");
        veil_jw_raw(&l, level_names[level], strlen(level_names[level]));
        VEIL_JW_LIT(&l, "\",\"module\":\"");
        veil_jw_esc(&l, module, strlen(module));
        VEIL_JW_LIT(&l, "\",\"msg\":\"");
        veil_jw_esc(&l, msg, strlen(msg));
        l.cap += 2;
        l.over = false;
        VEIL_JW_LIT(&l, "\"}");
    } else {
        veil_jw_raw(&l, ts, strlen(ts));
        VEIL_JW_LIT(&l, " ");
        veil_jw_raw(&l, level_tags[level], strlen(level_tags[level]));
        VEIL_JW_LIT(&l, " ");
        veil_jw_raw(&l, module, strlen(module));
        VEIL_JW_LIT(&l, ": ");
        veil_jw_raw(&l, msg, strlen(msg));
    }
    l.cap = sizeof(out);
    l.over = false;
    VEIL_JW_LIT(&l, "\n");
    (void)veil_write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), out, l.pos);
}

void veil_log(enum veil_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    veil_logv(level, module, fmt, ap);
    va_end(ap);
}
