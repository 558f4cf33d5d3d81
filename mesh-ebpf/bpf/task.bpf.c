/* The backend node's half of the no-SNAT routing mesh, on the host side of each task's veth on
 * the ingress overlay (tcx). A task answers a routed client through its own node, but the reply
 * must go back through the entry node that translated the request. The request arrived over the
 * overlay with the entry node's ingress-bridge MAC as its source, so:
 * - shoal_task_egress (frames going to the task) remembers reply tuple -> that source MAC;
 * - shoal_task_ingress (frames from the task) sends a reply whose tuple it remembers to that
 *   MAC, so the bridge and VXLAN carry it to the entry node without touching this node's stack.
 * The rule is generic ("answer to the MAC the request came from") and also holds for traffic
 * that is not routed: it then names the MAC the task would have used anyway.
 *
 * The limit of no-SNAT: one client ip:port reaching one task through two entry nodes is one
 * 4-tuple for the task. It happens whenever a client spreads connections over several nodes
 * (a proxy with every node as upstream): Linux reuses a source port for another destination. A
 * new TCP connection (SYN) on a 4-tuple that another entry node holds therefore gets another
 * client port on this node only: the task sees the client's address with a port from
 * 1024-32767 (outside the usual ephemeral ranges), replies are translated back, and both
 * connections live. Only when no free port is found (bounded probing) does the newest take the
 * path over, as every UDP datagram does; later packets of the older TCP connection are then
 * dropped and counted, so it fails fast instead of being answered through the wrong node. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "conntrack.h"
#include "nat.h"

char LICENSE[] SEC("license") = "GPL";

DEFINE_PARSER(parse_skb, struct __sk_buff, bpf_skb_load_bytes)

struct mac {
	__u32 hi;
	__u16 lo;
};

/* Compared as integers: __builtin_memcmp on 6 bytes became an extern call with clang 14. */
static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	struct mac x, y;
	__builtin_memcpy(&x.hi, a, 4);
	__builtin_memcpy(&x.lo, a + 4, 2);
	__builtin_memcpy(&y.hi, b, 4);
	__builtin_memcpy(&y.lo, b + 4, 2);
	return x.hi == y.hi && x.lo == y.lo;
}

/* UDP only: a TCP reply leaves from its connected socket's address, which is the task's. */
static __always_inline void remember_reply_source(const struct pkt *p)
{
	if (p->key.proto != IPPROTO_UDP)
		return;
	struct ct_key sk = {
		.daddr = p->key.saddr,
		.sport = p->key.dport,
		.dport = p->key.sport,
		.proto = IPPROTO_UDP,
	};
	__u32 addr = p->key.daddr;
	bpf_map_update_elem(&reply_sources, &sk, &addr, BPF_ANY);
}

#define REMAP_PORT_BASE 1024
#define REMAP_PORT_SPAN 31744 /* 1024-32767 */
#define REMAP_TRIES 4

static __always_inline void remap_key(struct port_remap_key *k, const struct pkt *p, const __u8 *mac)
{
	k->flow = p->key;
	__builtin_memcpy(k->mac, mac, ETH_ALEN);
}

/* A client port for this connection whose reply tuple no flow of the task uses; 0 if none. */
static __always_inline __u16 free_client_port(const struct pkt *p, const __u8 *mac)
{
	__u32 mac_lo = 0;
	__builtin_memcpy(&mac_lo, mac + 2, 4);
	struct ct_key rk = {};
	reply_key(&rk, &p->key, p->key.daddr, p->key.dport);
	for (__u32 i = 0; i < REMAP_TRIES; i++) {
		__u32 h = hash_words(p->key.saddr ^ mac_lo, p->key.sport, i);
		rk.dport = bpf_htons(REMAP_PORT_BASE + h % REMAP_PORT_SPAN);
		if (!bpf_map_lookup_elem(&return_macs, &rk))
			return rk.dport;
	}
	return 0;
}

/* Gives a new connection another client port (see the top of this file): the port, or 0 when
 * none is free. */
