/* HTTP/2 cleartext (prior knowledge) through the waypoint: not yet proxied
 * per request; wp__h2_start() declines and the tunnel is passed through. */
#include "waypoint/wp-int.h"

#include <errno.h>

int wp__h2_start(struct wp_conn *c)
{
    (void)c;
    return -ENOTSUP;
}
