/* Header parsing shared by the tc programs (and an XDP probe that tests it on frames tc refuses).
 * Headers are copied out with the load_bytes helpers rather than read in place, so a frame
 * whose headers are not in the linear area is parsed the same way, and every bound is checked by
 * the helper. The parser is written once as a macro and instantiated per context type. */
#ifndef SHOAL_PARSE_H
#define SHOAL_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shoal_types.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

enum parse_result {
	PARSE_OK,
	PARSE_NOT_IPV4, /* not an IPv4 frame: none of our business */
	PARSE_OTHER,    /* IPv4 but not TCP, UDP or an ICMP error quoting one (addresses are set) */
	PARSE_FRAGMENT, /* an IPv4 fragment (addresses are set) */
	PARSE_TRUNCATED /* headers cut short or malformed (addresses set if the IP header was whole) */
};

struct pkt {
	/* The flow direction this packet travels. For an ICMP error it is the quoted packet's tuple
	 * reversed: the error travels back along the flow that caused it. */
	struct ct_key key;
	__u32 saddr; /* outer IPv4 addresses */
	__u32 daddr;
	__u32 l4_off;       /* TCP/UDP header, or the ICMP header of an error */
	__u32 inner_l3_off; /* ICMP errors: the quoted IPv4 header and its L4 header */
	__u32 inner_l4_off;
	__u8 icmp_error;
	__u8 tcp_flags;
	__u8 ip_options;
	__u8 pad;
};

/* <linux/icmp.h> drags in libc headers that do not build for the BPF target. */
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

struct icmp_header {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest;
};

struct ports {
	__u16 src;
	__u16 dst;
};

static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/* DEFINE_PARSER(name, ctx type, load helper) defines `int name(ctx, struct pkt *p)`. */
#define DEFINE_PARSER(name, ctx_t, load)                                                          \
	static __always_inline int name(ctx_t *ctx, struct pkt *p)                                \
	{                                                                                         \
		struct ethhdr eth;                                                                \
		struct iphdr ip;                                                                  \
		if (load(ctx, 0, &eth, sizeof(eth)))                                              \
			return PARSE_TRUNCATED;                                                   \
		if (eth.h_proto != bpf_htons(ETH_P_IP))                                           \
			return PARSE_NOT_IPV4;                                                    \
		if (load(ctx, ETH_HLEN, &ip, sizeof(ip)))                                         \
			return PARSE_TRUNCATED;                                                   \
		if (ip.version != 4)                                                              \
			return PARSE_NOT_IPV4;                                                    \
		p->saddr = ip.saddr;                                                              \
		p->daddr = ip.daddr;                                                              \
		if (ip.ihl < 5)                                                                   \
			return PARSE_TRUNCATED;                                                   \
		p->ip_options = ip.ihl > 5;                                                       \
		if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))                                   \
			return PARSE_FRAGMENT;                                                    \
		p->l4_off = ETH_HLEN + ip.ihl * 4;                                                \
		p->key.proto = ip.protocol;                                                       \
		if (ip.protocol == IPPROTO_TCP) {                                                 \
			/* The whole fixed header: the checksum we rewrite is at offset 16. */    \
			__u8 tcp[20];                                                             \
			if (load(ctx, p->l4_off, tcp, sizeof(tcp)))                               \
				return PARSE_TRUNCATED;                                           \
			p->tcp_flags = tcp[13];                                                   \
			__builtin_memcpy(&p->key.sport, &tcp[0], 2);                              \
			__builtin_memcpy(&p->key.dport, &tcp[2], 2);                              \
		} else if (ip.protocol == IPPROTO_UDP) {                                          \
			__u8 udp[8];                                                              \
			if (load(ctx, p->l4_off, udp, sizeof(udp)))                               \
				return PARSE_TRUNCATED;                                           \
			__builtin_memcpy(&p->key.sport, &udp[0], 2);                              \
			__builtin_memcpy(&p->key.dport, &udp[2], 2);                              \
		} else if (ip.protocol == IPPROTO_ICMP) {                                         \
			struct icmp_header icmp;                                                      \
			struct iphdr inner;                                                       \
			struct ports ports;                                                       \
			if (load(ctx, p->l4_off, &icmp, sizeof(icmp)))                            \
				return PARSE_TRUNCATED;                                           \
			if (!icmp_is_error(icmp.type))                                            \
				return PARSE_OTHER;                                               \
			p->inner_l3_off = p->l4_off + sizeof(icmp);                               \
			if (load(ctx, p->inner_l3_off, &inner, sizeof(inner)))                    \
				return PARSE_TRUNCATED;                                           \
			/* Quoted options are legal but rare; we do not translate them. */       \
			if (inner.ihl != 5 ||                                                     \
			    (inner.protocol != IPPROTO_TCP && inner.protocol != IPPROTO_UDP))     \
				return PARSE_OTHER;                                               \
			p->inner_l4_off = p->inner_l3_off + sizeof(inner);                        \
			if (load(ctx, p->inner_l4_off, &ports, sizeof(ports)))                    \
				return PARSE_TRUNCATED;                                           \
			p->icmp_error = 1;                                                        \
			p->key.proto = inner.protocol;                                            \
			p->key.saddr = inner.daddr;                                               \
			p->key.daddr = inner.saddr;                                               \
			p->key.sport = ports.dst;                                                 \
			p->key.dport = ports.src;                                                 \
			return PARSE_OK;                                                          \
		} else {                                                                          \
			return PARSE_OTHER;                                                       \
		}                                                                                 \
		p->key.saddr = ip.saddr;                                                          \
		p->key.daddr = ip.daddr;                                                          \
		return PARSE_OK;                                                                  \
	}

#endif