static __always_inline __u16 remap_new_connection(const struct pkt *p, const __u8 *mac, __u64 now)
{
	__u16 port = free_client_port(p, mac);
	if (!port)
		return 0;
	struct ct_key rk = {};
	reply_key(&rk, &p->key, p->key.daddr, p->key.dport);
	rk.dport = port;
	struct return_mac rm = { .last_seen_ns = now, .client_port = p->key.sport };
	__builtin_memcpy(rm.mac, mac, ETH_ALEN);
	struct port_remap_key k = {};
	remap_key(&k, p, mac);
	struct port_remap v = { .port = port };
	/* Reply entry first: once the remap exists, replies must find theirs. */
	if (bpf_map_update_elem(&return_macs, &rk, &rm, BPF_ANY) ||
	    bpf_map_update_elem(&port_remaps, &k, &v, BPF_ANY))
		return 0;
	count_stat(SHOAL_STAT_PORT_REMAP);
	return port;
}

/* Rewrites the client port (the source port of a frame to the task, the destination port of
 * one from it); a failed helper leaves the frame half-written, so it is dropped and counted. */
static __always_inline int client_port_rewrite(struct __sk_buff *skb, const struct pkt *p, int from_task,
					       __u16 port)
{
	if (port_rewrite(skb, p, from_task, port)) {
		count_stat(SHOAL_STAT_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int shoal_task_egress(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse_skb(skb, &p) != PARSE_OK || p.icmp_error)
		return TC_ACT_UNSPEC;
	__u8 src_mac[6];
	if (bpf_skb_load_bytes(skb, ETH_ALEN, src_mac, ETH_ALEN))
		return TC_ACT_UNSPEC;
	__u64 now = bpf_ktime_get_ns();
	struct ct_key rk = {};
	reply_key(&rk, &p.key, p.key.daddr, p.key.dport);
	struct return_mac *known = bpf_map_lookup_elem(&return_macs, &rk);
	/* The common case in one lookup: this entry node's flow. (Held by a remapped connection,
	 * client_port set, the tuple is not this flow's even with the same MAC.) */
	if (known && mac_eq(known->mac, src_mac) && !known->client_port) {
		if (now - known->last_seen_ns > CT_REFRESH_NS)
			known->last_seen_ns = now;
		return TC_ACT_UNSPEC;
	}
	if (p.key.proto == IPPROTO_TCP) {
		/* Another entry node's connection holds (or held) the tuple: this connection may
		 * already have a port of its own, or gets one if it is starting. */
		struct port_remap_key k = {};
		remap_key(&k, &p, src_mac);
		struct port_remap *remap = bpf_map_lookup_elem(&port_remaps, &k);
		__u16 port = remap ? remap->port : 0;
		if (!port && known) {
			if (!is_tcp_syn(&p)) {
				count_stat(SHOAL_STAT_DROP_RETURN_CONFLICT);
				return TC_ACT_SHOT;
			}
			port = remap_new_connection(&p, src_mac, now);
		}
		if (port)
			return client_port_rewrite(skb, &p, 0, port);
	}
	if (known)
		count_stat(SHOAL_STAT_RETURN_TAKEOVER);
	struct return_mac rm = { .last_seen_ns = now };
	__builtin_memcpy(rm.mac, src_mac, ETH_ALEN);
	bpf_map_update_elem(&return_macs, &rk, &rm, BPF_ANY);
	remember_reply_source(&p);
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int shoal_task_ingress(struct __sk_buff *skb)
{
	struct pkt p = {};
	/* ICMP errors from the task parse to the reply tuple too, and follow the same path. */
	if (parse_skb(skb, &p) != PARSE_OK)
		return TC_ACT_UNSPEC;
	struct return_mac *known = bpf_map_lookup_elem(&return_macs, &p.key);
	if (!known)
		return TC_ACT_UNSPEC;
	__u8 mac[6];
	__builtin_memcpy(mac, known->mac, ETH_ALEN);
	__u16 client_port = known->client_port;
	__u8 dst_mac[6];
	if (bpf_skb_load_bytes(skb, 0, dst_mac, ETH_ALEN))
		return TC_ACT_UNSPEC;
	if (!mac_eq(mac, dst_mac) && bpf_skb_store_bytes(skb, 0, mac, ETH_ALEN, 0)) {
		count_stat(SHOAL_STAT_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	/* An ICMP error about a remapped connection keeps the port the task saw: it is steered to
	 * the right entry node, whose translation finds no flow for it and passes it on. */
	if (client_port && !p.icmp_error)
		return client_port_rewrite(skb, &p, 1, client_port);
	return TC_ACT_UNSPEC;
}
