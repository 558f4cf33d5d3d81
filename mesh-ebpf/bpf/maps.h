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

/* Maglev table of one service: slot 0 holds the table size M, slots 1..=M hold backend ids.
 * BPF_F_INNER_MAP lets each service's table have its own size (a prime >= 100 x backends). */
struct maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

/* Service id -> its Maglev table. Replacing an entry swaps a whole table atomically. */
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

#endif
