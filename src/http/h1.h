/*
 * HTTP/1.1 message parsing (RFC 9110, RFC 9112) for the waypoint: request
 * and response heads, body framing, and an incremental chunked decoder.
 *
 * Nothing here allocates or does I/O. The caller owns every buffer: it reads
 * bytes into its own bounded buffer and hands the parser what it holds; the
 * parser returns offsets into it. The whole protocol subset accepted and
 * every refusal, with its reason, is in docs/http1.md.
 *
 * Refusing is the point. A message the parser refuses could be read two ways
 * by two implementations (request smuggling, response splitting): Content-
 * Length with Transfer-Encoding, two Content-Lengths, obs-fold, bare CR or
 * LF, a NUL, a coding other than chunked, a bad chunk size... The caller
 * answers a refused request with 400 and closes the connection (a refused
 * response: 502 to the client, and the upstream connection closed); it never
 * forwards the message or reads another from that connection.
 *
 * Return conventions (docs/internals.md): a byte count >= 0 on success,
 * -EAGAIN when more bytes are needed, -EINVAL for a malformed or ambiguous
 * message, -E2BIG for one over a limit. The exact reason is an enum
 * veil_h1_error kept in the state object; veil_h1_strerror() names it.
 * Errors are sticky: a state that failed returns the same error until it is
 * initialised again.
 */
#ifndef VEIL_HTTP_H1_H
#define VEIL_HTTP_H1_H

#include "http/h1-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- limits and errors ---- */

/* Fills *l with the VEIL_H1_*_MAX defaults. */
void veil_h1_limits_default(struct veil_h1_limits *l);

/* A short static string naming `e` ("ok" for VEIL_H1_OK, "unknown error"
 * for values out of range). */
const char *veil_h1_strerror(enum veil_h1_error e);

/* ---- heads ---- */

/* Makes *p ready for the first head of a connection. `lim` is copied; NULL
 * means the defaults. */
void veil_h1_parser_init(struct veil_h1_parser *p, const struct veil_h1_limits *lim);

/*
 * Parses a request head from buf[0..len): the bytes the caller holds from
 * the first byte of the message on (more may follow: body, pipelined
 * requests). Call it again with the same bytes and more appended after
 * -EAGAIN; the buffer may move between calls but the bytes already passed
 * must not change. Bytes already checked are not checked again (only a
 * final CR is looked at again, when its LF arrives).
 *
 * Returns the head length n (0 < n <= len): *h is filled, its spans point
 * into buf[0..n), its headers are hdrs[0..h->nheaders), and *p is ready for
 * the next message, whose first byte is buf[n + body]. -EAGAIN: no error in
 * the bytes so far, the blank line has not arrived. -EINVAL / -E2BIG: the
 * message is refused (veil_h1_parser_error()). *h is only meaningful after a
 * success.
 *
 * At most min(head_fields_max, cap) field lines are accepted. Empty lines
 * before the request line are skipped (RFC 9112 2.2) and counted in n.
 */
ssize_t veil_h1_parse_request(struct veil_h1_parser *p, const char *buf, size_t len,
                              struct veil_h1_head *h, struct veil_h1_header *hdrs, size_t cap);

/*
 * The same for a response head. `req_method` is the method of the request
 * it answers (a response to HEAD has no body; a 2xx to CONNECT opens a
 * tunnel). A 1xx other than 101 sets VEIL_H1_F_INTERIM: parse the next head
 * from the same stream for the same request.
 */
ssize_t veil_h1_parse_response(struct veil_h1_parser *p, const char *buf, size_t len,
                               enum veil_h1_method req_method, struct veil_h1_head *h,
                               struct veil_h1_header *hdrs, size_t cap);

/* Why the last parse call failed (VEIL_H1_OK if it did not). */
enum veil_h1_error veil_h1_parser_error(const struct veil_h1_parser *p);

/* ---- spans and fields ---- */

