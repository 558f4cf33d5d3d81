/* The routing mesh on the node's own devices (tcx):
 * - shoal_underlay_ingress, on the underlay device: client traffic to node_addr:published-port is
 *   DNATed to a backend task, keeping the client's source address, and sent into the ingress
 *   overlay bridge; ICMP errors about flows we route are passed on to their backend.
 * - shoal_bridge_ingress, on the ingress-overlay bridge: replies of routed flows (steered back to
 *   this node by the backend node, see task.bpf.c) get node_addr:published-port back as their
 *   source and leave through the underlay device.
 * Redirects (bpf_redirect_neigh) skip the IP stack, so no martian-source drop on the reverse path
 * and no TTL decrement: a routed flow crosses the mesh as one hop, like a NAT box would on L2.
 * Everything the mesh does not own returns TC_ACT_UNSPEC, so later tcx programs and the stack see
 * it unchanged. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "conntrack.h"
#include "nat.h"

char LICENSE[] SEC("license") = "GPL";

DEFINE_PARSER(parse_skb, struct __sk_buff, bpf_skb_load_bytes)
DEFINE_PARSER(parse_xdp, struct xdp_md, bpf_xdp_load_bytes)

/* Packets and bytes of routed flows, both directions, per service and per backend (per-CPU
 * counters: no atomics on the hot path). */
static __always_inline void count_packet(__u32 svc_id, __u32 backend_id, __u32 len)
{
	struct counters *c = bpf_map_lookup_elem(&svc_counters, &svc_id);
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
	c = bpf_map_lookup_elem(&backend_counters, &backend_id);
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

static __always_inline __u32 flow_hash(const struct ct_key *key, __u32 svc_flags)
{
	/* Never the destination: it is the entry node's own address, and every entry node must
	 * pick the same backend for the same client. */
	if (svc_flags & SHOAL_SVC_F_CLIENT_AFFINITY)
		return hash_words(key->saddr, 0, key->proto);
	return hash_words(key->saddr, key->sport, key->proto);
}

static __always_inline int rewrite_failed(void)
{
	count_stat(SHOAL_STAT_DROP_REWRITE);
	return TC_ACT_SHOT;
}

/* An ICMP error for node_addr quoting a reply we sent: hand it to that flow's backend. */
static __always_inline int underlay_icmp_error(struct __sk_buff *skb, const struct pkt *p)
{
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &p->key);
	if (!ct || ct->dir != SHOAL_CT_ORIGINAL) {
		count_stat(SHOAL_STAT_ICMP_UNTRACKED);
		return TC_ACT_UNSPEC;
	}
	__u32 addr = ct->nat_addr;
	__u16 port = ct->nat_port;
	if (icmp_translate(skb, p, 1, addr, port))
		return rewrite_failed();
	count_stat(SHOAL_STAT_ICMP_TRANSLATED);
	return bpf_redirect_neigh(ingress_bridge_ifindex, NULL, 0, 0);
}

