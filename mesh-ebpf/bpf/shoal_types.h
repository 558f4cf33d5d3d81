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
#define SHOAL_MAX_REMAPS 65536
#define SHOAL_MAX_SOCK_REVNAT 65536

/* svc_key.scope: what the address of a service key means. */
#define SHOAL_SCOPE_VIP 0  /* addr is a service VIP reached east-west */
#define SHOAL_SCOPE_NODE 1 /* addr is 0: a published port on any local node address */

/* svc_value.flags */
#define SHOAL_SVC_F_CLIENT_AFFINITY 1 /* hash the client IP only (multi-connection protocols) */

/* backend.state */
#define SHOAL_BACKEND_ACTIVE 0
#define SHOAL_BACKEND_DRAINING 1 /* no new flows; established flows keep going */

/* ct_value.tcp_seen: TCP flags seen in that entry's direction. A flow is closed once either
 * direction saw RST or both saw FIN; a SYN on a closed flow starts a new one (new backend pick). */
#define SHOAL_CT_SEEN_SYN 1
#define SHOAL_CT_SEEN_FIN 2
#define SHOAL_CT_SEEN_RST 4

/* Maglev map of a service: keys 0 and 1 hold the sizes M of halves 0 and 1, slot i of half h is
 * key 2 + 2 * i + h. Interleaving the halves lets a program find a slot without knowing the
 * map's capacity. */
#define SHOAL_MAGLEV_SLOT(i, half) (2 + 2 * (i) + (half))

/* Indexes of the per-CPU mesh_stats counters: what the routing mesh did with packets that were
 * not simply "translated" (those are counted per service). */
#define SHOAL_STAT_FRAGMENT 0          /* IPv4 fragment to the node address: passed to the stack */
#define SHOAL_STAT_TRUNCATED 1         /* headers cut short: passed to the stack, which drops it */
#define SHOAL_STAT_IP_OPTIONS 2        /* IPv4 header with options: handled, only counted */
#define SHOAL_STAT_DROP_NO_BACKEND 3   /* published port without an active backend: dropped */
#define SHOAL_STAT_DROP_REWRITE 4      /* a store or checksum helper failed: dropped */
#define SHOAL_STAT_ICMP_TRANSLATED 5   /* ICMP error of a tracked flow, translated */
#define SHOAL_STAT_ICMP_UNTRACKED 6    /* ICMP error of no known flow (or inner options): passed */
#define SHOAL_STAT_RETURN_TAKEOVER 7   /* new flow took a 4-tuple's return path (UDP; TCP without a free port) */
#define SHOAL_STAT_DROP_RETURN_CONFLICT 8 /* packet of the flow that lost its return path: dropped */
#define SHOAL_STAT_NEW_FLOW 9          /* conntrack entries created */
#define SHOAL_STAT_REPLY 10            /* reply packets reverse-translated */
#define SHOAL_STAT_PORT_REMAP 11       /* new connection given another client port on its backend node */
#define SHOAL_STAT_MAX 16

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
	/* Bumped on every backend change; generation & 1 is the active half of the service's Maglev
	 * map (see maps.h), so a change rewrites the idle half and flips this one word. */
	__u32 generation;
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
	__u8 tcp_seen; /* SHOAL_CT_SEEN_* flags seen in this entry's direction */
	__u32 svc_id;
};
_Static_assert(sizeof(struct ct_value) == 24, "ct_value size");

/* Backend node: reply tuple -> ingress-bridge MAC of the entry node the flow came through. */
struct return_mac {
	__u64 last_seen_ns;
	__u8 mac[6];
	__u16 client_port; /* network order; non-zero: the task sees this flow on a remapped port, the client's is this */
};
_Static_assert(sizeof(struct return_mac) == 16, "return_mac size");

/* A connection that reached a task through entry node `mac` on a client ip:port another entry
 * node's live connection already uses: the client port the task sees instead (task.bpf.c). */
struct port_remap_key {
	struct ct_key flow; /* as the frame to the task carries it */
	__u8 mac[6];
	__u16 pad;
};
_Static_assert(sizeof(struct port_remap_key) == 24, "port_remap_key size");

struct port_remap {
	__u16 port; /* network order */
	__u16 pad;
};
_Static_assert(sizeof(struct port_remap) == 4, "port_remap size");

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
