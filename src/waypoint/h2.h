/*
 * HTTP/2 with prior knowledge through the waypoint (h2-int.h): what the
 * rest of the engine calls.
 */
#ifndef VEIL_WAYPOINT_H2_H
#define VEIL_WAYPOINT_H2_H

struct wp_conn;

/* int wp__h2_start(struct wp_conn *c) is in wp-int.h. */

/* Releases the HTTP/2 state of c (its streams, their telemetry, its
 * upstream tunnels and sessions), if any: c->h2 is NULL after it. Must run
 * in wp__conn_close() before c->down is closed. h2.c calls it itself before
 * it closes a connection, so calling it again is a no-op. */
void wp__h2_free(struct wp_conn *c);

#endif
