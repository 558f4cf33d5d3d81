/* Flow tracking of the routing mesh. Every routed flow has two LRU entries on its entry node: the
 * original tuple (client -> node:published) and the reply tuple (backend -> client). Entries never
 * expire on a timer: a healthy long-lived connection keeps its entries however long it idles, and
 * the LRU only evicts the least recently used flows when the table (SHOAL_MAX_CT entries) is full.
 * A flow that lost its entries is not lost either: Maglev over the same flow hash picks the same
 * backend again as long as the backend set did not change. */
#ifndef SHOAL_CONNTRACK_H
#define SHOAL_CONNTRACK_H

#include "lb.h"
#include "parse.h"

/* last_seen_ns is refreshed at most this often, so a busy flow does not write its entry on every
 * packet; it is what the agent's garbage collection of closed flows reads. */
#define CT_REFRESH_NS 1000000000ULL

static __always_inline __u8 tcp_seen_bits(const struct pkt *p)
{
	if (p->key.proto != IPPROTO_TCP || p->icmp_error)
		return 0;
	__u8 seen = 0;
	if (p->tcp_flags & TCP_FLAG_SYN)
		seen |= SHOAL_CT_SEEN_SYN;
	if (p->tcp_flags & TCP_FLAG_FIN)
		seen |= SHOAL_CT_SEEN_FIN;
	if (p->tcp_flags & TCP_FLAG_RST)
		seen |= SHOAL_CT_SEEN_RST;
	return seen;
}

static __always_inline int is_tcp_syn(const struct pkt *p)
{
	return p->key.proto == IPPROTO_TCP && !p->icmp_error &&
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* Records what this packet says about its entry: TCP flags and, once a second, the time. */
static __always_inline void ct_touch(struct ct_value *ct, const struct pkt *p, __u64 now)
{
	__u8 seen = tcp_seen_bits(p);
	if ((ct->tcp_seen | seen) != ct->tcp_seen)
		ct->tcp_seen |= seen;
	if (now - ct->last_seen_ns > CT_REFRESH_NS)
		ct->last_seen_ns = now;
}

static __always_inline void reply_key(struct ct_key *out, const struct ct_key *orig, __u32 backend_addr,
				      __u16 backend_port)
{
	out->saddr = backend_addr;
	out->daddr = orig->saddr;
	out->sport = backend_port;
	out->dport = orig->sport;
	out->proto = orig->proto;
}

/* A UDP flow has no SYN to start over with: when its backend is gone (the task ended), the
 * next datagram picks a live one, so a UDP flow moves as soon as the backend leaves the maps. */
static __always_inline int backend_exists(__u32 backend_id)
{
	return bpf_map_lookup_elem(&backends, &backend_id) != 0;
}

/* A SYN on a tracked flow starts a new connection (and a new backend pick) when the old one is
 * over: RST seen, FIN seen both ways, or its backend no longer exists. Otherwise it is a
 * retransmitted SYN and keeps its backend. */
static __always_inline int ct_flow_over(const struct ct_value *orig, const struct ct_key *key)
{
	if (orig->tcp_seen & SHOAL_CT_SEEN_RST)
		return 1;
	__u32 backend_id = orig->backend_id;
	if (!bpf_map_lookup_elem(&backends, &backend_id))
		return 1;
	struct ct_key rk = {};
	reply_key(&rk, key, orig->nat_addr, orig->nat_port);
	struct ct_value *reply = bpf_map_lookup_elem(&conntrack, &rk);
	if (!reply)
		return 0;
	__u8 reply_seen = reply->tcp_seen;
	if (reply_seen & SHOAL_CT_SEEN_RST)
		return 1;
	return (orig->tcp_seen & SHOAL_CT_SEEN_FIN) && (reply_seen & SHOAL_CT_SEEN_FIN);
}

#endif