SEC("classifier")
int shoal_underlay_ingress(struct __sk_buff *skb)
{
	struct pkt p = {};
	int parsed = parse_skb(skb, &p);
	if (parsed == PARSE_NOT_IPV4 || p.daddr != node_addr)
		return TC_ACT_UNSPEC;
	if (parsed == PARSE_FRAGMENT) {
		/* Only the first fragment carries ports and tc cannot reassemble: the mesh routes
		 * whole datagrams only. The stack reassembles, finds no socket and answers ICMP
		 * port unreachable, which tells the client more than a silent drop would. */
		count_stat(SHOAL_STAT_FRAGMENT);
		return TC_ACT_UNSPEC;
	}
	if (parsed == PARSE_TRUNCATED) {
		count_stat(SHOAL_STAT_TRUNCATED);
		return TC_ACT_UNSPEC;
	}
	if (parsed != PARSE_OK)
		return TC_ACT_UNSPEC;
	if (p.ip_options)
		count_stat(SHOAL_STAT_IP_OPTIONS);
	if (p.icmp_error)
		return underlay_icmp_error(skb, &p);

	struct svc_key sk = { .addr = 0, .port = p.key.dport, .proto = p.key.proto, .scope = SHOAL_SCOPE_NODE };
	struct svc_value *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return TC_ACT_UNSPEC;
	__u32 svc_id = svc->id;
	__u32 svc_flags = svc->flags;
	__u32 generation = svc->generation;

	__u64 now = bpf_ktime_get_ns();
	__u32 nat_addr, backend_id;
	__u16 nat_port;
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &p.key);
	if (ct && ct->dir == SHOAL_CT_ORIGINAL && !(is_tcp_syn(&p) && ct_flow_over(ct, &p.key)) &&
	    !(p.key.proto == IPPROTO_UDP && !backend_exists(ct->backend_id))) {
		nat_addr = ct->nat_addr;
		nat_port = ct->nat_port;
		backend_id = ct->backend_id;
		int stale = now - ct->last_seen_ns > CT_REFRESH_NS;
		ct_touch(ct, &p, now);
		if (stale) {
			/* The reply entry may have been evicted alone (a one-way UDP flow never
			 * reads it): rewrite it once a second while the flow lives. */
			struct ct_key rk = {};
			reply_key(&rk, &p.key, nat_addr, nat_port);
			struct ct_value *reply = bpf_map_lookup_elem(&conntrack, &rk);
			if (!reply) {
				struct ct_value rv = { .last_seen_ns = now, .backend_id = backend_id,
						       .nat_addr = node_addr, .nat_port = p.key.dport,
						       .dir = SHOAL_CT_REPLY, .svc_id = svc_id };
				bpf_map_update_elem(&conntrack, &rk, &rv, BPF_ANY);
			}
		}
	} else {
		struct backend be;
		backend_id = lb_select(svc_id, generation, flow_hash(&p.key, svc_flags), &be);
		if (!backend_id) {
			/* A dropped SYN is retried by the client: a service between two backend sets
			 * (start-first update) loses no connection. */
			count_no_backend(svc_id);
			count_stat(SHOAL_STAT_DROP_NO_BACKEND);
			return TC_ACT_SHOT;
		}
		nat_addr = be.addr;
		nat_port = be.port;
		struct ct_value ov = { .last_seen_ns = now, .backend_id = backend_id, .nat_addr = nat_addr,
				       .nat_port = nat_port, .dir = SHOAL_CT_ORIGINAL, .tcp_seen = tcp_seen_bits(&p),
				       .svc_id = svc_id };
		struct ct_value rv = { .last_seen_ns = now, .backend_id = backend_id, .nat_addr = node_addr,
				       .nat_port = p.key.dport, .dir = SHOAL_CT_REPLY, .svc_id = svc_id };
		struct ct_key rk = {};
		reply_key(&rk, &p.key, nat_addr, nat_port);
		/* Reply entry first: once the original exists, replies must find theirs. */
		bpf_map_update_elem(&conntrack, &rk, &rv, BPF_ANY);
		bpf_map_update_elem(&conntrack, &p.key, &ov, BPF_ANY);
		count_new_flow(svc_id, backend_id);
		count_stat(SHOAL_STAT_NEW_FLOW);
	}
	count_packet(svc_id, backend_id, skb->len);
	if (nat_rewrite(skb, &p, 1, nat_addr, nat_port))
		return rewrite_failed();
	return bpf_redirect_neigh(ingress_bridge_ifindex, NULL, 0, 0);
}

SEC("classifier")
int shoal_bridge_ingress(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse_skb(skb, &p) != PARSE_OK)
		return TC_ACT_UNSPEC;
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &p.key);
	if (!ct || ct->dir != SHOAL_CT_REPLY)
		return TC_ACT_UNSPEC;
	__u32 addr = ct->nat_addr;
	__u16 port = ct->nat_port;
	if (p.icmp_error) {
		if (icmp_translate(skb, &p, 0, addr, port))
			return rewrite_failed();
		count_stat(SHOAL_STAT_ICMP_TRANSLATED);
	} else {
		ct_touch(ct, &p, bpf_ktime_get_ns());
		count_packet(ct->svc_id, ct->backend_id, skb->len);
		if (nat_rewrite(skb, &p, 0, addr, port))
			return rewrite_failed();
		count_stat(SHOAL_STAT_REPLY);
	}
	return bpf_redirect_neigh(underlay_ifindex, NULL, 0, 0);
}

/* Never attached: runs the same parser as shoal_underlay_ingress on frames BPF_PROG_TEST_RUN
 * refuses for tc (shorter than an IPv4 header), so tests can check truncated input. Verdicts:
 * ABORTED = truncated or malformed, DROP = fragment, TX = a published port on node_addr (would be
 * routed), PASS = anything else. */
SEC("xdp")
int shoal_parse_probe(struct xdp_md *ctx)
{
	struct pkt p = {};
	int parsed = parse_xdp(ctx, &p);
	if (parsed == PARSE_TRUNCATED)
		return XDP_ABORTED;
	if (parsed == PARSE_FRAGMENT)
		return XDP_DROP;
	if (parsed != PARSE_OK || p.daddr != node_addr || p.icmp_error)
		return XDP_PASS;
	struct svc_key sk = { .addr = 0, .port = p.key.dport, .proto = p.key.proto, .scope = SHOAL_SCOPE_NODE };
	return bpf_map_lookup_elem(&services, &sk) ? XDP_TX : XDP_PASS;
}
