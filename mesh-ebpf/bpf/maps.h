/* Every map is pinned by name under the loader's per-node versioned bpffs directory, so all
 * objects (one per hook) share them and a restarted agent adopts them with their state. */
#ifndef SHOAL_MAPS_H
#define SHOAL_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "shoal_types.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHOAL_MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHOAL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/* The two Maglev tables of one service (layout: SHOAL_MAGLEV_SLOT). Created once per service
 * and rewritten in place: replacing an outer entry waits for an RCU grace period (~16 ms), while
 * rewriting the idle half and flipping svc_value.generation costs a few microseconds.
 * BPF_F_INNER_MAP lets each service's map have its own capacity (a prime >= 100 x backends). */
struct maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

/* Service id -> its Maglev tables. Replaced only when a service outgrows its capacity. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, SHOAL_MAX_SERVICES);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct maglev_inner);
} maglev_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHOAL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} svc_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHOAL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHOAL_MAX_SOCK_REVNAT);
	__type(key, struct sock_revnat_key);
	__type(value, struct sock_revnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_revnat SEC(".maps");

/* Both directions of every routed flow: the original tuple and the reply tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHOAL_MAX_CT);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHOAL_MAX_CT);
	__type(key, struct ct_key);
	__type(value, struct return_mac);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} return_macs SEC(".maps");

/* Remapped client ports of connections to this node's tasks (see task.bpf.c). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHOAL_MAX_REMAPS);
	__type(key, struct port_remap_key);
	__type(value, struct port_remap);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} port_remaps SEC(".maps");

/* Routed UDP flows on this node's tasks: (0, client, task port, client port, UDP) -> the task's
 * ingress address the request was sent to. An unconnected UDP server answers with sendto() and
 * no source address, so the kernel would pick the source by the default route (the NAT gateway)
 * and the reply would never meet the entry node; cgroup/sendmsg4 sets the source from here. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHOAL_MAX_CT);
	__type(key, struct ct_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reply_sources SEC(".maps");

/* Per-CPU counters of the routing mesh, indexed by SHOAL_STAT_*. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHOAL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_stats SEC(".maps");

static __always_inline void count_stat(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&mesh_stats, &reason);
	if (n)
		*n += 1;
}

#endif
