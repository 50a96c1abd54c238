/* Shared inside src/capture only: the small rtnetlink client (rtnl.c). */
#ifndef VEIL_CAPTURE_CAPTURE_INT_H
#define VEIL_CAPTURE_CAPTURE_INT_H

#include <stdint.h>

/* Each runs in the calling thread's current netns; 0 or -errno. */
int capture__rtnl_link_up(const char *ifname);
/* add != 0: `ip rule add fwmark MARK lookup TABLE` (an identical rule
 * already there is success); add == 0: delete it (absent is success). */
int capture__rtnl_fwmark_rule(int family, int add, uint32_t mark, uint32_t table);
/* add != 0: `ip route replace local 0.0.0.0/0 dev lo table TABLE` (::/0
 * for AF_INET6); add == 0: delete it (absent is success). */
int capture__rtnl_local_default(int family, int add, uint32_t table);

#endif
