/*
 * Small socket settings shared by the transports.
 */
#ifndef VEIL_CORE_SOCK_H
#define VEIL_CORE_SOCK_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/*
 * Turns Nagle's algorithm off on a TCP socket: a proxy forwards what it
 * has at once, or a small write waits for the peer's delayed ACK (40 ms).
 * A no-op (ignored failure) on sockets that are not TCP.
 */
static inline void veil_sock_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

#endif
