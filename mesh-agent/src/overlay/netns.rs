//! Network namespaces: running netlink inside one, and creating or removing a named one.
//!
//! A thread's network namespace decides which kernel tables a netlink socket opened on it speaks
//! to. Tokio worker threads must never change namespace (every later task on them would follow),
//! so each job here runs on a fresh OS thread that `setns()`es first, opens its own rtnetlink
//! connection afterwards, and drives the job on a current-thread runtime of its own.

use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::Handle;

use super::OverlayError;

/// Enters `netns` (if any) on the calling thread.
fn enter(netns: Option<&Path>) -> Result<(), OverlayError> {
    let Some(path) = netns else { return Ok(()) };
    let file = File::open(path).map_err(|source| OverlayError::Netns { path: path.to_owned(), source })?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| OverlayError::Netns { path: path.to_owned(), source: io::Error::from(e) })
}

/// Runs `job` with a rtnetlink handle bound to `netns` (`None`: the namespace of the calling
/// thread, which for the agent is the process's namespace). Must run on a thread of its own.
fn run_here<F, Fut, R>(netns: Option<PathBuf>, job: F) -> Result<R, OverlayError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<R, OverlayError>>,
{
    enter(netns.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(OverlayError::Io)?;
    runtime.block_on(async move {
        // Opened after setns: the socket stays bound to this namespace for its lifetime.
        let (connection, handle, _) = rtnetlink::new_connection().map_err(OverlayError::Io)?;
        tokio::spawn(connection);
        job(handle).await
    })
}

/// Runs a netlink job in `netns` on a dedicated thread without blocking the caller's runtime.
pub(crate) async fn in_netns<F, Fut, R>(netns: Option<PathBuf>, job: F) -> Result<R, OverlayError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, OverlayError>>,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shoal-netns".into())
        .spawn(move || {
            let _ = tx.send(run_here(netns, job));
        })
        .map_err(OverlayError::Io)?;
    // A dropped sender means the job panicked.
    rx.await.unwrap_or(Err(OverlayError::Thread))
}

/// Runs a netlink job in `netns` on a dedicated thread, blocking the caller until it is done.
pub(crate) fn in_netns_blocking<F, Fut, R>(netns: Option<PathBuf>, job: F) -> Result<R, OverlayError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, OverlayError>>,
    R: Send + 'static,
{
    std::thread::Builder::new()
        .name("shoal-netns".into())
        .spawn(move || run_here(netns, job))
        .map_err(OverlayError::Io)?
        .join()
        .unwrap_or(Err(OverlayError::Thread))
}

/// Runs a plain closure on a thread inside `netns` (for /proc/sys writes and nf_tables calls,
/// which act on the calling thread's namespace).
pub(crate) async fn on_thread_in_netns<F, R>(netns: Option<PathBuf>, job: F) -> Result<R, OverlayError>
where
    F: FnOnce() -> Result<R, OverlayError> + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shoal-netns".into())
        .spawn(move || {
            let _ = tx.send(enter(netns.as_deref()).and_then(|()| job()));
        })
        .map_err(OverlayError::Io)?;
    rx.await.unwrap_or(Err(OverlayError::Thread))
}

/// Creates a new network namespace kept alive by a bind mount at `path` (what `ip netns add`
/// does), with `lo` up. Fails if `path` already exists.
pub fn create_netns(path: &Path) -> Result<(), OverlayError> {
    let fail = |source: io::Error| OverlayError::Netns { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    File::options().write(true).create_new(true).open(path).map_err(fail)?;
    let target = path.to_owned();
    let created = std::thread::spawn(move || -> Result<(), OverlayError> {
        let fail = |e: nix::Error| OverlayError::Netns { path: target.clone(), source: io::Error::from(e) };
        // unshare on this thread only: the new namespace is this thread's until the bind mount
        // below pins it, and the thread ends right after.
        unshare(CloneFlags::CLONE_NEWNET).map_err(fail)?;
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(fail)?;
        Ok(())
    })
    .join()
    .unwrap_or(Err(OverlayError::Thread));
    if let Err(e) = created {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    let loopback_up = in_netns_blocking(Some(path.to_owned()), |handle| async move {
        let lo = super::links::by_name(&handle, "lo").await?.ok_or(OverlayError::Thread)?;
        super::links::set_up(&handle, lo.index).await
    });
    if let Err(e) = loopback_up {
        let _ = remove_netns(path);
        return Err(e);
    }
    Ok(())
}

/// Removes a namespace made by [`create_netns`]: unmounts `path` and deletes it. The namespace
/// itself ends when its last process and device leave.
pub fn remove_netns(path: &Path) -> Result<(), OverlayError> {
    let fail = |source: io::Error| OverlayError::Netns { path: path.to_owned(), source };
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(fail(io::Error::from(e))),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(e)),
    }
}
