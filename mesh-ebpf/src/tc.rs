//! The routing mesh's tcx programs (`bpf/host.bpf.c`, `bpf/task.bpf.c`): attaching them to the
//! node's underlay device, its ingress-overlay bridge and each task's veth, and reading the
//! mesh's counters. Links are pinned under `<pin dir>/links/tcx-<ifindex>-<program>` like the
//! cgroup links, so a restarted loader finds them and points them at its freshly loaded
//! programs (`bpf_link_update`) instead of attaching a second copy. A pin whose interface is gone
//! (the link is defunct, or the index was reused) is replaced by a new attachment.

use std::io;
use std::os::fd::AsFd;

use aya::maps::MapError;
use aya::programs::SchedClassifier;
use aya::Ebpf;

use crate::mesh::{Mesh, MeshError};
use crate::sys;
use crate::types::*;

/// Programs of `bpf/host.bpf.c` that the loader attaches.
pub(crate) const HOST_PROGRAMS: [&str; 2] = ["shoal_underlay_ingress", "shoal_bridge_ingress"];
/// Programs of `bpf/task.bpf.c`.
pub(crate) const TASK_PROGRAMS: [&str; 2] = ["shoal_task_egress", "shoal_task_ingress"];

pub(crate) fn load_classifiers(ebpf: &mut Ebpf, names: &[&'static str]) -> Result<(), MeshError> {
    for &name in names {
        classifier(ebpf, name)?.load().map_err(|source| MeshError::Program { program: name, source })?;
    }
    Ok(())
}

pub(crate) fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, MeshError> {
    ebpf.program_mut(name)
        .ok_or(MeshError::MissingProgram(name))?
        .try_into()
        .map_err(|source| MeshError::Program { program: name, source })
}

/// What the routing mesh did with packets beyond translating them (those are counted per
/// service), summed over CPUs. Drops carry their reason in the field name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// IPv4 fragments to the node address, passed to the stack: only the first fragment has
    /// ports and tc cannot reassemble, so the mesh routes whole datagrams only.
    pub fragments_passed: u64,
    /// Frames to the node address with cut-short headers, passed to the stack (which drops them).
    pub truncated_passed: u64,
    /// Routed packets whose IPv4 header had options (handled like any other).
    pub ip_options: u64,
    /// New flows to a published port whose service has no active backend.
    pub dropped_no_backend: u64,
    /// A rewrite helper failed halfway; the packet could not be sent on intact.
    pub dropped_rewrite_failed: u64,
    pub icmp_errors_translated: u64,
    /// ICMP errors quoting no flow the mesh knows, passed to the stack.
    pub icmp_errors_untracked: u64,
    /// A new connection took over the return path of a 4-tuple held by another entry node (UDP,
    /// or TCP when no client port was free to remap it to).
    pub return_path_takeovers: u64,
    /// A new connection on a 4-tuple another entry node's connection holds got another client
    /// port on its backend node (both connections live).
    pub client_ports_remapped: u64,
    /// Packets of the connection that lost its return path in such a takeover.
    pub dropped_return_conflict: u64,
    pub new_flows: u64,
    pub replies_translated: u64,
}

impl Mesh {
    /// Routes client traffic that arrives on the underlay device `ifindex` for this node's
    /// published ports (tcx ingress).
    pub fn attach_underlay(&mut self, ifindex: u32) -> Result<(), MeshError> {
        self.attach_tcx(Object::Host, "shoal_underlay_ingress", ifindex, true)
    }

    /// Reverse-translates replies of routed flows that come back to the ingress-overlay bridge
    /// `ifindex` (tcx ingress on the bridge device itself).
    pub fn attach_ingress_bridge(&mut self, ifindex: u32) -> Result<(), MeshError> {
        self.attach_tcx(Object::Host, "shoal_bridge_ingress", ifindex, true)
    }

    /// Steers a task's replies back to the entry node of each routed flow. `ifindex` is the host
    /// side of the task's veth on the ingress overlay (both directions are attached). The task's
    /// route to clients must leave through this veth.
    pub fn attach_task_veth(&mut self, ifindex: u32) -> Result<(), MeshError> {
        self.attach_tcx(Object::Task, "shoal_task_egress", ifindex, false)?;
        self.attach_tcx(Object::Task, "shoal_task_ingress", ifindex, true)
    }

