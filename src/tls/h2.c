#include "tls/h2.h"

#include <errno.h>
#include <stdbool.h>

#include "tls/tls.h"

int veil_tls_h2_flush(struct veil_tls_conn *c, nghttp2_session *ng)
{
    for (;;) {
        bool drained = false; /* nghttp2 had nothing more to give */
        while (veil_tls_out_len(c) < VEIL_TLS_H2_OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(ng, &data);
            if (n < 0)
                return -EBADMSG;
            if (n == 0) {
                drained = true;
                break;
            }
            int rc = veil_tls_send(c, data, (size_t)n);
            if (rc != 0)
                return rc;
        }
        int rc = veil_tls_flush(c);
        if (rc != 0 || veil_tls_out_len(c) > 0)
            return rc; /* failed, or the socket is full: the io fires */
        /* Everything went out. Stopping because the queue was full (even
         * when this call pulled nothing: it may have started full) would
         * leave nghttp2's frames with nothing to wake them. */
        if (drained || !nghttp2_session_want_write(ng)) {
            veil_tls_trim(c); /* idle for now: hold no buffer */
            return 0;
        }
    }
}
