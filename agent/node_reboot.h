/*
 * node_reboot.h - restart the machine, letting the proxy drain first.
 *
 * Used after an upgrade is installed and when a trial boot is not healthy in time. The proxy
 * is asked to stop through its supervisor (s6-svc -d, which sends SIGTERM: the proxy stops
 * accepting, finishes requests in flight within its drain timeout, and exits); then the file
 * systems are synced and the kernel reboots. The stop is bounded: a proxy that does not go down
 * in time does not hold the reboot.
 */
#ifndef GATEHOUSE_NODE_REBOOT_H
#define GATEHOUSE_NODE_REBOOT_H

#define NODE_PROXY_SERVICE "/etc/s6/services/gatehouse-proxy"

/* Does not return on success. Returns -1 (logged) when the reboot is refused: not root, or
 * not a Gatehouse node (PID 1 is not s6-svscan). */
int node_reboot(const char *why);

#endif
