//! The loader: loads (or adopts) the eBPF objects with this node's settings, keeps their maps
//! pinned under a per-node versioned bpffs directory, attaches programs through pinned links,
//! and turns services and backends into map entries.
//!
//! Restart model: maps are pinned by name, so a new `Mesh` on the same directory reuses them with
//! all their state (services, Maglev tables, conntrack). Programs are reloaded from the embedded
//! objects every time, and existing pinned links are pointed at the new programs with
//! `bpf_link_update`: nothing is detached, nothing is attached twice.

use std::collections::{BTreeSet, HashMap as StdHashMap};
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, HashOfMaps, MapData, MapError, PerCpuArray, PerCpuValues};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, ProgramError};
use aya::{Ebpf, EbpfError, EbpfLoader};

use crate::maglev;
use crate::sys;
use crate::types::*;

static SOCK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock.bpf.o"));
pub(crate) static HOST_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/host.bpf.o"));
pub(crate) static TASK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/task.bpf.o"));

/// Socket-hook programs in `bpf/sock.bpf.c`: for tasks (VIPs), and for the node's own processes
/// (its published ports on its address and on loopback).
const SOCK_PROGRAMS: [&str; 3] = ["shoal_connect4", "shoal_sendmsg4", "shoal_recvmsg4"];
const HOST_SOCK_PROGRAMS: [&str; 3] = ["shoal_host_connect4", "shoal_host_sendmsg4", "shoal_recvmsg4"];

/// Layout version of the pinned maps; bump it whenever a shared type or map definition changes so
/// a new agent never reuses maps with an old layout.
pub const PIN_LAYOUT_VERSION: &str = "v2";

/// Flag that lets each Maglev table have its own size (`BPF_F_INNER_MAP`).
const BPF_F_INNER_MAP: u32 = 1 << 12;

/// The per-node pin directory: `<bpffs>/shoal/<node>/v2`.
pub fn pin_dir(bpffs: &Path, node: &str) -> PathBuf {
    bpffs.join("shoal").join(node).join(PIN_LAYOUT_VERSION)
}

/// Settings of this node, baked into the programs at load time as read-only globals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Underlay address; published ports answer on it.
    pub node_addr: Ipv4Addr,
    /// Seed of the flow hash. Must be the same on every node of the cluster.
    pub hash_seed: u32,
    /// The underlay device (where client traffic for published ports arrives).
    pub underlay_ifindex: u32,
    /// The ingress-overlay bridge (where routed flows are sent).
    pub ingress_bridge_ifindex: u32,
    /// The node's own network namespace ([`crate::netns_cookie`]); 0: the host socket programs
    /// act on no socket.
    pub host_netns_cookie: u64,
    /// Entries of the per-flow maps ([`flow_table_entries_here`]); 0: the compiled defaults.
    /// Pinned maps keep the size they were created with.
    pub flow_table_entries: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn number(self) -> u8 {
        match self {
            Proto::Tcp => IPPROTO_TCP,
            Proto::Udp => IPPROTO_UDP,
        }
    }
}

/// What a client addresses to reach a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// A service VIP on an overlay, reached east-west from tasks.
    Vip { addr: Ipv4Addr, port: u16, proto: Proto },
    /// A published port of the routing mesh, answering on the node's address.
    Published { port: u16, proto: Proto },
}

impl ServiceKey {
    fn raw(self) -> SvcKey {
        match self {
            ServiceKey::Vip { addr, port, proto } => {
                SvcKey { addr: ip_to_be(addr), port: port_to_be(port), proto: proto.number(), scope: SCOPE_VIP }
            }
            ServiceKey::Published { port, proto } => {
                SvcKey { addr: 0, port: port_to_be(port), proto: proto.number(), scope: SCOPE_NODE }
            }
        }
    }
}

/// One task behind a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Underlay address of the node that runs the task.
    pub node_addr: Ipv4Addr,
    /// MAC of that node's ingress bridge.
    pub node_mac: [u8; 6],
    /// A draining backend gets no new flows but keeps its established ones.
    pub draining: bool,
}