static inline const char *veil_h1_span_ptr(const char *buf, struct veil_h1_span s)
{
    return buf + s.off;
}

/* True if the span holds exactly `s` (case-sensitive). */
bool veil_h1_span_eq(const char *buf, struct veil_h1_span sp, const char *s);

/* True if the span holds `s` ignoring ASCII case. */
bool veil_h1_span_ieq(const char *buf, struct veil_h1_span sp, const char *s);

/* veil_h1_span_ieq() for a string literal `lit` (nothing else compiles): a
 * span of another length is told apart without a call. `sp` is evaluated
 * twice. */
#define VEIL_H1_SPAN_IEQ_LIT(buf, sp, lit)                                                         \
    ((sp).len == sizeof("" lit) - 1 && veil_h1_span_ieq(buf, sp, lit))

/* The first field named `name` (any case) after `prev` (NULL: from the
 * first), or NULL. */
const struct veil_h1_header *veil_h1_header_find(const struct veil_h1_head *h, const char *buf,
                                                 const char *name,
                                                 const struct veil_h1_header *prev);

/* ---- chunked bodies ---- */

/* Makes *c ready for a chunked body; `lim` as veil_h1_parser_init(). */
void veil_h1_chunked_init(struct veil_h1_chunked *c, const struct veil_h1_limits *lim);

/*
 * Decodes in[0..len), any split of the body: returns the bytes consumed
 * (0 <= n <= len) and sets *data to the chunk data among them (len 0 if
 * none). A call reports at most one data span, and it always ends at n:
 * pass it on, then call again with in + n. A call with len > 0 consumes at
 * least one byte unless the body is done. Chunk extensions are checked and
 * dropped; trailer fields are checked with the rules of header fields, then
 * consumed (RFC 9112 7.1.2 lets a recipient discard them). Bytes after the
 * body's final CRLF are not consumed: they belong to the next message.
 *
 * -EINVAL / -E2BIG: the body is refused (veil_h1_chunked_error()). Data
 * reported by earlier calls was well-framed so far; the message as a whole
 * is not, so the caller must abort it (close both connections).
 */
ssize_t veil_h1_chunked_decode(struct veil_h1_chunked *c, const char *in, size_t len,
                               struct veil_h1_span *data);

/* True once the last chunk and the trailer section have been read. */
bool veil_h1_chunked_done(const struct veil_h1_chunked *c);

/* Data bytes reported so far. */
uint64_t veil_h1_chunked_total(const struct veil_h1_chunked *c);

enum veil_h1_error veil_h1_chunked_error(const struct veil_h1_chunked *c);

/* ---- bodies of any framing ---- */

/* Makes *b ready to read the body that `h` announces (a parsed head). `lim`
 * as veil_h1_parser_init(). */
void veil_h1_body_init(struct veil_h1_body *b, const struct veil_h1_head *h,
                       const struct veil_h1_limits *lim);

/*
 * Reads body bytes from in[0..len) as veil_h1_chunked_decode() does, for any
 * framing: returns the bytes consumed, *data the body data among them
 * (ending at the return value). NONE consumes nothing; LENGTH consumes up to
 * the length; CLOSE consumes everything. Errors as veil_h1_chunked_decode().
 */
ssize_t veil_h1_body_read(struct veil_h1_body *b, const char *in, size_t len,
                          struct veil_h1_span *data);

/* True when the body is complete (never, before veil_h1_body_eof(), for a
 * body read until close). */
bool veil_h1_body_done(const struct veil_h1_body *b);

/*
 * The peer closed its side. Returns 0 if the message is complete (a body
 * read until close ends here), or -EINVAL with VEIL_H1_E_TRUNCATED if the
 * body had more to come.
 */
int veil_h1_body_eof(struct veil_h1_body *b);

/* Data bytes reported so far. */
uint64_t veil_h1_body_total(const struct veil_h1_body *b);

enum veil_h1_error veil_h1_body_error(const struct veil_h1_body *b);

#endif
