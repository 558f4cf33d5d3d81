//! The netlink side of [`crate::nat`]: sending a batch and matching the kernel's acknowledgements
//! to the steps that made it, and dumping a chain's rules to read their counters. Each call opens
//! its own socket, which belongs to the network namespace of the calling thread.

use std::ffi::{c_char, CStr};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use mnl::CbResult;
use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::{FinalizedBatch, ProtoFamily};

use super::NatError;

/// The kernel answers a batch or a dump while we wait; this only bounds a kernel that never does.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// libmnl callback results: go on, or stop `mnl_cb_run` (the reason is kept in `Dump::error`).
const MNL_CB_OK: libc::c_int = 1;
const MNL_CB_ERROR: libc::c_int = -1;

/// Sends `batch` and waits for every acknowledgement; `steps` names the batch's messages in order,
/// so that a refusal says which one failed.
pub(super) fn send_batch(batch: FinalizedBatch, steps: &[String], action: &'static str) -> Result<(), NatError> {
    let socket = open()?;
    let io_err = |source| NatError::Io { action, source };
    socket.send_all(&batch).map_err(io_err)?;

    let seqs = batch.sequence_numbers();
    // Kernels from 6.10 also acknowledge the batch begin and end messages (nftnl asks for it
    // there); the steps are the messages in between.
    let first_step = if seqs.len() == steps.len() + 2 { seqs.start + 1 } else { seqs.start };
    let step_name = |seq: u32| match seq.checked_sub(first_step) {
        None => "batch begin".to_string(),
        Some(i) => steps.get(i as usize).cloned().unwrap_or_else(|| "batch end".to_string()),
    };

    let portid = socket.portid();
    let mut buffer = Buffer::new();
    let mut expected = seqs;
    while !expected.is_empty() {
        for message in socket.recv(buffer.bytes()).map_err(io_err)? {
            let message = message.map_err(io_err)?;
            let seq = header(message).map(|h| h.nlmsg_seq).unwrap_or_default();
            if !expected.contains(&seq) {
                return Err(NatError::BadReply { action, detail: format!("unexpected sequence number {seq}") });
            }
            mnl::cb_run(message, seq, portid).map_err(|source| NatError::Refused {
                action,
                step: step_name(seq),
                source,
            })?;
            // Replies come in order; an acknowledged message acknowledges nothing before it.
            expected.start = seq + 1;
        }
    }
    Ok(())
}

