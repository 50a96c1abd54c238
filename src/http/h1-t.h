/* Types of the HTTP/1.1 message parser; see h1.h for the contract. */
#ifndef VEIL_HTTP_H1_T_H
#define VEIL_HTTP_H1_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults of struct veil_h1_limits. */
#define VEIL_H1_HEAD_BYTES_MAX     (64 * 1024) /* start line through the blank line */
#define VEIL_H1_HEAD_FIELDS_MAX    100         /* header field lines per head */
#define VEIL_H1_CHUNK_LINE_MAX     1024        /* chunk-size line, extensions and CRLF */
#define VEIL_H1_TRAILER_BYTES_MAX  (16 * 1024) /* trailer section, final CRLF included */
#define VEIL_H1_TRAILER_FIELDS_MAX 32          /* trailer field lines */

/* Hex digits of a chunk size, leading zeros included. */
#define VEIL_H1_CHUNK_DIGITS_MAX 16
/* Largest Content-Length and chunk size accepted (fits an off_t). */
#define VEIL_H1_LENGTH_MAX ((uint64_t)INT64_MAX)

/*
 * Bounds on what one message may make the parser look at. A field left 0
 * takes the default above. head_bytes_max is at most UINT32_MAX (larger
 * values are clamped).
 */
struct veil_h1_limits {
    size_t head_bytes_max;
    size_t head_fields_max;
    size_t chunk_line_max;
    size_t trailer_bytes_max;
    size_t trailer_fields_max;
};

/*
 * Why a message was refused. Each has a short static reason,
 * veil_h1_strerror(). The ones marked E2BIG are limits (the parse call
 * returns -E2BIG); the others are malformed or ambiguous messages (-EINVAL).
 */
enum veil_h1_error {
    VEIL_H1_OK = 0,
    VEIL_H1_E_NUL,                 /* NUL byte in a head, chunk line or trailer */
    VEIL_H1_E_BARE_CR,             /* CR not followed by LF */
    VEIL_H1_E_BARE_LF,             /* LF not preceded by CR */
    VEIL_H1_E_HEAD_TOO_LARGE,      /* E2BIG: no blank line within head_bytes_max */
    VEIL_H1_E_TOO_MANY_FIELDS,     /* E2BIG: more than head_fields_max field lines */
    VEIL_H1_E_METHOD,              /* method empty or not a token */
    VEIL_H1_E_TARGET,              /* request target missing, or not a form allowed here */
    VEIL_H1_E_VERSION,             /* version missing, or not HTTP/1.0 or HTTP/1.1 */
    VEIL_H1_E_REQUEST_LINE,        /* request line: extra or missing SP, ... */
    VEIL_H1_E_STATUS_LINE,         /* status line: bad shape or reason phrase */
    VEIL_H1_E_STATUS,              /* status code not 3 digits in 100..599 */
    VEIL_H1_E_OBS_FOLD,            /* field line starting with SP or HTAB */
    VEIL_H1_E_FIELD_NAME,          /* field name empty or not a token */
    VEIL_H1_E_FIELD_NAME_SPACE,    /* whitespace between field name and colon */
    VEIL_H1_E_FIELD_NO_COLON,      /* field line without a colon */
    VEIL_H1_E_FIELD_VALUE,         /* control character in a field value */
    VEIL_H1_E_HOST_MISSING,        /* HTTP/1.1 request without Host */
    VEIL_H1_E_HOST_DUP,            /* more than one Host field */
    VEIL_H1_E_HOST_INVALID,        /* Host value is not host[:port] */
    VEIL_H1_E_CL_TE,               /* Content-Length together with Transfer-Encoding */
    VEIL_H1_E_CL_DUP,              /* second Content-Length, or a comma list */
    VEIL_H1_E_CL_INVALID,          /* Content-Length not 1*DIGIT */
    VEIL_H1_E_CL_TOO_LARGE,        /* Content-Length over VEIL_H1_LENGTH_MAX */
    VEIL_H1_E_TE_INVALID,          /* empty or non-token coding, chunked twice */
    VEIL_H1_E_TE_NOT_CHUNKED,      /* final transfer coding is not chunked */
    VEIL_H1_E_TE_UNKNOWN,          /* request with a coding other than chunked */
    VEIL_H1_E_TE_HTTP10,           /* Transfer-Encoding in an HTTP/1.0 message */
    VEIL_H1_E_CHUNK_SIZE,          /* chunk size missing or not hex */
    VEIL_H1_E_CHUNK_TOO_LARGE,     /* chunk size over the digit bound or LENGTH_MAX */
    VEIL_H1_E_CHUNK_EXT,           /* control character in a chunk extension */
    VEIL_H1_E_CHUNK_LINE_TOO_LONG, /* E2BIG: chunk-size line over chunk_line_max */
    VEIL_H1_E_CHUNK_CRLF,          /* chunk data not followed by CRLF */
    VEIL_H1_E_TRAILERS_TOO_LARGE,  /* E2BIG: trailer bytes or fields over the limits */
    VEIL_H1_E_TRAILER_FRAMING,     /* Content-Length or Transfer-Encoding as a trailer */
    VEIL_H1_E_TRUNCATED,           /* end of stream inside a delimited body */
    VEIL_H1_E_COUNT
};

