/* Types of the logging module; see log.h for the contract. */
#ifndef VEIL_CORE_LOG_T_H
#define VEIL_CORE_LOG_T_H

enum veil_log_level {
    VEIL_LOG_DEBUG = 0,
    VEIL_LOG_INFO = 1,
    VEIL_LOG_WARN = 2,
    VEIL_LOG_ERROR = 3,
    VEIL_LOG_OFF = 4,
};

enum veil_log_format {
    VEIL_LOG_TEXT = 0, /* 2026-11-23T07:43:00.123Z INFO  loop: message */
    VEIL_LOG_JSON = 1, /* {"ts":"...","level":"info","module":"loop","msg":"..."} */
};

#endif
