//! One cgroup per task, carrying `--limit-memory` and `--limit-cpu`.
//!
//! Tasks are grouped in cgroup v2 under `shoal/<task id>`: one directory holds the whole process
//! tree and `cgroup.kill` ends it. Where /sys/fs/cgroup is still v1 (as on the CI machine) the
//! runtime uses the hybrid layout's /sys/fs/cgroup/unified, or else mounts a cgroup2 hierarchy
//! under its own root. A controller can be bound to only one
//! hierarchy at a time, though, so on such hosts `memory` and `cpu` are missing from v2: the limits
//! then go into `shoal/<task id>` of that controller's v1 hierarchy, as runc does on hybrid hosts.
//! When the agent's mount namespace hides /sys/fs/cgroup (`ip netns exec` remounts /sys) the
//! runtime mounts what it needs itself; mounting an existing hierarchy again reuses it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
use serde::{Deserialize, Serialize};

/// The CFS period Docker uses for `--cpus`.
const CPU_PERIOD_US: i64 = 100_000;

/// Where the runtime creates task groups.
#[derive(Clone, Debug)]
pub(crate) struct Cgroups {
    v2_mount: PathBuf,
    v2_parent: PathBuf,
    v2_memory: bool,
    v2_cpu: bool,
    v1_memory: Option<PathBuf>,
    v1_cpu: Option<PathBuf>,
}

/// A task's groups: always one in v2, plus v1 groups holding limits v2 cannot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskCgroup {
    pub(crate) v2: PathBuf,
    pub(crate) v1: Vec<PathBuf>,
}

impl Cgroups {
    /// Finds or mounts the hierarchies and creates the `shoal` parent groups.
    pub(crate) fn setup(root: &Path) -> io::Result<Cgroups> {
        // The host's own mount first (unified, or the hybrid layout's `unified`): a mount of our
        // own in a shared mount namespace would outlive the agent (and its data root).
        let host = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].into_iter().map(PathBuf::from);
        let v2_mount = match host.into_iter().find(|p| is_fs(p, CGROUP2_SUPER_MAGIC)) {
            Some(mounted) => mounted,
            None => {
                let at = root.join("cgroup2");
                ensure_mounted(&at, "cgroup2", None, CGROUP2_SUPER_MAGIC)?;
                at
            }
        };
        let available = read_words(&v2_mount.join("cgroup.controllers"));
        let wanted: Vec<&str> =
            ["cpu", "memory", "pids"].into_iter().filter(|c| available.iter().any(|a| a == c)).collect();
        // One group per runtime below `shoal/`: the node's eBPF socket programs (service VIPs)
        // attach there, and several lab nodes on one machine share the single cgroup2 hierarchy.
        let v2_parent = v2_mount.join("shoal").join(runtime_group(root));
        create_dir(&v2_mount.join("shoal"))?;
        create_dir(&v2_parent)?;
        for dir in [&v2_mount, &v2_mount.join("shoal"), &v2_parent] {
            for c in &wanted {
                // Already enabled is fine; a refusal only means we fall back to v1 below.
                let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        let enabled = read_words(&v2_parent.join("cgroup.subtree_control"));
        let v2_memory = enabled.iter().any(|c| c == "memory");
        let v2_cpu = enabled.iter().any(|c| c == "cpu");
        let v1_memory = if v2_memory { None } else { v1_parent(root, "memory")? };
        let v1_cpu = if v2_cpu { None } else { v1_parent(root, "cpu")? };
        Ok(Cgroups { v2_mount, v2_parent, v2_memory, v2_cpu, v1_memory, v1_cpu })
    }

    /// Where the cgroup2 hierarchy is mounted (its root group) in this mount namespace.
    pub(crate) fn v2_mount(&self) -> &Path {
        &self.v2_mount
    }

    /// The cgroup2 group every task of this runtime lives under.
    pub(crate) fn v2_parent(&self) -> &Path {
        &self.v2_parent
    }

    /// Creates the groups of a task and writes its limits (`0` means none).
    pub(crate) fn create(&self, task_id: &str, memory: i64, nano_cpus: i64) -> Result<TaskCgroup, super::RuntimeError> {
        let mut group = TaskCgroup { v2: self.v2_parent.join(task_id), v1: Vec::new() };
        let result = self.fill(&mut group, task_id, memory, nano_cpus);
        if result.is_err() {
            let _ = group.remove_dirs();
        }
        result.map(|()| group)
    }

    fn fill(&self, group: &mut TaskCgroup, id: &str, memory: i64, nano_cpus: i64) -> Result<(), super::RuntimeError> {
        use super::RuntimeError::{Io, NoController};
        let io = |what: &str, dir: &Path| {
            let context = format!("cannot set up cgroup {}: {what}", dir.display());
            move |source| Io { context, source }
        };
        create_dir(&group.v2).map_err(io("mkdir", &group.v2))?;
        if memory > 0 {
            let (dir, file) = match (&self.v1_memory, self.v2_memory) {
                (_, true) => (group.v2.clone(), "memory.max"),
                (Some(parent), false) => (self.v1_dir(group, parent, id)?, "memory.limit_in_bytes"),
                (None, false) => return Err(NoController("memory")),
            };
            fs::write(dir.join(file), memory.to_string()).map_err(io(file, &dir))?;
        }
        if nano_cpus > 0 {
            let quota = (nano_cpus * CPU_PERIOD_US / 1_000_000_000).max(1000);
            match (&self.v1_cpu, self.v2_cpu) {
                (_, true) => fs::write(group.v2.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))
                    .map_err(io("cpu.max", &group.v2))?,
                (Some(parent), false) => {
                    let dir = self.v1_dir(group, parent, id)?;
                    fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())
                        .map_err(io("cfs_period", &dir))?;
                    fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).map_err(io("cfs_quota", &dir))?;
                }
                (None, false) => return Err(NoController("cpu")),
            }
        }
        Ok(())
    }

    fn v1_dir(&self, group: &mut TaskCgroup, parent: &Path, id: &str) -> Result<PathBuf, super::RuntimeError> {
        let dir = parent.join(id);
        create_dir(&dir).map_err(|source| super::RuntimeError::Io {
            context: format!("cannot set up cgroup {}: mkdir", dir.display()),
            source,
        })?;
        group.v1.push(dir.clone());
        Ok(dir)
    }
}

