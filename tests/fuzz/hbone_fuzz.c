/*
 * libFuzzer target for the HBONE server's request handling: the input is
 * what a client sends after the TLS handshake (the HTTP/2 preface is put in
 * front), fed to an HBONE server session through nghttp2 and veil's
 * callbacks, without TLS. Valid CONNECTs are answered in turn 200 (the
 * tunnel is then read and written as an L4 end), 503 and not at all; the
 * output frames are drained; everything is freed. The first input byte also
 * goes to the authority parser.
 *
 *   make fuzz && ./build-fuzz/fuzz/hbone_fuzz -max_total_time=600 tests/fuzz/corpus/hbone
 */
#include "hbone/hbone-int.h"
#include "hbone/hbone.h"

#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"
#include "l4/pump.h"

#include <stdlib.h>
#include <string.h>

static int answers;

static void on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                       void *arg)
{
    (void)info;
    (void)arg;
    switch (answers++ % 3) {
    case 0:
        if (veil_hbone_h2s_respond(h2s, 200) == 0) {
            struct veil_l4_end *e = veil_hbone_h2s_end(h2s);
            char buf[256];
            e->ops->read(e, buf, sizeof(buf));
            e->ops->write(e, "pong", 4);
            e->ops->shutdown_write(e);
            e->ops->close(e, false);
        }
        break;
    case 1:
        veil_hbone_h2s_respond(h2s, 503);
        break;
    default:
        veil_hbone_h2s_respond(h2s, 400);
        break;
    }
}

static void stop(struct veil_timer *t)
{
    veil_loop_stop(veil_timer_loop(t));
}

/* One loop iteration: its timers, then what is deferred. */
static void spin(struct veil_loop *loop)
{
    static struct veil_timer t;
    if (veil_timer_start(loop, &t, 0, 0, stop) == 0)
        veil_loop_run(loop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct veil_loop *loop;
    if (loop == NULL) {
        veil_log_set_level(VEIL_LOG_ERROR);
        loop = veil_loop_new("fuzz");
    }
    struct sockaddr_storage ss;
    socklen_t len;
    veil_hbone_parse_authority((const char *)data, size < 80 ? size : 80, &ss, &len);

    /* A server whose TLS context is never used: no connection is accepted. */
    struct veil_hbone_server_opts so = {.tls = (struct veil_tls_ctx *)&so,
                                        .cbs.on_connect = on_connect};
    struct veil_hbone_server *srv = veil_hbone_server_new(loop, &so);
    if (srv == NULL)
        return 0;
    /* An h2c as veil_hbone_server_accept() would make it, minus TLS; left
     * in the handshake state so that nothing tries to write to a socket. */
    struct hbone_h2c *c = veil_calloc(1, sizeof(*c));
    if (c == NULL) {
        veil_hbone_server_free(srv);
        return 0;
    }
    c->loop = loop;
    c->is_server = true;
    c->srv = srv;
    static _Atomic uint64_t stats[HS_COUNT];
    c->stats = stats;
    static struct veil_hbone_limits lim;
    hbone__limits(&lim, NULL);
    c->lim = &lim;
    c->state = H2C_HANDSHAKE;
    strcpy(c->peer_id, "spiffe://cluster.local/ns/default/sa/fuzz");
    if (hbone__session_start(c) == 0) {
        /* Not READY: with no socket, the harness drives nghttp2 itself and
         * the h2c must not flush or close behind its back. */
        c->state = H2C_HANDSHAKE;
        static const char preface[] = NGHTTP2_CLIENT_MAGIC;
        if (nghttp2_session_mem_recv(c->ng, (const uint8_t *)preface, sizeof(preface) - 1) >= 0) {
            for (size_t off = 0; off < size;) {
                size_t n = size - off < 1000 ? size - off : 1000;
                if (nghttp2_session_mem_recv(c->ng, data + off, n) < 0)
                    break;
                off += n;
                /* Run the deferred work: on_connect, stream notifications. */
                spin(loop);
                const uint8_t *out;
                while (nghttp2_session_mem_send(c->ng, &out) > 0)
                    ;
            }
        }
        hbone__close(c, "fuzz over");
    } else {
        nghttp2_session_del(c->ng);
        veil_free(c);
    }
    veil_hbone_server_free(srv);
    spin(loop);
    return 0;
}
