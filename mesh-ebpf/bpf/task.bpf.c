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
 * Inherent limit of no-SNAT: one client ip:port reaching one task through two entry nodes is one
 * 4-tuple for the task. The newest connection (SYN; any UDP datagram) takes the return path over
 * and is counted; later packets of the older connection are dropped and counted, so it dies
 * quickly instead of having its replies translated by the wrong node. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "conntrack.h"

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

SEC("classifier")
int shoal_task_egress(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse_skb(skb, &p) != PARSE_OK || p.icmp_error)
		return TC_ACT_UNSPEC;
	__u8 src_mac[6];
	if (bpf_skb_load_bytes(skb, ETH_ALEN, src_mac, ETH_ALEN))
		return TC_ACT_UNSPEC;
	struct ct_key rk = {};
	reply_key(&rk, &p.key, p.key.daddr, p.key.dport);
	__u64 now = bpf_ktime_get_ns();
	struct return_mac *known = bpf_map_lookup_elem(&return_macs, &rk);
	if (known) {
		if (mac_eq(known->mac, src_mac)) {
			if (now - known->last_seen_ns > CT_REFRESH_NS)
				known->last_seen_ns = now;
			return TC_ACT_UNSPEC;
		}
		if (p.key.proto == IPPROTO_TCP && !is_tcp_syn(&p)) {
			count_stat(SHOAL_STAT_DROP_RETURN_CONFLICT);
			return TC_ACT_SHOT;
		}
		count_stat(SHOAL_STAT_RETURN_TAKEOVER);
	}
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
	__u8 dst_mac[6];
	if (bpf_skb_load_bytes(skb, 0, dst_mac, ETH_ALEN))
		return TC_ACT_UNSPEC;
	if (!mac_eq(mac, dst_mac) && bpf_skb_store_bytes(skb, 0, mac, ETH_ALEN, 0)) {
		count_stat(SHOAL_STAT_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	return TC_ACT_UNSPEC;
}
