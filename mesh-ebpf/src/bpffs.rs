//! Finding (or making) the bpf filesystem the mesh pins under.

use std::io;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, BPF_FS_MAGIC};

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// Where pins live: `configured` (which must be a bpffs), else `/sys/fs/bpf` when it is one,
/// else a bpffs mounted at `<fallback_root>/bpffs`. Pins in that last one last only as long as
/// the daemon's mount namespace, so a restarted agent in a fresh namespace cannot adopt them: a
/// lab harness mounts a bpffs per node in the host's namespace and passes it as `configured`.
pub fn ensure_bpffs(fallback_root: &Path, configured: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(path) = configured {
        if !is_bpffs(path) {
            return Err(io::Error::other(format!(
                "{} is not a bpf filesystem (mount -t bpf bpf {})",
                path.display(),
                path.display()
            )));
        }
        return Ok(path.to_path_buf());
    }
    let system = Path::new("/sys/fs/bpf");
    if is_bpffs(system) {
        return Ok(system.to_path_buf());
    }
    let own = fallback_root.join("bpffs");
    if !is_bpffs(&own) {
        std::fs::create_dir_all(&own)
            .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", own.display())))?;
        nix::mount::mount(Some("bpf"), &own, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .map_err(|e| io::Error::other(format!("mount a bpf filesystem on {}: {e}", own.display())))?;
    }
    Ok(own)
}