    /// Detaches the task programs from a veth (a no-op when they are not attached). Deleting the
    /// veth detaches them too; this also removes the pins.
    pub fn detach_task_veth(&mut self, ifindex: u32) -> Result<(), MeshError> {
        for name in TASK_PROGRAMS {
            let pin = self.tcx_pin(ifindex, name);
            if let Ok(link) = sys::obj_get(&pin) {
                // A link whose interface is gone is already detached: only the pin is left.
                let _ = sys::link_detach(link.as_fd());
            }
            match std::fs::remove_file(&pin) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(MeshError::Pin { what: format!("unpin {name}"), path: pin, source }),
            }
        }
        Ok(())
    }

    /// Counters of the routing mesh, summed over CPUs.
    pub fn mesh_stats(&self) -> Result<MeshStats, MeshError> {
        let read = |index: u32| -> Result<u64, MeshError> {
            let values = self
                .mesh_stats
                .get(&index, 0)
                .map_err(|source: MapError| MeshError::Map { map: "mesh_stats", source: Some(source) })?;
            Ok(values.iter().sum())
        };
        Ok(MeshStats {
            fragments_passed: read(STAT_FRAGMENT)?,
            truncated_passed: read(STAT_TRUNCATED)?,
            ip_options: read(STAT_IP_OPTIONS)?,
            dropped_no_backend: read(STAT_DROP_NO_BACKEND)?,
            dropped_rewrite_failed: read(STAT_DROP_REWRITE)?,
            icmp_errors_translated: read(STAT_ICMP_TRANSLATED)?,
            icmp_errors_untracked: read(STAT_ICMP_UNTRACKED)?,
            return_path_takeovers: read(STAT_RETURN_TAKEOVER)?,
            client_ports_remapped: read(STAT_PORT_REMAP)?,
            dropped_return_conflict: read(STAT_DROP_RETURN_CONFLICT)?,
            new_flows: read(STAT_NEW_FLOW)?,
            replies_translated: read(STAT_REPLY)?,
        })
    }

    fn tcx_pin(&self, ifindex: u32, name: &str) -> std::path::PathBuf {
        self.pin_dir().join("links").join(format!("tcx-{ifindex}-{name}"))
    }

    fn attach_tcx(&mut self, object: Object, name: &'static str, ifindex: u32, ingress: bool) -> Result<(), MeshError> {
        let link_pin = self.tcx_pin(ifindex, name);
        let ebpf = match object {
            Object::Host => &mut self.host,
            Object::Task => &mut self.task,
        };
        let program = classifier(ebpf, name)?;
        let prog_fd = program.fd().map_err(|source| MeshError::Program { program: name, source })?;
        let adopt_err = |call| {
            let path = link_pin.clone();
            move |source| MeshError::Adopt { path, call, source }
        };
        if link_pin.exists() {
            let link = sys::obj_get(&link_pin).map_err(adopt_err("BPF_OBJ_GET"))?;
            if sys::tcx_link_ifindex(link.as_fd()).map_err(adopt_err("BPF_OBJ_GET_INFO_BY_FD"))? == ifindex {
                return sys::link_update(link.as_fd(), prog_fd.as_fd()).map_err(adopt_err("BPF_LINK_UPDATE"));
            }
            // The interface the pin was made for is gone; this index names a new one.
            std::fs::remove_file(&link_pin).map_err(|source| MeshError::Pin {
                what: format!("stale link {name}"),
                path: link_pin.clone(),
                source,
            })?;
        }
        let link = sys::tcx_attach(prog_fd.as_fd(), ifindex, ingress).map_err(|source| MeshError::Attach {
            program: name,
            target: format!("interface {ifindex}"),
            source: aya::programs::ProgramError::IOError(source),
        })?;
        sys::obj_pin(link.as_fd(), &link_pin).map_err(|source| MeshError::Pin {
            what: name.to_string(),
            path: link_pin.clone(),
            source,
        })
    }
}

#[derive(Clone, Copy)]
enum Object {
    Host,
    Task,
}

#[cfg(test)]
#[path = "tc_tests.rs"]
mod tests;
