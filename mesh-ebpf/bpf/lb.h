/* Backend selection: a seeded, deterministic hash and the Maglev table lookup. The hash must be
 * the same function with the same seed on every node, never skb->hash (random per boot). */
#ifndef SHOAL_LB_H
#define SHOAL_LB_H

#include "maps.h"
#include "config.h"

/* murmur3's finaliser: cheap and well mixed. */
static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 hash_words(__u32 a, __u32 b, __u32 c)
{
	__u32 h = hash_seed;
	h = fmix32(h ^ a);
	h = fmix32(h ^ b);
	h = fmix32(h ^ c);
	return h;
}

static __always_inline void count_new_flow(__u32 svc_id, __u32 backend_id)
{
	struct counters *c = bpf_map_lookup_elem(&svc_counters, &svc_id);
	if (c)
		__sync_fetch_and_add(&c->new_flows, 1);
	c = bpf_map_lookup_elem(&backend_counters, &backend_id);
	if (c)
		__sync_fetch_and_add(&c->new_flows, 1);
}

static __always_inline void count_no_backend(__u32 svc_id)
{
	struct counters *c = bpf_map_lookup_elem(&svc_counters, &svc_id);
	if (c)
		__sync_fetch_and_add(&c->no_backend, 1);
}

/* Picks the backend for `hash` in the active half of the service's Maglev map. Returns the
 * backend id (0 when the service has no usable backend) and copies the backend into *out.
 * A program that read the generation just before a flip may finish its lookup in the half being
 * rewritten: it then gets a backend of the old or the new set, never an out-of-range slot. */
static __always_inline __u32 lb_select(__u32 svc_id, __u32 generation, __u32 hash, struct backend *out)
{
	void *table = bpf_map_lookup_elem(&maglev_tables, &svc_id);
	if (!table)
		return 0;
	__u32 half = generation & 1;
	__u32 *size = bpf_map_lookup_elem(table, &half);
	if (!size)
		return 0;
	__u32 m = *size;
	if (m == 0)
		return 0;
	/* The inner array bounds-checks the index itself, so no verifier-visible bound is needed. */
	__u32 slot = SHOAL_MAGLEV_SLOT(hash % m, half);
	__u32 *id = bpf_map_lookup_elem(table, &slot);
	if (!id)
		return 0;
	__u32 backend_id = *id;
	struct backend *be = bpf_map_lookup_elem(&backends, &backend_id);
	if (!be)
		return 0;
	*out = *be;
	return backend_id;
}

#endif