impl Backend {
    /// An active backend with no node information (enough for east-west VIPs).
    pub fn new(addr: Ipv4Addr, port: u16) -> Self {
        Backend { addr, port, node_addr: Ipv4Addr::UNSPECIFIED, node_mac: [0; 6], draining: false }
    }

    fn raw(&self, svc_id: u32) -> BackendValue {
        BackendValue {
            addr: ip_to_be(self.addr),
            port: port_to_be(self.port),
            state: if self.draining { BACKEND_DRAINING } else { BACKEND_ACTIVE },
            node_addr: ip_to_be(self.node_addr),
            node_mac: self.node_mac,
            svc_id,
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("cannot create the bpffs pin directory {path}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error("cannot load the eBPF object {object}")]
    Load { object: &'static str, source: Box<EbpfError> },
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("cannot load the eBPF program {program}")]
    Program { program: &'static str, source: ProgramError },
    #[error("the eBPF map {map} is missing or has another layout")]
    Map { map: &'static str, source: Option<MapError> },
    #[error("cannot update the eBPF map {map}")]
    MapUpdate { map: &'static str, source: MapError },
    #[error("cannot open cgroup {path}")]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("cannot attach {program} to {target}")]
    Attach { program: &'static str, target: String, source: ProgramError },
    #[error("cannot pin {what} at {path}")]
    Pin { what: String, path: PathBuf, source: io::Error },
    #[error("cannot adopt the pinned link {path} ({call} failed)")]
    Adopt { path: PathBuf, call: &'static str, source: io::Error },
    #[error("cannot count the possible CPUs")]
    Cpus { source: io::Error },
    #[error("no free {0} id: the map is full")]
    IdsExhausted(&'static str),
}

/// Hands out small integer ids (index of per-id counters) and takes them back.
#[derive(Debug)]
struct Ids {
    used: BTreeSet<u32>,
    next: u32,
    max: u32,
}

impl Ids {
    fn new(max: u32) -> Self {
        Ids { used: BTreeSet::new(), next: 1, max }
    }

    /// Id 0 is never handed out: the programs read it as "no backend".
    fn alloc(&mut self, what: &'static str) -> Result<u32, MeshError> {
        for _ in 1..self.max {
            let id = self.next;
            self.next = if self.next + 1 >= self.max { 1 } else { self.next + 1 };
            if self.used.insert(id) {
                return Ok(id);
            }
        }
        Err(MeshError::IdsExhausted(what))
    }

    fn free(&mut self, id: u32) {
        self.used.remove(&id);
    }
}

#[derive(Debug)]
struct ServiceState {
    id: u32,
    /// (backend id, backend) in the order the caller gave them.
    backends: Vec<(u32, BackendValue)>,
    /// The service's two Maglev tables (`maglev_slot` layout) and the largest table they hold.
    tables: Option<(MapData, u32)>,
    generation: u32,
}

/// Counters of one service, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    pub service: Counters,
    /// Per backend address and port.
    pub backends: Vec<((Ipv4Addr, u16), Counters)>,
}

/// The loaded data plane of one node.
pub struct Mesh {
    pin_dir: PathBuf,
    config: NodeConfig,
    sock: Ebpf,
    pub(crate) host: Ebpf,
    pub(crate) task: Ebpf,
    pub(crate) mesh_stats: PerCpuArray<MapData, u64>,
    services: HashMap<MapData, SvcKey, SvcValue>,
    backends: HashMap<MapData, u32, BackendValue>,
    maglev: HashOfMaps<MapData, u32, MapData>,
    svc_counters: PerCpuArray<MapData, Counters>,
    backend_counters: PerCpuArray<MapData, Counters>,
    state: StdHashMap<SvcKey, ServiceState>,
    svc_ids: Ids,
    backend_ids: Ids,
}

/// What [`Mesh::set_services`] holds back until every service's tables are written: map-of-maps inserts (each single insert waits for an RCU
/// grace period, ~10 ms, so 10,000 new services would take minutes), and what must follow them
/// — the service entries that make the tables live, and the backends they no longer use.
#[derive(Default)]
struct Batch {
    /// Service id and the fd of its new Maglev map (owned by that service's state).
    maglev: Vec<(u32, u32)>,
    services: Vec<(SvcKey, SvcValue)>,
    forget: Vec<u32>,
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> MeshError {
    move |source| MeshError::Map { map, source: Some(source) }
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(ebpf: &mut Ebpf, map: &'static str) -> Result<T, MeshError> {
    let raw = ebpf.take_map(map).ok_or(MeshError::Map { map, source: None })?;
    T::try_from(raw).map_err(map_err(map))
}

/// Entries of the per-flow maps (`conntrack`, `return_macs`, `reply_sources`) for a node with
/// `memory_bytes` of RAM: 0.25 % of it at ~96 B per entry (key, value and the kernel's element
/// overhead), rounded down to a power of two, between 65,536 and 4,194,304 (8 GiB: 131,072;
/// 24 GiB: 524,288). The maps are LRU: when full, the least recently used flows go, and a flow
/// that lost its entries is picked again by Maglev, to the same backend while the set is the same.
pub fn flow_table_entries(memory_bytes: u64) -> u32 {
    let wanted = (memory_bytes / 400 / 96).clamp(1 << 16, 1 << 22);
    1 << (63 - wanted.leading_zeros())
}

/// [`flow_table_entries`] for this machine (MemTotal of /proc/meminfo; the compiled default of
/// 262,144 when it cannot be read).
pub fn flow_table_entries_here() -> u32 {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    });
    kib.map(|k| flow_table_entries(k * 1024)).unwrap_or(1 << 18)
}

fn load_object(bytes: &[u8], object: &'static str, pin_dir: &Path, config: &NodeConfig) -> Result<Ebpf, MeshError> {
    let node_addr = ip_to_be(config.node_addr);
    let mut loader = EbpfLoader::new();
    if config.flow_table_entries != 0 {
        for map in ["conntrack", "return_macs", "reply_sources"] {
            loader.map_max_entries(map, config.flow_table_entries);
        }
        loader.map_max_entries("port_remaps", (config.flow_table_entries / 4).max(1 << 14));
    }
    loader
        // Without it, pinned-by-name maps would land in the host-wide bpffs root.
        .default_map_pin_directory(pin_dir)
        .override_global("hash_seed", &config.hash_seed, true)
        .override_global("node_addr", &node_addr, true)
        .override_global("underlay_ifindex", &config.underlay_ifindex, true)
        .override_global("ingress_bridge_ifindex", &config.ingress_bridge_ifindex, true)
        .override_global("host_netns_cookie", &config.host_netns_cookie, true)
        .load(bytes)
        .map_err(|source| MeshError::Load { object, source: Box::new(source) })
}

impl Mesh {
    /// Loads the programs with `config` and adopts the maps pinned in `pin_dir` (creating them on
    /// first use). Use [`pin_dir`] to build the directory from the bpffs mount and node name.
    pub fn load(pin_dir: &Path, config: NodeConfig) -> Result<Mesh, MeshError> {
        for dir in [pin_dir.to_path_buf(), pin_dir.join("links"), pin_dir.join("progs")] {
            std::fs::create_dir_all(&dir).map_err(|source| MeshError::PinDir { path: dir.clone(), source })?;
        }
        let mut sock = load_object(SOCK_OBJECT, "sock.bpf.o", pin_dir, &config)?;
        let mut names = SOCK_PROGRAMS.to_vec();
        names.extend(HOST_SOCK_PROGRAMS.into_iter().filter(|n| !SOCK_PROGRAMS.contains(n)));
        for name in names {
            let pin = pin_dir.join("progs").join(name);
            let program: &mut CgroupSockAddr = sock
                .program_mut(name)
                .ok_or(MeshError::MissingProgram(name))?
                .try_into()
                .map_err(|source| MeshError::Program { program: name, source })?;
            program.load().map_err(|source| MeshError::Program { program: name, source })?;
            let _ = std::fs::remove_file(&pin);
            program.pin(&pin).map_err(|e| MeshError::Pin {
                what: name.to_string(),
                path: pin.clone(),
                source: io::Error::other(e),
            })?;
        }
        let mut host = load_object(HOST_OBJECT, "host.bpf.o", pin_dir, &config)?;
        crate::tc::load_classifiers(&mut host, &crate::tc::HOST_PROGRAMS)?;
        let mut task = load_object(TASK_OBJECT, "task.bpf.o", pin_dir, &config)?;
        crate::tc::load_classifiers(&mut task, &crate::tc::TASK_PROGRAMS)?;
        let mut mesh = Mesh {
            mesh_stats: take(&mut host, "mesh_stats")?,
            host,
            task,
            pin_dir: pin_dir.to_path_buf(),
            config,
            services: take(&mut sock, "services")?,
            backends: take(&mut sock, "backends")?,
            maglev: take(&mut sock, "maglev_tables")?,
            svc_counters: take(&mut sock, "svc_counters")?,
            backend_counters: take(&mut sock, "backend_counters")?,
            sock,
            state: StdHashMap::new(),
            svc_ids: Ids::new(MAX_SERVICES),
            backend_ids: Ids::new(MAX_BACKENDS),
        };
        mesh.rebuild_state()?;
        Ok(mesh)
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Reads back what a previous agent left in the pinned maps, so ids stay stable and updates
    /// replace entries instead of leaking them.
    fn rebuild_state(&mut self) -> Result<(), MeshError> {
        let mut by_id: StdHashMap<u32, SvcKey> = StdHashMap::new();
        for entry in self.services.iter() {
            let (key, value) = entry.map_err(map_err("services"))?;
            self.svc_ids.used.insert(value.id);
            by_id.insert(value.id, key);
            let tables = match self.maglev.get(&value.id, 0) {
                Ok(map) => {
                    let entries = map.info().map_err(map_err("maglev_tables"))?.max_entries();
                    Some((map, entries.saturating_sub(2) / 2))
                }
                Err(MapError::KeyNotFound) => None,
                Err(source) => return Err(MeshError::Map { map: "maglev_tables", source: Some(source) }),
            };
            let state = ServiceState { id: value.id, backends: Vec::new(), tables, generation: value.generation };
            self.state.insert(key, state);
        }
        for entry in self.backends.iter() {
            let (id, backend) = entry.map_err(map_err("backends"))?;
            self.backend_ids.used.insert(id);
            if let Some(state) = by_id.get(&backend.svc_id).and_then(|key| self.state.get_mut(key)) {
                state.backends.push((id, backend));
            }
        }
        Ok(())
    }

    /// Attaches the socket programs to the cgroup2 directory `path`: every process in it (and
    /// below) gets VIPs translated at connect/sendmsg time. Idempotent across restarts: an
    /// existing pinned link for this cgroup is switched to the new programs instead.
    pub fn attach_cgroup(&mut self, path: &Path) -> Result<(), MeshError> {
        self.attach_sock_programs(path, SOCK_PROGRAMS)
    }

    /// Attaches the host socket programs to the cgroup2 directory `path`: processes in it (and
    /// below) *in the node's network namespace* reach published ports on the node's address and
    /// on loopback. Processes of other namespaces are left alone, so `path` may be the root of
    /// the hierarchy. Idempotent like [`Mesh::attach_cgroup`].
    pub fn attach_host_cgroup(&mut self, path: &Path) -> Result<(), MeshError> {
        self.attach_sock_programs(path, HOST_SOCK_PROGRAMS)
    }

    fn attach_sock_programs(&mut self, path: &Path, programs: [&'static str; 3]) -> Result<(), MeshError> {
        let cgroup_err = |source| MeshError::Cgroup { path: path.to_path_buf(), source };
        let cgroup = File::open(path).map_err(cgroup_err)?;
        let inode = cgroup.metadata().map_err(cgroup_err)?.ino();
        for name in programs {
            let link_pin = self.pin_dir.join("links").join(format!("cgroup-{inode}-{name}"));
            let program: &mut CgroupSockAddr = self
                .sock
                .program_mut(name)
                .ok_or(MeshError::MissingProgram(name))?
                .try_into()
                .map_err(|source| MeshError::Program { program: name, source })?;
            if link_pin.exists() {
                let adopt_err = |call| {
                    let path = link_pin.clone();
                    move |source| MeshError::Adopt { path, call, source }
                };
                let link = sys::obj_get(&link_pin).map_err(adopt_err("BPF_OBJ_GET"))?;
                let prog_fd = program.fd().map_err(|source| MeshError::Program { program: name, source })?;
                sys::link_update(link.as_fd(), prog_fd.as_fd()).map_err(adopt_err("BPF_LINK_UPDATE"))?;
                continue;
            }
            let attach_err = |source| MeshError::Attach { program: name, target: path.display().to_string(), source };
            // bpf_link_create takes no mode flags: cgroup links always coexist with other programs.
            let id = program.attach(&cgroup, CgroupAttachMode::Single).map_err(attach_err)?;
            let link = program.take_link(id).map_err(attach_err)?;
            let link: FdLink = link.try_into().map_err(|e: aya::programs::links::LinkError| MeshError::Pin {
                what: name.to_string(),
                path: link_pin.clone(),
                source: io::Error::other(e),
            })?;
            link.pin(&link_pin).map_err(|e| MeshError::Pin {
                what: name.to_string(),
                path: link_pin.clone(),
                source: io::Error::other(e),
            })?;
        }
        Ok(())
    }

    /// Makes `backends` the backends of `key`, creating the service if needed. Backends already
    /// present (same address and port) keep their id and counters. The new Maglev table is
    /// written into the idle half of the service's Maglev map and made active by bumping the
    /// generation in the service entry, one plain hash update: readers see the old or the new
    /// table, and only a new service or one outgrowing its map pays for a map-of-maps update.
    pub fn set_service(&mut self, key: ServiceKey, backends: &[Backend]) -> Result<(), MeshError> {
        self.set_services(&[(key, backends.to_vec())])
    }

    /// [`Mesh::set_service`] for many services at once: every new Maglev map enters the
    /// map-of-maps by one batch update (one RCU grace period for all, instead of one each), then
    /// the service entries that make the tables live, then backends no longer used are
    /// forgotten. A service that fails is reported (the first error); the others are programmed.
    pub fn set_services(&mut self, services: &[(ServiceKey, Vec<Backend>)]) -> Result<(), MeshError> {
        let mut batch = Batch::default();
        let mut first_error = None;
        for (key, backends) in services {
            if let Err(e) = self.stage_service(*key, backends, &mut batch) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.flush(batch) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn stage_service(&mut self, key: ServiceKey, backends: &[Backend], batch: &mut Batch) -> Result<(), MeshError> {
        let raw_key = key.raw();
        let mut state = match self.state.remove(&raw_key) {
            Some(state) => state,
            None => {
                let id = self.svc_ids.alloc("service")?;
                zero_counters(&mut self.svc_counters, id, "svc_counters")?;
                ServiceState { id, backends: Vec::new(), tables: None, generation: 0 }
            }
        };
        let result = self.program_service(raw_key, &mut state, backends, batch);
        // Even on error the state keeps what the maps hold, so a retry does not leak ids.
        self.state.insert(raw_key, state);
        result
    }

    fn program_service(
        &mut self,
        raw_key: SvcKey,
        state: &mut ServiceState,
        backends: &[Backend],
        batch: &mut Batch,
    ) -> Result<(), MeshError> {
        let svc_id = state.id;
        let old = std::mem::take(&mut state.backends);
        let mut new: Vec<(u32, BackendValue)> = Vec::with_capacity(backends.len());
        for backend in backends {
            let value = backend.raw(svc_id);
            let same = |(_, b): &&(u32, BackendValue)| b.addr == value.addr && b.port == value.port;
            let id = match old.iter().find(same) {
                Some(&(id, _)) => id,
                None => {
                    let id = self.backend_ids.alloc("backend")?;
                    zero_counters(&mut self.backend_counters, id, "backend_counters")?;
                    id
                }
            };
            if old.iter().find(same).map(|(_, b)| *b) != Some(value) {
                self.backends
                    .insert(id, value, 0)
                    .map_err(|source| MeshError::MapUpdate { map: "backends", source })?;
            }
            new.push((id, value));
        }

        // Backends this call drops are forgotten only once the new table is live.
        state.backends = new.clone();
        state.backends.extend(old.iter().filter(|(id, _)| !new.iter().any(|(n, _)| n == id)).copied());

        let active: Vec<&(u32, BackendValue)> = new.iter().filter(|(_, b)| b.state == BACKEND_ACTIVE).collect();
        let keys: Vec<u64> =
            active.iter().map(|(_, b)| maglev::backend_key(ip_from_be(b.addr), port_from_be(b.port))).collect();
        // An empty active set is an empty table (size 0): programs then find no backend.
        let (m, slots) = if active.is_empty() {
            (0, Vec::new())
        } else {
            let m = maglev::table_size(active.len());
            let table = maglev::build_table(&keys, m, self.config.hash_seed as u64);
            (m, table.iter().map(|&owner| active[owner as usize].0).collect::<Vec<u32>>())
        };
        let generation = state.generation.wrapping_add(1);
        let update_err = |source| MeshError::MapUpdate { map: "maglev_tables", source };
        match &state.tables {
            Some((map, capacity)) if *capacity >= m => {
                write_half(map, generation & 1, &slots).map_err(update_err)?;
            }
            _ => {
                // A fresh map gets the table in both halves: readers may still hold either
                // generation when it replaces the old map.
                let capacity = m.max(maglev::MIN_TABLE_SIZE);
                let fd = sys::create_u32_array(2 + 2 * capacity, BPF_F_INNER_MAP)
                    .map_err(|e| update_err(MapError::IoError(e)))?;
                let map = MapData::from_fd(fd).map_err(update_err)?;
                write_half(&map, 0, &slots).map_err(update_err)?;
                write_half(&map, 1, &slots).map_err(update_err)?;
                batch.maglev.push((svc_id, map.fd().as_fd().as_raw_fd() as u32));
                state.tables = Some((map, capacity));
            }
        }
        let value = SvcValue { id: svc_id, backend_count: new.len() as u32, flags: 0, generation };
        batch.services.push((raw_key, value));
        batch.forget.extend(old.iter().filter(|(id, _)| !new.iter().any(|(n, _)| n == id)).map(|(id, _)| *id));
        state.generation = generation;
        state.backends = new;
        Ok(())
    }

    fn flush(&mut self, batch: Batch) -> Result<(), MeshError> {
        if !batch.maglev.is_empty() {
            let update_err = |e| MeshError::MapUpdate { map: "maglev_tables", source: MapError::IoError(e) };
            let outer = sys::obj_get(&self.pin_dir.join("maglev_tables")).map_err(update_err)?;
            let (ids, fds): (Vec<u32>, Vec<u32>) = batch.maglev.into_iter().unzip();
            if let Err(e) = sys::update_u32_batch(outer.as_fd(), &ids, &fds) {
                // Those maps never went live: forget them, so a retry makes and inserts them again.
                for state in self.state.values_mut().filter(|s| ids.contains(&s.id)) {
                    state.tables = None;
                }
                return Err(update_err(e));
            }
        }
        for (key, value) in batch.services {
            self.services.insert(key, value, 0).map_err(|source| MeshError::MapUpdate { map: "services", source })?;
        }
        for id in batch.forget {
            self.forget_backend(id)?;
        }
        Ok(())
    }

    /// The kernel id of the Maglev map of `key` (tests: whether a change replaced it).
    #[cfg(test)]
    pub(crate) fn maglev_map_id(&self, key: ServiceKey) -> Option<u32> {
        let (map, _) = self.state.get(&key.raw())?.tables.as_ref()?;
        Some(map.info().ok()?.id())
    }

    fn forget_backend(&mut self, id: u32) -> Result<(), MeshError> {
        removed(self.backends.remove(&id), "backends")?;
        self.backend_ids.free(id);
        Ok(())
    }

    /// Removes a service and its backends. Established routed flows keep their translation in
    /// conntrack until they end. Removing an unknown service is not an error.
    pub fn remove_service(&mut self, key: ServiceKey) -> Result<(), MeshError> {
        let raw_key = key.raw();
        let Some(state) = self.state.remove(&raw_key) else {
            return Ok(());
        };
        removed(self.services.remove(&raw_key), "services")?;
        removed(self.maglev.remove(&state.id), "maglev_tables")?;
        for (id, _) in &state.backends {
            self.forget_backend(*id)?;
        }
        self.svc_ids.free(state.id);
        Ok(())
    }

    /// Services currently programmed, as their keys in the maps.
    pub fn service_count(&self) -> usize {
        self.state.len()
    }

    /// Counters of every service, summed over CPUs.
    pub fn counters(&self) -> Result<StdHashMap<ServiceKey, ServiceCounters>, MeshError> {
        let mut out = StdHashMap::new();
        for (raw_key, state) in &self.state {
            let key = service_key_from_raw(raw_key);
            let service = sum_counters(&self.svc_counters, state.id, "svc_counters")?;
            let mut backends = Vec::new();
            for (id, b) in &state.backends {
                let c = sum_counters(&self.backend_counters, *id, "backend_counters")?;
                backends.push(((ip_from_be(b.addr), port_from_be(b.port)), c));
            }
            out.insert(key, ServiceCounters { service, backends });
        }
        Ok(out)
    }
}

/// Writes one Maglev table (backend id per slot) into half `half` of a service's Maglev map in a
/// single batch: the slots first, then the size that makes them reachable.
fn write_half(map: &MapData, half: u32, slots: &[u32]) -> Result<(), MapError> {
    let mut keys: Vec<u32> = (0..slots.len() as u32).map(|i| maglev_slot(i, half)).collect();
    let mut values = slots.to_vec();
    keys.push(half);
    values.push(slots.len() as u32);
    sys::update_u32_batch(map.fd().as_fd(), &keys, &values).map_err(MapError::IoError)
}

/// Deleting a key that is already gone is success: the end state is what was asked for.
fn removed(result: Result<(), MapError>, map: &'static str) -> Result<(), MeshError> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(source) => Err(MeshError::MapUpdate { map, source }),
    }
}

fn service_key_from_raw(raw: &SvcKey) -> ServiceKey {
    let proto = if raw.proto == IPPROTO_UDP { Proto::Udp } else { Proto::Tcp };
    let port = port_from_be(raw.port);
    if raw.scope == SCOPE_NODE {
        ServiceKey::Published { port, proto }
    } else {
        ServiceKey::Vip { addr: ip_from_be(raw.addr), port, proto }
    }
}

fn sum_counters(map: &PerCpuArray<MapData, Counters>, id: u32, name: &'static str) -> Result<Counters, MeshError> {
    let values = map.get(&id, 0).map_err(map_err(name))?;
    let mut total = Counters::default();
    for c in values.iter() {
        total.add(c);
    }
    Ok(total)
}

/// A reused id must not inherit the counts of its previous owner.
fn zero_counters(map: &mut PerCpuArray<MapData, Counters>, id: u32, name: &'static str) -> Result<(), MeshError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| MeshError::Cpus { source })?;
    let values =
        PerCpuValues::try_from(vec![Counters::default(); cpus]).map_err(|source| MeshError::Cpus { source })?;
    map.set(id, values, 0).map_err(|source| MeshError::MapUpdate { map: name, source })
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;
