/* TCP connections between hosts, addressed as HOST:PORT (a name, an IPv4
 * address, or an IPv6 address without brackets: the port is after the
 * last colon). Every connection has TCP_NODELAY: small control messages
 * must not wait for Nagle or delayed ACKs. File descriptors are
 * close-on-exec. */
#ifndef COLO_COMMON_SOCKET_H
#define COLO_COMMON_SOCKET_H

#include <stddef.h>

#include "error.h"

/* A connected socket to the first address of HOST that takes the
 * connection, or -1. Blocks for as long as the kernel's connect does. */
int socket_connect(const char *host_and_port, struct error *err);

/* The same within timeout_ms (> 0) in all: the addresses of HOST are
 * tried in turn, each with a fair share of what is left, and none waits
 * for the kernel's SYN retries (a host that drops packets would take over
 * two minutes). On failure the message names HOST:PORT and says for each
 * address tried whether it was refused, unreachable or timed out. */
int socket_connect_within(const char *host_and_port, int timeout_ms, struct error *err);

/* A listening socket (SO_REUSEADDR, backlog 8: the real peer waits there
 * while a stranger is refused) on HOST:PORT, or -1. */
int socket_listen(const char *host_and_port, struct error *err);

/* The next connection on a listening socket (retried after signals), or -1. */
int socket_accept(int listener, struct error *err);

/* The remote end of a connected socket as HOST:PORT (numeric), for
 * messages; "?:0" when it cannot be told. */
void socket_peer_address(int fd, char *text, size_t size);

#endif
