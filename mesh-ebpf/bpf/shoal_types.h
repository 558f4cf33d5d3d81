/* Types shared between the eBPF programs and the Rust loader (src/types.rs mirrors them).
 * This header is the single source of truth: every struct is padded explicitly, uses fixed-width
 * integers only (no bool, no enums) and has its size asserted here and in Rust, so a drift on
 * either side fails the build instead of corrupting maps at run time.
 * Addresses and ports are stored in network byte order, as the kernel hands them to us. */
#ifndef SHOAL_TYPES_H
#define SHOAL_TYPES_H

#include <linux/types.h>

#define SHOAL_MAX_SERVICES 65536
#define SHOAL_MAX_BACKENDS 131072
#define SHOAL_MAX_CT 262144
#define SHOAL_MAX_SOCK_REVNAT 65536

/* svc_key.scope: what the address of a service key means. */
#define SHOAL_SCOPE_VIP 0  /* addr is a service VIP reached east-west */
#define SHOAL_SCOPE_NODE 1 /* addr is 0: a published port on any local node address */

/* svc_value.flags */
#define SHOAL_SVC_F_CLIENT_AFFINITY 1 /* hash the client IP only (multi-connection protocols) */

/* backend.state */
#define SHOAL_BACKEND_ACTIVE 0
#define SHOAL_BACKEND_DRAINING 1 /* no new flows; established flows keep going */

/* ct_value.dir */
#define SHOAL_CT_ORIGINAL 0 /* client -> published port: DNAT to the backend */
#define SHOAL_CT_REPLY 1    /* backend -> client: restore node address and published port */

struct svc_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 scope;
};
_Static_assert(sizeof(struct svc_key) == 8, "svc_key size");

struct svc_value {
	__u32 id;
	__u32 backend_count;
	__u32 flags;
	__u32 pad;
};
_Static_assert(sizeof(struct svc_value) == 16, "svc_value size");

struct backend {
	__u32 addr;
	__u16 port;
	__u8 state;
	__u8 pad;
	__u32 node_addr;   /* underlay address of the node running the task (VTEP) */
	__u8 node_mac[6];  /* MAC of that node's ingress bridge */
	__u16 pad2;
	__u32 svc_id;      /* owning service: lets a restarted agent rebuild its view */
};
_Static_assert(sizeof(struct backend) == 24, "backend size");

/* A directional 5-tuple as seen on the wire. */
struct ct_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct ct_key) == 16, "ct_key size");

struct ct_value {
	__u64 last_seen_ns;
	__u32 backend_id;
	__u32 nat_addr; /* new daddr (original dir) or new saddr (reply dir) */
	__u16 nat_port;
	__u8 dir;
	__u8 pad;
	__u32 svc_id;
};
_Static_assert(sizeof(struct ct_value) == 24, "ct_value size");

/* Backend node: reply tuple -> ingress-bridge MAC of the entry node the flow came through. */
struct return_mac {
	__u64 last_seen_ns;
	__u8 mac[6];
	__u16 pad;
};
_Static_assert(sizeof(struct return_mac) == 16, "return_mac size");

/* Socket-level LB: (socket, backend) -> the VIP the application asked for, for recvmsg. */
struct sock_revnat_key {
	__u64 cookie;
	__u32 addr;
	__u16 port;
	__u16 pad;
};
_Static_assert(sizeof(struct sock_revnat_key) == 16, "sock_revnat_key size");

struct sock_revnat_value {
	__u32 addr;
	__u16 port;
	__u16 pad;
};
_Static_assert(sizeof(struct sock_revnat_value) == 8, "sock_revnat_value size");

/* Per-CPU counters, one slot per service id and per backend id. */
struct counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 no_backend;
};
_Static_assert(sizeof(struct counters) == 32, "counters size");

#endif