/* Methods the parser tells apart (the others are VEIL_H1_M_OTHER; the
 * method span always holds the exact bytes). Case-sensitive, RFC 9110 9.1. */
enum veil_h1_method {
    VEIL_H1_M_OTHER = 0,
    VEIL_H1_M_GET,
    VEIL_H1_M_HEAD,
    VEIL_H1_M_POST,
    VEIL_H1_M_PUT,
    VEIL_H1_M_DELETE,
    VEIL_H1_M_CONNECT,
    VEIL_H1_M_OPTIONS,
    VEIL_H1_M_TRACE,
    VEIL_H1_M_PATCH,
};

/* How the message body is delimited (RFC 9112 6.3). */
enum veil_h1_framing {
    VEIL_H1_BODY_NONE = 0, /* no body: the next message (or a tunnel) follows the head */
    VEIL_H1_BODY_LENGTH,   /* content_length bytes */
    VEIL_H1_BODY_CHUNKED,  /* chunked transfer coding */
    VEIL_H1_BODY_CLOSE,    /* response read until the connection closes */
};

/* struct veil_h1_head.flags */
enum {
    /* The connection may carry another message after this one. */
    VEIL_H1_F_KEEP_ALIVE = 1u << 0,
    /* Connection field tokens as sent. */
    VEIL_H1_F_CONN_CLOSE = 1u << 1,
    VEIL_H1_F_CONN_KEEP_ALIVE = 1u << 2,
    VEIL_H1_F_CONN_UPGRADE = 1u << 3,
    /* Request: HTTP/1.1 with an Upgrade field and "upgrade" in Connection
     * (the `upgrade` span holds the protocols). Response: status 101. */
    VEIL_H1_F_UPGRADE = 1u << 4,
    /* Request: method CONNECT (the target is authority-form). */
    VEIL_H1_F_CONNECT = 1u << 5,
    /* Response: the connection stops being HTTP/1 after this head (101, or
     * 2xx to CONNECT): pass the bytes through both ways. */
    VEIL_H1_F_TUNNEL = 1u << 6,
    /* Response: 1xx other than 101; the final response head follows. */
    VEIL_H1_F_INTERIM = 1u << 7,
    /* Request: a Host field was present (the `host` span). */
    VEIL_H1_F_HOST = 1u << 8,
};

/* Bytes [off, off + len) of the buffer given to the parse call that
 * completed the head. Offsets, not pointers: they stay meaningful when the
 * caller's buffer moves. */
struct veil_h1_span {
    uint32_t off;
    uint32_t len;
};

/* One field line. The value has no leading or trailing whitespace. */
struct veil_h1_header {
    struct veil_h1_span name;
    struct veil_h1_span value;
};

/* A parsed request or response head. */
struct veil_h1_head {
    uint32_t head_len;     /* bytes of the head, blank line (and skipped CRLFs) included */
    uint8_t version_minor; /* 0 or 1 */
    unsigned flags;        /* VEIL_H1_F_* */

    /* request */
    enum veil_h1_method method;
    struct veil_h1_span method_span;
    struct veil_h1_span target;
    struct veil_h1_span host; /* valid with VEIL_H1_F_HOST */

    /* response */
    uint16_t status;
    struct veil_h1_span reason;     /* may be empty */
    enum veil_h1_method req_method; /* the request it answers, as passed in */

    /* both */
    struct veil_h1_header *headers; /* the caller's array */
    size_t nheaders;
    enum veil_h1_framing framing;
    uint64_t content_length;     /* with VEIL_H1_BODY_LENGTH */
    struct veil_h1_span upgrade; /* Upgrade field value, with VEIL_H1_F_UPGRADE */
};

/* State of one head being parsed. Members private (h1.h). */
struct veil_h1_parser {
    struct veil_h1_limits _lim;
    uint32_t _scanned; /* bytes checked so far */
    uint32_t _line;    /* start of the current line */
    uint32_t _start;   /* start of the start line (after skipped CRLFs) */
    uint32_t _fields;  /* field lines seen */
    bool _started;     /* the start line has ended */
    enum veil_h1_error _err;
};

/* Incremental chunked-body decoder. Members private (h1.h). */
struct veil_h1_chunked {
    size_t _line_max;
    size_t _trailer_bytes_max;
    size_t _trailer_fields_max;
    uint8_t _state;
    uint8_t _digits;    /* hex digits of the size read */
    uint8_t _match;     /* framing field names the trailer name may still be */
    uint32_t _name_len; /* bytes of the trailer name read */
    uint64_t _left;     /* chunk size being read, then data bytes left */
    size_t _line;       /* bytes of the current chunk-size line */
    size_t _trailer_bytes;
    size_t _trailer_fields;
    uint64_t _total; /* data bytes reported */
    enum veil_h1_error _err;
};

/* A body reader for any framing. Members private (h1.h). */
struct veil_h1_body {
    enum veil_h1_framing _framing;
    bool _done;
    uint64_t _left;  /* VEIL_H1_BODY_LENGTH: bytes left */
    uint64_t _total; /* data bytes reported */
    enum veil_h1_error _err;
    struct veil_h1_chunked _chunked;
};

#endif
