//! Privileged tests: real tasks in real namespaces and cgroups. They need root (CI runs as root)
//! and fail, never skip, without it. Tools they use: `sh`, `curl`, `nsenter`, `ip`, `tail`.
//!
//! The test binary stands in for `shoal`: a constructor in `.init_array` sends `__task-init` and
//! `__echo` to the runtime before libtest's main runs, exactly as `shoal`'s main does, so the
//! tests need no other binary built. With `SHOAL_BIN` set they run through that binary instead.

use std::collections::HashSet;
use std::ffi::{c_char, c_int, CStr};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;

#[used]
#[link_section = ".init_array"]
static DISPATCH_HIDDEN_SUBCOMMANDS: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = dispatch;

extern "C" fn dispatch(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if argc < 2 || argv.is_null() {
        return;
    }
    // SAFETY: glibc calls .init_array entries with main's argc and argv; argc >= 2 means argv[1]
    // is a valid NUL-terminated string that lives for the whole process.
    let first = unsafe { CStr::from_ptr(*argv.add(1)) };
    match first.to_bytes() {
        b"__task-init" => task_init_main(),
        b"__echo" => crate::echo::echo_main(std::env::args().skip(2).collect()),
        _ => {}
    }
}

const ROOT: &str = "/run/shoal-mesh-agent-tests";

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        assert!(nix::unistd::geteuid().is_root(), "the runtime tests need root (CI runs them as root)");
        // `SHOAL_BIN` runs the same tests through the real binary's dispatch.
        let exe = std::env::var_os("SHOAL_BIN").map(PathBuf::from);
        let exe = exe.unwrap_or_else(|| std::env::current_exe().expect("test binary path"));
        Runtime::with_exe(Path::new(ROOT), &exe).expect("runtime")
    })
}

fn launch(command: &[&str]) -> TaskLaunch {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let id = format!("t{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    TaskLaunch {
        task_name: format!("svc.1.{id}"),
        task_id: id,
        node_name: "node-a".into(),
        image: "busybox:latest".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..TaskLaunch::default()
    }
}

/// Kills and removes a task when its test ends, also when the test panics half-way.
struct Cleanup(RunningTask);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let task = &self.0;
        let _ = task.signal(libc::SIGKILL);
        task.inner.cgroup.kill();
        for _ in 0..250 {
            if task.cgroup_dirs().iter().all(|d| fs::remove_dir(d).is_ok() || !d.exists()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir_all(task.dir());
    }
}

async fn start(l: &TaskLaunch) -> (RunningTask, Cleanup) {
    let task = runtime().start(l).await.expect("start");
    (task.clone(), Cleanup(task))
}

async fn wait_log(task: &RunningTask, needle: &str) -> Vec<LogLine> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = read_logs(&task.logs(), None, None);
        if lines.iter().any(|l| l.line.contains(needle)) {
            return lines;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in the log of {}: {lines:?}", task.id());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ns_link(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("ns link").to_string_lossy().into_owned()
}

/// The processes of a running task: those in its network namespace, each as (pid, start time).
/// Namespace inode numbers are reused once a namespace dies, so after a stop only these
/// snapshots, not the namespace, name the task's processes.
fn members(task: &RunningTask) -> Vec<(i32, u64)> {
    let netns = ns_link(task.pid(), "net");
    let pids = fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    let pids =
        pids.filter(|pid| fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l.to_string_lossy() == netns));
    let members: Vec<(i32, u64)> = pids.filter_map(|pid| Some((pid, sys::start_time(pid)?))).collect();
    assert!(members.iter().any(|(pid, _)| *pid == task.pid()), "PID 1 not among {members:?}");
    members
}

