/* Address and port rewrites with incremental checksum updates. The csum helpers know how the
 * kernel holds the checksum (CHECKSUM_PARTIAL, COMPLETE or none), which is why they are used
 * instead of recomputing sums: rewrites stay correct with every offload setting. */
#ifndef SHOAL_NAT_H
#define SHOAL_NAT_H

#include "parse.h"

#define IP_CSUM_OFF 10
#define IP_SADDR_OFF 12
#define IP_DADDR_OFF 16

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->key.proto == IPPROTO_TCP ? 16 : 6);
}

/* Rewrites the source (dst == 0) or destination (dst == 1) address and port of a TCP/UDP packet.
 * Returns non-zero when a helper failed and the packet is left half-rewritten (drop it). */
static __always_inline int nat_rewrite(struct __sk_buff *skb, const struct pkt *p, int dst, __u32 addr, __u16 port)
{
	__u32 old_addr = dst ? p->daddr : p->saddr;
	__u16 old_port = dst ? p->key.dport : p->key.sport;
	__u32 csum_off = l4_csum_off(p);
	/* UDP may carry no checksum (0): MARK_MANGLED_0 leaves it so and never produces a 0. */
	__u64 udp = p->key.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum_off, old_addr, addr, BPF_F_PSEUDO_HDR | udp | 4))
		return -1;
	if (bpf_l4_csum_replace(skb, csum_off, old_port, port, udp | 2))
		return -1;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + IP_CSUM_OFF, old_addr, addr, 4))
		return -1;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + (dst ? IP_DADDR_OFF : IP_SADDR_OFF), &addr, 4, 0))
		return -1;
	return bpf_skb_store_bytes(skb, p->l4_off + (dst ? 2 : 0), &port, 2, 0);
}

/* Rewrites only the source (dst == 0) or destination (dst == 1) port of a TCP/UDP packet. */
static __always_inline int port_rewrite(struct __sk_buff *skb, const struct pkt *p, int dst, __u16 port)
{
	__u16 old_port = dst ? p->key.dport : p->key.sport;
	__u64 udp = p->key.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), old_port, port, udp | 2))
		return -1;
	return bpf_skb_store_bytes(skb, p->l4_off + (dst ? 2 : 0), &port, 2, 0);
}

/* Rewrites `size` (2 or 4) bytes at `off` inside the packet quoted by an ICMP error, keeping the
 * quoted IPv4 header's checksum (when the field is in it) and the ICMP checksum right. The quoted
 * TCP/UDP checksum is left alone: only the first 8 quoted L4 bytes travel and no stack checks it. */
static __always_inline int icmp_quoted_rewrite(struct __sk_buff *skb, const struct pkt *p, __u32 off, __u32 from,
					       __u32 to, __u32 size, int in_ip_header)
{
	__u32 icmp_csum = p->l4_off + 2;
	if (in_ip_header) {
		__u32 ip_csum_off = p->inner_l3_off + IP_CSUM_OFF;
		__u16 old_csum, new_csum;
		if (bpf_skb_load_bytes(skb, ip_csum_off, &old_csum, 2))
			return -1;
		if (bpf_l3_csum_replace(skb, ip_csum_off, from, to, size))
			return -1;
		if (bpf_skb_load_bytes(skb, ip_csum_off, &new_csum, 2))
			return -1;
		if (bpf_l4_csum_replace(skb, icmp_csum, old_csum, new_csum, 2))
			return -1;
	}
	if (bpf_l4_csum_replace(skb, icmp_csum, from, to, size))
		return -1;
	if (size == 4)
		return bpf_skb_store_bytes(skb, off, &to, 4, 0);
	__u16 to16 = to;
	return bpf_skb_store_bytes(skb, off, &to16, 2, 0);
}

/* Translates an ICMP error about a routed flow. `toward_backend`: the error came to the node about
 * a reply we sent (the quoted source is the node and the published port, the outer destination
 * the node) and goes on to the backend. Otherwise it comes from the backend side about a packet
 * the client sent (the quoted destination is the backend) and goes on to the client, from the
 * node's address. */
static __always_inline int icmp_translate(struct __sk_buff *skb, const struct pkt *p, int toward_backend,
					  __u32 addr, __u16 port)
{
	/* The outer address is in the outer IP header only: ICMP has no pseudo header. */
	__u32 outer_off = ETH_HLEN + (toward_backend ? IP_DADDR_OFF : IP_SADDR_OFF);
	__u32 outer_old = toward_backend ? p->daddr : p->saddr;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + IP_CSUM_OFF, outer_old, addr, 4))
		return -1;
	if (bpf_skb_store_bytes(skb, outer_off, &addr, 4, 0))
		return -1;
	/* In the quoted packet the flow's own direction is quoted: its source (toward the backend)
	 * or destination (toward the client) is the translated end. p->key is that tuple reversed. */
	__u32 addr_off = p->inner_l3_off + (toward_backend ? IP_SADDR_OFF : IP_DADDR_OFF);
	__u32 port_off = p->inner_l4_off + (toward_backend ? 0 : 2);
	__u32 old_addr = toward_backend ? p->key.daddr : p->key.saddr;
	__u16 old_port = toward_backend ? p->key.dport : p->key.sport;
	if (icmp_quoted_rewrite(skb, p, addr_off, old_addr, addr, 4, 1))
		return -1;
	return icmp_quoted_rewrite(skb, p, port_off, old_port, port, 2, 0);
}

#endif
