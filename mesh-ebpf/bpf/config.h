/* Node settings, set by the loader at load time (aya `override_global`). They are read-only
 * globals rather than #ifdefs so one object serves every node and the verifier prunes branches
 * that a given node's values make dead. */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <linux/types.h>

/* Seed of the flow hash. Identical on every node so any entry node picks the same backend. */
const volatile __u32 hash_seed = 0;
/* This node's underlay IPv4 address (network order): published ports answer on it. */
const volatile __u32 node_addr = 0;
/* ifindex of the underlay device and of the ingress-overlay bridge (redirect targets). */
const volatile __u32 underlay_ifindex = 0;
const volatile __u32 ingress_bridge_ifindex = 0;
/* Cookie of the node's own network namespace (0: none): the host socket programs act only on
 * sockets of that namespace, wherever in the cgroup tree they are attached. */
const volatile __u64 host_netns_cookie = 0;

#endif
