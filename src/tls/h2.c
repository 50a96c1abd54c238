#include "tls/h2.h"

#include <errno.h>

#include "tls/tls.h"

int veil_tls_h2_flush(struct veil_tls_conn *c, nghttp2_session *ng)
{
    for (;;) {
        size_t pulled = 0;
        while (veil_tls_out_len(c) < VEIL_TLS_H2_OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(ng, &data);
            if (n < 0)
                return -EBADMSG;
            if (n == 0)
                break;
            int rc = veil_tls_send(c, data, (size_t)n);
            if (rc != 0)
                return rc;
            pulled += (size_t)n;
        }
        int rc = veil_tls_flush(c);
        if (rc != 0 || pulled == 0 || veil_tls_out_len(c) > 0 || !nghttp2_session_want_write(ng))
            return rc;
    }
}
