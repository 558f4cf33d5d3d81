//! The `bpf()` commands aya 0.14 does not expose for our use: opening any pinned object by path,
//! pointing an existing link at a new program (how a restarted agent swaps in its freshly loaded
//! programs without detaching anything), creating an array map, updating many array slots in one
//! call, and attaching a tcx program to an interface by index (aya wants a name, which it
//! resolves in the calling thread's namespace).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateTcxAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, correctly sized `#[repr(C)]` prefix of `union bpf_attr` for `cmd`;
    // the kernel reads at most `size_of::<T>()` bytes of it.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as u32) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens the bpffs object (map, program or link) pinned at `path`.
/// `SO_NETNS_COOKIE` (asm-generic, as on x86_64 and arm64).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the calling thread's network namespace, as `bpf_get_netns_cookie` reports it.
pub fn netns_cookie() -> io::Result<u64> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket, and a u64 with its size as the output buffer.
    let r = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjGetAttr { pathname: c_path.as_ptr() as u64, ..Default::default() };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: on success BPF_OBJ_GET returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Atomically makes the link run `prog` instead of its current program.
pub(crate) fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr =
        LinkUpdateAttr { link_fd: link.as_raw_fd() as u32, new_prog_fd: prog.as_raw_fd() as u32, ..Default::default() };
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

/// Creates an array map of `u32` keys and values (a Maglev map: `flags` carries BPF_F_INNER_MAP).
pub(crate) fn create_u32_array(max_entries: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr =
        MapCreateAttr { map_type: BPF_MAP_TYPE_ARRAY, key_size: 4, value_size: 4, max_entries, map_flags: flags };
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: on success BPF_MAP_CREATE returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Writes `values[i]` at `keys[i]` of a `u32` -> `u32` map in one system call, in order.
pub(crate) fn update_u32_batch(map: BorrowedFd<'_>, keys: &[u32], values: &[u32]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_BATCH, &mut attr).map(|_| ())
}

/// Attaches `prog` to the tcx ingress or egress hook of interface `ifindex`; returns the link.
pub(crate) fn tcx_attach(prog: BorrowedFd<'_>, ifindex: u32, ingress: bool) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateTcxAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: if ingress { BPF_TCX_INGRESS } else { BPF_TCX_EGRESS },
        ..Default::default()
    };
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: on success BPF_LINK_CREATE returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Pins any bpf object (here: links) at `path` on a bpffs.
pub(crate) fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjGetAttr { pathname: c_path.as_ptr() as u64, bpf_fd: fd.as_raw_fd() as u32, ..Default::default() };
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// The interface a tcx link is attached to; 0 once the interface is gone (the link is defunct).
pub(crate) fn tcx_link_ifindex(link: BorrowedFd<'_>) -> io::Result<u32> {
    // struct bpf_link_info: type, id, prog_id, then a union aligned on 8 whose tcx member starts
    // with the ifindex. 64 bytes covers every member this kernel knows.
    let mut info = [0u64; 8];
    let mut attr = InfoAttr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info[2] as u32)
}

/// Detaches a link from its hook now, whoever still holds it (a pin, another fd). Unpinning alone
/// detaches only once the last reference goes, after an RCU grace period and a work item.
pub(crate) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = [link.as_raw_fd() as u32, 0u32];
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}
