//! Test-only sandboxes for privileged tests. Each sandbox lives on its own thread, which unshares
//! a mount namespace (made private so nothing propagates to the host) and a network namespace,
//! then mounts its own bpffs and cgroup2 on fresh temporary directories. The host's /sys/fs/bpf,
//! /sys/fs/cgroup and root network namespace are never touched. Mounts die with the namespace;
//! the guard removes the directories and the test cgroup even when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Sandbox {
    pub root: PathBuf,
    pub bpffs: PathBuf,
    pub cgroup_root: PathBuf,
    /// A cgroup made for this test inside `cgroup_root`.
    pub cgroup: PathBuf,
}

impl Sandbox {
    /// Must run on a thread of its own: the namespaces stay with the calling thread.
    pub fn new() -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("shoal-ebpf-{}-{n}", std::process::id()));
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET).expect("unshare mount+net namespaces");
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .expect("make mounts private");
        let bpffs = root.join("bpffs");
        let cgroup_root = root.join("cgroup");
        std::fs::create_dir_all(&bpffs).unwrap();
        std::fs::create_dir_all(&cgroup_root).unwrap();
        let mut sandbox = Sandbox { root, bpffs, cgroup_root, cgroup: PathBuf::new() };
        mount(Some("bpf"), &sandbox.bpffs, Some("bpf"), MsFlags::empty(), None::<&str>).expect("mount bpffs");
        mount(Some("cgroup2"), &sandbox.cgroup_root, Some("cgroup2"), MsFlags::empty(), None::<&str>)
            .expect("mount cgroup2");
        sandbox.cgroup = sandbox.cgroup_root.join(format!("shoal-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&sandbox.cgroup).expect("create test cgroup");
        run("ip", &["link", "set", "lo", "up"]);
        sandbox
    }

    pub fn pin_dir(&self, node: &str) -> PathBuf {
        crate::pin_dir(&self.bpffs, node)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The cgroup outlives the mount namespace unless removed; it can only go once empty,
        // which it is once the test's child processes were reaped.
        if !self.cgroup.as_os_str().is_empty() {
            let _ = std::fs::remove_dir(&self.cgroup);
        }
        let _ = umount2(&self.cgroup_root, MntFlags::MNT_DETACH);
        let _ = umount2(&self.bpffs, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs a setup tool inside the sandbox's namespaces (tests only) and insists it succeeds.
pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `f` on a fresh thread inside a fresh sandbox and propagates its panic.
pub fn in_sandbox<F: FnOnce(&Sandbox) + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        let sandbox = Sandbox::new();
        f(&sandbox);
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

/// Puts the child into `cgroup` before it execs, so even its first connect() is seen.
pub fn command_in_cgroup(program: &str, cgroup: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
    let mut cmd = Command::new(program);
    // SAFETY: the closure only makes async-signal-safe libc calls (open, write, close) on memory
    // prepared before fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Writing "0" moves the writing process itself.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}