/// The `(packets, bytes)` of every counter in the rules of `table`/`chain` (family `ip`).
pub(super) fn rule_counters(table: &CStr, chain: &CStr) -> Result<Vec<(u64, u64)>, NatError> {
    const ACTION: &str = "read the egress counters";
    let socket = open()?;
    let io_err = |source| NatError::Io { action: ACTION, source };
    let seq = 1;
    let mut request = Buffer::new();
    let len = build_rule_dump(request.bytes(), seq, table, chain);
    socket.send(&request.bytes()[..len]).map_err(io_err)?;

    let portid = socket.portid();
    let mut buffer = Buffer::new();
    let mut dump = Dump { table: table.to_owned(), chain: chain.to_owned(), counters: Vec::new(), error: None };
    loop {
        let n = socket.recv_raw(buffer.bytes()).map_err(io_err)?;
        let result = mnl::cb_run2(&buffer.bytes()[..n], seq, portid, parse_rule, &mut dump);
        if let Some(detail) = dump.error.take() {
            return Err(NatError::BadReply { action: ACTION, detail });
        }
        match result {
            Ok(CbResult::Stop) => return Ok(dump.counters),
            Ok(CbResult::Ok) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(NatError::NotApplied),
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// A netfilter socket with a receive timeout.
fn open() -> Result<mnl::Socket, NatError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NatError::Socket)?;
    let timeout = libc::timeval { tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: the descriptor is the socket's own and stays open for the call; the option value
    // is a live timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(NatError::Socket(io::Error::last_os_error()));
    }
    Ok(socket)
}

/// Writes a `NFT_MSG_GETRULE` dump request for one chain into `buf`; returns its length.
fn build_rule_dump(buf: &mut [u8], seq: u32, table: &CStr, chain: &CStr) -> usize {
    assert!(buf.len() >= nftnl::nft_nlmsg_maxsize() as usize, "buffer smaller than a netlink message");
    // SAFETY: `buf` has room for the largest nf_tables message (checked above) and is aligned for
    // nlmsghdr (a `Buffer`); the rule is allocated, filled with copies of the strings, serialised
    // and freed here, and the header pointer points into `buf`.
    unsafe {
        let header = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            libc::NFT_MSG_GETRULE as u16,
            ProtoFamily::Ipv4 as u16,
            libc::NLM_F_DUMP as u16,
            seq,
        );
        let rule = sys::nftnl_rule_alloc();
        if rule.is_null() {
            // Out of memory for a few bytes: do what the standard library does.
            std::process::abort();
        }
        sys::nftnl_rule_set_str(rule, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
        sys::nftnl_rule_set_str(rule, sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
        sys::nftnl_rule_nlmsg_build_payload(header, rule);
        sys::nftnl_rule_free(rule);
        (*header).nlmsg_len as usize
    }
}

struct Dump {
    table: std::ffi::CString,
    chain: std::ffi::CString,
    counters: Vec<(u64, u64)>,
    error: Option<String>,
}

/// mnl callback for one `NFT_MSG_NEWRULE` message of the dump: collects its counters.
fn parse_rule(message: &libc::nlmsghdr, dump: &mut Dump) -> libc::c_int {
    // SAFETY: `message` is a complete netlink message validated by mnl; the rule and the iterator
    // are allocated, used and freed here, and the strings they return are read before the free.
    unsafe {
        let rule = sys::nftnl_rule_alloc();
        if rule.is_null() {
            std::process::abort();
        }
        if sys::nftnl_rule_nlmsg_parse(message, rule) < 0 {
            sys::nftnl_rule_free(rule);
            dump.error = Some("a rule message does not parse".to_string());
            return MNL_CB_ERROR;
        }
        // The kernel filters the dump by table and chain; checking again costs nothing.
        let table = sys::nftnl_rule_get_str(rule, sys::NFTNL_RULE_TABLE as u16);
        let chain = sys::nftnl_rule_get_str(rule, sys::NFTNL_RULE_CHAIN as u16);
        let ours = !table.is_null()
            && !chain.is_null()
            && CStr::from_ptr(table) == dump.table.as_c_str()
            && CStr::from_ptr(chain) == dump.chain.as_c_str();
        if ours {
            let iter = sys::nftnl_expr_iter_create(rule);
            if iter.is_null() {
                std::process::abort();
            }
            loop {
                let expr = sys::nftnl_expr_iter_next(iter);
                if expr.is_null() {
                    break;
                }
                let name = sys::nftnl_expr_get_str(expr, sys::NFTNL_EXPR_NAME as u16);
                if !name.is_null() && CStr::from_ptr(name) == c"counter" {
                    dump.counters.push((
                        sys::nftnl_expr_get_u64(expr, sys::NFTNL_EXPR_CTR_PACKETS as u16),
                        sys::nftnl_expr_get_u64(expr, sys::NFTNL_EXPR_CTR_BYTES as u16),
                    ));
                }
            }
            sys::nftnl_expr_iter_destroy(iter);
        }
        sys::nftnl_rule_free(rule);
    }
    MNL_CB_OK
}

/// The nlmsghdr at the start of a received message.
fn header(message: &[u8]) -> Option<libc::nlmsghdr> {
    if message.len() < size_of::<libc::nlmsghdr>() {
        return None;
    }
    // SAFETY: the slice holds at least a header; read_unaligned needs no alignment.
    Some(unsafe { message.as_ptr().cast::<libc::nlmsghdr>().read_unaligned() })
}

/// A receive/send buffer as large as the largest nf_tables message, aligned for nlmsghdr (mnl
/// requires it; a `Vec<u8>` does not promise it).
struct Buffer(Vec<u32>);

impl Buffer {
    fn new() -> Self {
        Buffer(vec![0; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(4)])
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the u32 storage is initialised, outlives the borrow, and any byte pattern is a
        // valid u8; the length is the storage's size in bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.0.len() * 4) }
    }
}