/// The name of a runtime's group under `shoal/`: `n` + 12 hex digits of FNV-1a over the
/// runtime's root directory, stable across restarts of the same node.
fn runtime_group(root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in root.as_os_str().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("n{:012x}", hash & 0xffff_ffff_ffff)
}

#[cfg(test)]
impl Cgroups {
    /// The parent directories task groups are created in.
    pub(crate) fn parents(&self) -> Vec<PathBuf> {
        std::iter::once(&self.v2_parent).chain(&self.v1_memory).chain(&self.v1_cpu).cloned().collect()
    }
}

impl TaskCgroup {
    /// The `cgroup.procs` files a task's PID 1 writes itself into.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        std::iter::once(&self.v2).chain(&self.v1).map(|d| d.join("cgroup.procs")).collect()
    }

    /// Every directory of the group (tests check they are gone after a stop).
    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        std::iter::once(&self.v2).chain(&self.v1).cloned().collect()
    }

    /// The memory limit in force in bytes (rounded to pages by the kernel), if any.
    pub(crate) fn memory_limit(&self) -> Option<u64> {
        let v2 = fs::read_to_string(self.v2.join("memory.max")).ok();
        let v1 = self.v1.iter().find_map(|d| fs::read_to_string(d.join("memory.limit_in_bytes")).ok());
        // v1 reports "no limit" as a huge page-aligned number.
        v2.or(v1)?.trim().parse().ok().filter(|&n: &u64| n < i64::MAX as u64 / 2)
    }

    /// `(quota, period)` in microseconds, if a CPU limit is in force.
    pub(crate) fn cpu_limit(&self) -> Option<(i64, i64)> {
        if let Ok(s) = fs::read_to_string(self.v2.join("cpu.max")) {
            let mut it = s.split_whitespace();
            return Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?));
        }
        let dir = self.v1.iter().find(|d| d.join("cpu.cfs_quota_us").exists())?;
        let read = |f: &str| fs::read_to_string(dir.join(f)).ok()?.trim().parse::<i64>().ok();
        Some((read("cpu.cfs_quota_us")?, read("cpu.cfs_period_us")?)).filter(|(q, _)| *q > 0)
    }

    /// Whether the kernel OOM-killed a process of the task.
    pub(crate) fn oom_killed(&self) -> bool {
        let events =
            [self.v2.join("memory.events")].into_iter().chain(self.v1.iter().map(|d| d.join("memory.oom_control")));
        events.filter_map(|f| fs::read_to_string(f).ok()).any(|s| {
            s.lines().any(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0)
        })
    }

    /// SIGKILLs every process in the group.
    pub(crate) fn kill(&self) {
        if fs::write(self.v2.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        // Kernels before 5.14 have no cgroup.kill.
        for pid in read_words(&self.v2.join("cgroup.procs")).iter().filter_map(|p| p.parse().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Kills what is left and removes the directories, waiting up to 5 s for the processes to go.
    pub(crate) async fn destroy(&self) -> io::Result<()> {
        let mut last = Ok(());
        for _ in 0..250 {
            self.kill();
            last = self.remove_dirs();
            if last.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    }

    fn remove_dirs(&self) -> io::Result<()> {
        let mut result = Ok(());
        for dir in self.dirs() {
            match fs::remove_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
        }
        result
    }
}

/// `<hierarchy>/shoal` in the v1 hierarchy holding `controller`, or `None` if that controller
/// is not bound to v1 (nor to v2's enabled set: then limits on it are refused).
fn v1_parent(root: &Path, controller: &str) -> io::Result<Option<PathBuf>> {
    let Some(options) = v1_hierarchy_options(&fs::read_to_string("/proc/cgroups")?, controller) else {
        return Ok(None);
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mount_point = match find_v1_mount(&mountinfo, controller) {
        Some(p) => p,
        None => {
            let at = root.join(format!("cgroup-{}", options.replace(',', "-")));
            ensure_mounted(&at, "cgroup", Some(&options), CGROUP_SUPER_MAGIC)?;
            at
        }
    };
    let parent = mount_point.join("shoal");
    create_dir(&parent)?;
    Ok(Some(parent))
}

/// The controllers that share `controller`'s v1 hierarchy (`cpu` or `cpu,cpuacct`): mounting
/// that hierarchy again needs exactly this option list.
fn v1_hierarchy_options(proc_cgroups: &str, controller: &str) -> Option<String> {
    let rows: Vec<(&str, &str)> = proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        })
        .collect();
    let hierarchy = rows.iter().find(|(name, _)| *name == controller)?.1;
    if hierarchy == "0" {
        return None;
    }
    Some(rows.iter().filter(|(_, h)| *h == hierarchy).map(|(n, _)| *n).collect::<Vec<_>>().join(","))
}

/// The mount point of the whole v1 hierarchy holding `controller`, from /proc/self/mountinfo.
fn find_v1_mount(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let whole = left.get(3) == Some(&"/");
        let is_it = right.first() == Some(&"cgroup") && right.get(2)?.split(',').any(|o| o == controller);
        (whole && is_it).then(|| PathBuf::from(left[4].replace("\\040", " ")))
    })
}