fn assert_gone(task: &RunningTask, members: &[(i32, u64)]) {
    let left: Vec<_> = members.iter().filter(|(pid, start)| sys::start_time(*pid) == Some(*start)).collect();
    assert_eq!(left, Vec::<&(i32, u64)>::new(), "processes of the task left");
    for dir in task.cgroup_dirs() {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
}

fn nsenter(pid: i32, args: &[&str]) -> String {
    let out = std::process::Command::new("nsenter").arg("-t").arg(pid.to_string()).arg("-n").args(args).output();
    let out = out.expect("run nsenter");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn task_gets_namespaces_files_limits_and_logs() {
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap();
    let script = "echo hi; hostname; cat /etc/resolv.conf; grep -c . /etc/hosts; ls /sys/class/net; echo end; sleep 30";
    let mut l = launch(&["sh", "-c", script]);
    l.resolv_conf = "nameserver 192.0.2.53\noptions ndots:0\n".into();
    l.memory_limit = 64 << 20;
    l.nano_cpus = 500_000_000;
    let (task, _cleanup) = start(&l).await;
    let lines = wait_log(&task, "end").await;
    let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["hi", l.task_name.as_str(), "nameserver 192.0.2.53", "options ndots:0", "3", "lo", "end"]);
    assert!(lines.iter().all(|l| l.stream == Stream::Stdout));
    assert_eq!(fs::read_to_string("/etc/resolv.conf").unwrap(), host_resolv, "host resolv.conf changed");
    let pid = task.pid();
    for kind in ["net", "mnt", "uts", "pid", "ipc"] {
        assert_ne!(ns_link(pid, kind), ns_link(std::process::id() as i32, kind), "{kind} namespace shared");
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")), "not PID 1 in its ns: {status}");
    let lo = nsenter(pid, &["ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains("UP"), "lo is not up: {lo}");
    assert_eq!(nsenter(pid, &["ip", "-o", "link"]).lines().count(), 1, "a new netns has only lo");
    assert_eq!(task.memory_limit(), Some(64 << 20));
    assert_eq!(task.cpu_limit(), Some((50_000, 100_000)));
    let procs = members(&task);
    // `sh` as PID 1 has no SIGTERM handler, so the kernel drops SIGTERM: the grace runs out.
    let started = Instant::now();
    let exit = task.stop(Duration::from_millis(300)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((exit.code, exit.signal, exit.error), (137, Some(9), None));
    assert_gone(&task, &procs);
    assert!(runtime().list().contains(&l.task_id));
    runtime().remove(&l.task_id).await.expect("remove");
    assert!(!task.dir().exists() && !runtime().list().contains(&l.task_id));
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_grace() {
    let handles = launch(&["sh", "-c", "trap 'echo bye; exit 3' TERM; echo ready; while :; do sleep 0.05; done"]);
    let ignores = launch(&["sh", "-c", "trap '' TERM; echo ready; sh -c 'trap \"\" TERM; sleep 60' & wait"]);
    let ((a, _cleanup_a), (b, _cleanup_b)) = (start(&handles).await, start(&ignores).await);
    wait_log(&a, "ready").await;
    wait_log(&b, "ready").await;
    let procs_a = members(&a);
    let mut procs_b = members(&b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while procs_b.len() < 3 {
        assert!(Instant::now() < deadline, "the inner sleep never started: {procs_b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        procs_b = members(&b);
    }
    let started = Instant::now();
    let exit = a.stop(Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(3), "SIGTERM was not delivered");
    assert_eq!((exit.code, exit.signal), (3, None));
    wait_log(&a, "bye").await;
    let started = Instant::now();
    let exit = b.stop(Duration::from_millis(500)).await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!((exit.code, exit.signal), (137, Some(9)));
    assert_gone(&a, &procs_a);
    assert_gone(&b, &procs_b);
    for id in [a.id(), b.id()] {
        runtime().remove(id).await.unwrap();
    }
}

#[tokio::test]
async fn env_user_workdir_and_exec() {
    let mut l = launch(&["sh", "-c", "echo \"$FOO|$(pwd)|$(id -u):$(id -g)|$HOME|$SHOAL_NODE_NAME\"; exec sleep 30"]);
    l.env = vec!["FOO=bar baz".into()];
    l.user = "65534:65534".into();
    l.dir = "/tmp".into();
    l.hostname = "custom-host".into();
    let (task, _cleanup) = start(&l).await;
    wait_log(&task, "|").await;
    let line = &read_logs(&task.logs(), None, None)[0].line;
    assert!(line.starts_with("bar baz|/tmp|65534:65534|"), "{line}");
    assert!(line.ends_with("|node-a"), "{line}");
    let t = Duration::from_secs(5);
    let sh = |s: &str| vec!["CMD-SHELL".to_string(), s.to_string()];
    assert_eq!(task.exec_health(&sh("exit 0"), t).await.unwrap(), 0);
    assert_eq!(task.exec_health(&sh("exit 3"), t).await.unwrap(), 3);
    assert_eq!(task.exec_health(&["CMD".into(), "false".into()], t).await.unwrap(), 1);
    let argv: Vec<String> = ["sh", "-c", "hostname; echo $FOO; id -u; pwd; tr '\\0' ' ' </proc/1/cmdline"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = task.exec(&argv, t).await.unwrap();
    // The exec'd shell sees the task's PID 1 (`sleep`) through the task's own /proc.
    assert_eq!((out.code, out.output.as_str()), (0, "custom-host\nbar baz\n65534\n/tmp\nsleep 30 "));
    let missing = task.exec(&["no-such-tool".to_string()], t).await.unwrap();
    assert_eq!(missing.code, 127);
    assert!(missing.output.contains("executable file not found in $PATH"), "{}", missing.output);
    let started = Instant::now();
    let slow = task.exec_health(&sh("sleep 20"), Duration::from_millis(300)).await;
    assert!(matches!(slow, Err(RuntimeError::Timeout(_))), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The timed-out check is killed: only PID 1 is left in the task's cgroup.
    let procs = task.cgroup_dirs()[0].join("cgroup.procs");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(&procs).unwrap().lines().count() > 1 {
        assert!(Instant::now() < deadline, "health check outlived its timeout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.stop(Duration::from_millis(100)).await;
    assert!(matches!(task.exec_health(&sh("true"), t).await, Err(RuntimeError::NotRunning)));
    runtime().remove(task.id()).await.unwrap();
}

#[tokio::test]
async fn echo_image_answers_http_and_udp_inside_the_task() {
    let mut l = launch(&[]);
    l.image = "shoal/echo:latest".into();
    l.args =
        ["--http", "--tcp", "8080", "--udp", "5353", "--exit-delay", "400"].iter().map(|s| s.to_string()).collect();
    let (task, _cleanup) = start(&l).await;
    wait_log(&task, "listening").await;
    let pid = task.pid();
    let body = nsenter(pid, &["curl", "-s", "http://127.0.0.1:8080/"]);
    assert!(body.starts_with(&format!("{} on node-a from 127.0.0.1:", l.task_name)), "{body}");
    let codes = ["-o", "/dev/null", "-w", "%{http_code}\n"];
    let url = "http://127.0.0.1:8080/health";
    let keep_alive = nsenter(pid, &[&["curl", "-s"][..], &codes, &[url, "--next", "-s"], &codes, &[url]].concat());
    assert_eq!(keep_alive, "200\n200\n");
    // /tmp is private to an echo task: the flag file is the task's, not the host's.
    let touch = ["CMD".to_string(), "touch".to_string(), "/tmp/unhealthy".to_string()];
    assert_eq!(task.exec_health(&touch, Duration::from_secs(5)).await.unwrap(), 0);
    assert!(!Path::new("/tmp/unhealthy").exists());
    assert_eq!(nsenter(pid, &[&["curl", "-s"][..], &codes, &[url]].concat()), "500\n");
    let procs = members(&task);
    let udp = std::thread::spawn(move || {
        let ns = fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.send_to(b"x", "127.0.0.1:5353").unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), sock.local_addr().unwrap())
    });
    let (reply, me) = udp.join().unwrap();
    assert_eq!(reply, format!("{} on node-a from {me}\n", l.task_name));
    let started = Instant::now();
    let exit = task.stop(Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!((exit.code, exit.signal), (0, None));
    assert_gone(&task, &procs);
    wait_log(&task, "exiting in 400 ms").await;
    runtime().remove(task.id()).await.unwrap();
}

#[tokio::test]
async fn start_errors_are_reported_and_leave_nothing() {
    let cases: &[(TaskLaunch, &str)] = &[
        (launch(&[]), "no command specified"),
        (launch(&["/nonexistent/prog"]), "stat /nonexistent/prog: no such file or directory"),
        (launch(&["no-such-binary-xyz"]), "exec: \"no-such-binary-xyz\": executable file not found in $PATH"),
        (TaskLaunch { user: "no-such-user".into(), ..launch(&["true"]) }, "unable to find user no-such-user"),
        (TaskLaunch { dir: "/nonexistent".into(), ..launch(&["true"]) }, "working directory \"/nonexistent\""),
        (TaskLaunch { netns: Some("/nonexistent".into()), ..launch(&["true"]) }, "cannot open network namespace"),
        (TaskLaunch { task_id: "../x".into(), ..launch(&["true"]) }, "invalid task id"),
    ];
    let before: HashSet<_> = cgroup_children();
    for (l, want) in cases {
        let err = runtime().start(l).await.expect_err(want).to_string();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
        let _ = runtime().remove(&l.task_id).await;
    }
    let left: Vec<_> = cgroup_children().difference(&before).cloned().collect();
    assert!(left.iter().all(|c| !cases.iter().any(|(l, _)| c.ends_with(&l.task_id))), "{left:?}");
}

fn cgroup_children() -> HashSet<String> {
    let parent = runtime().inner.cgroups.clone();
    let mut dirs = HashSet::new();
    for dir in parent.parents() {
        for e in fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().is_dir()) {
            dirs.insert(e.path().to_string_lossy().into_owned());
        }
    }
    dirs
}

#[tokio::test]
async fn adopt_finds_running_tasks_after_a_restart() {
    let l = launch(&["sh", "-c", "echo one; sleep 0.5; echo two; exec sleep 30"]);
    let (task, _cleanup) = start(&l).await;
    wait_log(&task, "one").await;
    // A second runtime on the same root is what a restarted agent builds.
    let restarted = Runtime::with_exe(Path::new(ROOT), &runtime().inner.exe).unwrap();
    assert!(restarted.list().contains(&l.task_id));
    let adopted = restarted.adopt(&l.task_id).await.expect("still running");
    assert_eq!(adopted.pid(), task.pid());
    wait_log(&adopted, "two").await;
    let procs = members(&task);
    let exit = adopted.stop(Duration::from_millis(200)).await;
    assert_eq!(exit.code, 137);
    assert_eq!(task.wait().await.code, 137);
    assert_gone(&adopted, &procs);
    assert!(restarted.adopt(&l.task_id).await.is_none());
    assert_eq!(restarted.exit_status(&l.task_id).map(|s| s.code), Some(137));
    assert!(restarted.adopt("no-such-task").await.is_none());
    restarted.remove(&l.task_id).await.unwrap();
    // What a daemon does on shutdown: every task of its root stops.
    let root = Path::new(ROOT).join(format!("stop-all-{}", std::process::id()));
    let others = Runtime::with_exe(&root, &runtime().inner.exe).unwrap();
    let mut started = Vec::new();
    for _ in 0..2 {
        started.push(others.start(&launch(&["sleep", "30"])).await.unwrap());
    }
    others.stop_all(Duration::from_millis(100)).await;
    for task in &started {
        assert_eq!(task.wait().await.code, 137);
        assert!(task.cgroup_dirs().iter().all(|d| !d.exists()));
    }
    // The cgroup hierarchies a runtime mounts under its root are all it leaves behind.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for point in
        mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&*root.to_string_lossy()))
    {
        nix::mount::umount(point).unwrap();
    }
    fs::remove_dir_all(others.root()).unwrap();
}

#[tokio::test]
async fn task_joins_a_given_netns_and_is_oom_killed_at_its_limit() {
    let name = format!("shoal-rt-{}", std::process::id());
    let status = std::process::Command::new("ip").args(["netns", "add", &name]).status().unwrap();
    assert!(status.success(), "ip netns add");
    let path = format!("/run/netns/{name}");
    let mut l = launch(&["sh", "-c", "echo start; head -c 200000000 /dev/zero | tail -n 1 >/dev/null; echo survived"]);
    l.netns = Some(path.clone().into());
    l.memory_limit = 32 << 20;
    let (task, _cleanup) = start(&l).await;
    use std::os::unix::fs::MetadataExt;
    let ns_inode = fs::metadata(&path).unwrap().ino();
    let link = ns_link(task.pid(), "net");
    let _ = std::process::Command::new("ip").args(["netns", "del", &name]).status();
    assert_eq!(link, format!("net:[{ns_inode}]"));
    let exit = tokio::time::timeout(Duration::from_secs(20), task.wait()).await.expect("tail was not OOM-killed");
    let lines: Vec<String> = read_logs(&task.logs(), None, None).into_iter().map(|l| l.line).collect();
    assert!(exit.oom_killed, "{exit:?} {lines:?}");
    for dir in task.cgroup_dirs() {
        assert!(!dir.exists());
    }
    runtime().remove(task.id()).await.unwrap();
}
