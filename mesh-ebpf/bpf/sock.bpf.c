/* East-west service VIPs at the socket: connect4 (TCP and connected UDP) and sendmsg4
 * (unconnected UDP) rewrite VIP:port to a backend chosen by Maglev over the socket cookie, once
 * per socket, so there is no per-packet NAT and no conntrack. recvmsg4 puts the VIP back as the
 * source address an unconnected UDP client sees. All hooks return 1 (allow) whatever happens:
 * traffic that is not for a known VIP is untouched.
 *
 * The shoal_host_* hooks do the same for the node's own processes reaching a published port on
 * the node's address or on loopback (`curl localhost:8080` on a node): the routing mesh's tc
 * programs never see packets the node sends itself. They act only on sockets of the node's
 * network namespace (host_netns_cookie), so they can be attached high in the cgroup tree. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb.h"

#define AF_INET 2

char LICENSE[] SEC("license") = "GPL";

static __always_inline __u32 cookie_hash(__u64 cookie)
{
	return hash_words((__u32)cookie, (__u32)(cookie >> 32), 0);
}

/* `published`: the destination is the node itself, look up its published ports (scope node)
 * instead of VIPs. */
static __always_inline int translate(struct bpf_sock_addr *ctx, __u8 proto, int remember, int published)
{
	__u32 user_ip = ctx->user_ip4;
	__u16 user_port = (__u16)ctx->user_port;
	struct svc_key key = {
		.addr = published ? 0 : user_ip,
		.port = user_port,
		.proto = proto,
		.scope = published ? SHOAL_SCOPE_NODE : SHOAL_SCOPE_VIP,
	};
	struct svc_value *svc = bpf_map_lookup_elem(&services, &key);
	if (!svc) {
		/* A VIP answers on every port, as Swarm's does: port 0 is the whole VIP, and a
		 * backend port of 0 keeps the port the client asked for. */
		if (published)
			return 1;
		key.port = 0;
		svc = bpf_map_lookup_elem(&services, &key);
		if (!svc)
			return 1;
	}
	__u32 svc_id = svc->id;
	__u32 generation = svc->generation;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct backend be;
	__u32 backend_id = lb_select(svc_id, generation, cookie_hash(cookie), &be);
	if (!backend_id) {
		count_no_backend(svc_id);
		return 1;
	}
	__u16 port = be.port ? be.port : user_port;
	if (remember) {
		struct sock_revnat_key rk = { .cookie = cookie, .addr = be.addr, .port = port };
		struct sock_revnat_value rv = { .addr = user_ip, .port = user_port };
		bpf_map_update_elem(&sock_revnat, &rk, &rv, BPF_ANY);
	}
	ctx->user_ip4 = be.addr;
	ctx->user_port = (__u32)port;
	count_new_flow(svc_id, backend_id);
	return 1;
}

SEC("cgroup/connect4")
int shoal_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != AF_INET)
		return 1;
	if (ctx->protocol == IPPROTO_TCP)
		return translate(ctx, IPPROTO_TCP, 0, 0);
	if (ctx->protocol == IPPROTO_UDP)
		return translate(ctx, IPPROTO_UDP, 1, 0);
	return 1;
}

/* A socket of the node's own namespace sending to the node's address or to loopback. */
static __always_inline int to_this_node(struct bpf_sock_addr *ctx)
{
	if (!host_netns_cookie || bpf_get_netns_cookie(ctx) != host_netns_cookie)
		return 0;
	__u32 daddr = ctx->user_ip4;
	return daddr == node_addr || (bpf_ntohl(daddr) >> 24) == 127;
}

SEC("cgroup/connect4")
int shoal_host_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != AF_INET || !to_this_node(ctx))
		return 1;
	if (ctx->protocol == IPPROTO_TCP)
		return translate(ctx, IPPROTO_TCP, 0, 1);
	if (ctx->protocol == IPPROTO_UDP)
		return translate(ctx, IPPROTO_UDP, 1, 1);
	return 1;
}

SEC("cgroup/sendmsg4")
int shoal_host_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family == AF_INET && ctx->protocol == IPPROTO_UDP && to_this_node(ctx))
		translate(ctx, IPPROTO_UDP, 1, 1);
	return 1;
}

/* A reply of an unconnected UDP server to a routing-mesh client: send it from the address the
 * request came to (the task's ingress address), so the task's policy route takes it back
 * through the ingress bridge to the entry node, as a connected socket's would. */
static __always_inline void reply_from_request_address(struct bpf_sock_addr *ctx)
{
	if (ctx->msg_src_ip4)
		return;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return;
	struct ct_key key = {
		.daddr = ctx->user_ip4,
		.sport = bpf_htons((__u16)sk->src_port),
		.dport = (__u16)ctx->user_port,
		.proto = IPPROTO_UDP,
	};
	__u32 *addr = bpf_map_lookup_elem(&reply_sources, &key);
	if (addr)
		ctx->msg_src_ip4 = *addr;
}

SEC("cgroup/sendmsg4")
int shoal_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != AF_INET || ctx->protocol != IPPROTO_UDP)
		return 1;
	__u32 before = ctx->user_ip4;
	translate(ctx, IPPROTO_UDP, 1, 0);
	if (ctx->user_ip4 == before)
		reply_from_request_address(ctx);
	return 1;
}

SEC("cgroup/recvmsg4")
int shoal_recvmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != AF_INET || ctx->protocol != IPPROTO_UDP)
		return 1;
	struct sock_revnat_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
	};
	struct sock_revnat_value *rv = bpf_map_lookup_elem(&sock_revnat, &rk);
	if (!rv)
		return 1;
	ctx->user_ip4 = rv->addr;
	ctx->user_port = (__u32)rv->port;
	return 1;
}