fn ensure_mounted(at: &Path, fstype: &str, options: Option<&str>, magic: FsType) -> io::Result<()> {
    fs::create_dir_all(at)?;
    if is_fs(at, magic) {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(fstype), at, Some(fstype), flags, options)
        .map_err(|e| io::Error::other(format!("cannot mount {fstype} at {}: {e}", at.display())))
}

fn is_fs(path: &Path, magic: FsType) -> bool {
    statfs(path).map(|s| s.filesystem_type() == magic).unwrap_or(false)
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path).map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
        cpuset\t3\t1\t1\ncpu\t1\t1\t1\ncpuacct\t1\t1\t1\nmemory\t4\t13\t1\nhugetlb\t0\t1\t1\n";

    #[test]
    fn v1_options_name_the_whole_hierarchy() {
        assert_eq!(v1_hierarchy_options(PROC_CGROUPS, "cpu").as_deref(), Some("cpu,cpuacct"));
        assert_eq!(v1_hierarchy_options(PROC_CGROUPS, "memory").as_deref(), Some("memory"));
        assert_eq!(v1_hierarchy_options(PROC_CGROUPS, "hugetlb"), None);
        assert_eq!(v1_hierarchy_options(PROC_CGROUPS, "rdma"), None);
    }

    #[test]
    fn v1_mounts_are_found_by_super_options() {
        let info = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:8 - cgroup cgroup rw,cpu\n\
            31 25 0:27 /sub /elsewhere rw - cgroup cgroup rw,memory\n\
            32 25 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(find_v1_mount(info, "memory"), Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(find_v1_mount(info, "cpu"), Some(PathBuf::from("/sys/fs/cgroup/cpu")));
        assert_eq!(find_v1_mount(info, "cpuacct"), None);
    }
}
