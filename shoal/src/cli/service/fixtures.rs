//! Services and tasks shaped like the seeds' `docker service ls` / `docker service ps` output,
//! for the rendering tests.

use chrono::{DateTime, Duration, Utc};
use control::objects::service::*;
use control::objects::Version;

pub fn now() -> DateTime<Utc> {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

/// A service of `shoal/echo:latest`; `replicas: None` makes it global. `running` tasks of
/// `replicas` (global: of `running`) are up, as `GET /services?status=true` reports.
pub fn service(id: &str, name: &str, replicas: Option<u64>, running: u64, ports: &[(u32, u32)]) -> Service {
    let mut spec = ServiceSpec { name: name.into(), ..Default::default() };
    spec.task_template.container_spec.image = "shoal/echo:latest".into();
    match replicas {
        Some(n) => spec.mode.replicated = Some(ReplicatedService { replicas: Some(n) }),
        None => spec.mode.global = Some(GlobalService {}),
    }
    let ports: Vec<PortConfig> = ports
        .iter()
        .map(|&(published, target)| PortConfig { published_port: published, target_port: target, ..Default::default() })
        .collect();
    spec.endpoint_spec = Some(EndpointSpec { ports: ports.clone(), ..Default::default() });
    Service {
        id: id.into(),
        version: Version { index: 11 },
        created_at: now(),
        updated_at: now(),
        spec,
        previous_spec: None,
        endpoint: Endpoint { ports, ..Default::default() },
        update_status: None,
        service_status: Some(ServiceStatus {
            running_tasks: running,
            desired_tasks: replicas.unwrap_or(running),
            completed_tasks: 0,
        }),
    }
}

/// A task whose status changed `ago` before [`now`].
pub fn task(id: &str, service_id: &str, slot: u64, node: &str, state: TaskState, ago: Duration) -> Task {
    let desired = if state <= TaskState::Running { TaskState::Running } else { TaskState::Shutdown };
    let at = now() - ago;
    let mut spec = TaskSpec::default();
    spec.container_spec.image = "instavote/vote:movies".into();
    Task {
        id: id.into(),
        version: Version { index: 3 },
        created_at: at,
        updated_at: at,
        name: String::new(),
        labels: Default::default(),
        spec,
        service_id: service_id.into(),
        slot,
        node_id: node.into(),
        status: TaskStatus { timestamp: at, state, ..Default::default() },
        desired_state: desired,
        networks_attachments: Vec::new(),
    }
}

/// Slot 1 updated twice (two shut-down predecessors), slot 2 failing, one global-style task.
pub fn history_tasks() -> Vec<Task> {
    let mut old = task("76z1q06wkwmfa3vi3takbzyja", "svcvote", 1, "n2", TaskState::Shutdown, Duration::seconds(10));
    old.spec.container_spec.image = "instavote/vote:latest@sha256:0123456789".into();
    let older = task("2izr8nj1b6rpasb2ma1fm8au5", "svcvote", 1, "n1", TaskState::Shutdown, Duration::minutes(3));
    let mut failed = task("esqzhtcnhbeggm6vqzgg2in1d", "svcvote", 2, "n2", TaskState::Failed, Duration::seconds(75));
    failed.status.err = "task: non-zero exit (1): the process exited while starting".into();
    failed.desired_state = TaskState::Running;
    let mut global = task("8kpimpn23rbblkd9ryo20f3pe", "svcvote", 0, "n1", TaskState::Running, Duration::hours(2));
    global.status.port_status = serde_json::json!({"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "host"}]});
    vec![
        older,
        task("bzbiaatsepuelp5xed2r3buoz", "svcvote", 1, "n1", TaskState::Running, Duration::seconds(5)),
        global,
        failed,
        old,
    ]
}

pub const HISTORY_TABLE: &str = "\
ID             NAME         IMAGE                   NODE      DESIRED STATE   CURRENT STATE               ERROR                              PORTS
bzbiaatsepue   vote.1       instavote/vote:movies   worker1   Running         Running 5 seconds ago                                          
76z1q06wkwmf    \\_ vote.1   instavote/vote:latest   worker2   Shutdown        Shutdown 10 seconds ago                                        
2izr8nj1b6rp    \\_ vote.1   instavote/vote:movies   worker1   Shutdown        Shutdown 3 minutes ago                                         
esqzhtcnhbeg   vote.2       instavote/vote:movies   worker2   Running         Failed about a minute ago   \"task: non-zero exit (1): the …\"   
8kpimpn23rbb   vote.n1      instavote/vote:movies   worker1   Running         Running 2 hours ago                                            *:8080->80/tcp
";

pub const SERVICES_TABLE: &str = "\
ID             NAME      MODE         REPLICAS   IMAGE               PORTS
kc57xffvhul5   mon       global       2/2        shoal/echo:latest   
i0j6wvvtfe13   myweb     replicated   1/1        shoal/echo:latest   
mbiap412jyug   web       replicated   3/3        shoal/echo:latest   *:8080->80/tcp
";
