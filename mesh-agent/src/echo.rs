//! `shoal/echo`, the image built into the binary (`shoal __echo`): a small server that tells each
//! client which task answered, on which node, and which client address it saw.
//!
//! Every reply is one line, `<task name> on <node> from <client ip:port>`, with the names taken
//! from `SHOAL_TASK_NAME` and `SHOAL_NODE_NAME` (the runtime sets both). Flags:
//! `--tcp PORT` and `--udp PORT` (repeatable; 80 when not given), `--http` (TCP speaks
//! HTTP/1.1 with keep-alive: `GET /health` answers 200, or 500 when `--fail-health` is given or
//! `/tmp/unhealthy` exists in the task; any other path gets the line), `--slow MS` (delay every
//! reply) and `--exit-delay MS` (on SIGTERM keep serving this long, then exit). In plain TCP mode
//! a connection gets the line and is closed; a UDP datagram gets the line back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};

/// A request head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Options {
    tcp: Vec<u16>,
    udp: Vec<u16>,
    http: bool,
    slow: Duration,
    fail_health: bool,
    exit_delay: Duration,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = |what: &str| -> Result<u64, String> {
                let v = it.next().ok_or_else(|| format!("{flag} needs {what}"))?;
                v.parse().map_err(|_| format!("invalid {what} for {flag}: {v:?}"))
            };
            match flag.as_str() {
                "--tcp" => o.tcp.push(u16::try_from(value("a port")?).map_err(|_| "port out of range")?),
                "--udp" => o.udp.push(u16::try_from(value("a port")?).map_err(|_| "port out of range")?),
                "--slow" => o.slow = Duration::from_millis(value("milliseconds")?),
                "--exit-delay" => o.exit_delay = Duration::from_millis(value("milliseconds")?),
                "--http" => o.http = true,
                "--fail-health" => o.fail_health = true,
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        for ports in [&mut o.tcp, &mut o.udp] {
            if ports.is_empty() {
                ports.push(80);
            }
        }
        Ok(o)
    }
}

struct Echo {
    opts: Options,
    task: String,
    node: String,
    /// Set on SIGTERM: every HTTP response says `Connection: close` from then on.
    draining: std::sync::atomic::AtomicBool,
    /// Open HTTP connections; the server exits once they are all closed (or a bound passes).
    open: tokio::sync::watch::Sender<usize>,
}

/// How long a draining server waits for its keep-alive clients to take their `Connection: close`.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Counts an open connection for as long as it lives.
struct OpenConnection<'a>(&'a tokio::sync::watch::Sender<usize>);

impl<'a> OpenConnection<'a> {
    fn new(open: &'a tokio::sync::watch::Sender<usize>) -> Self {
        open.send_modify(|n| *n += 1);
        OpenConnection(open)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Echo {
    fn line(&self, peer: SocketAddr) -> String {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        format!("{} on {} from {peer}\n", self.task, self.node)
    }

    fn healthy(&self) -> bool {
        !self.opts.fail_health && !Path::new("/tmp/unhealthy").exists()
    }

    async fn pause(&self) {
        if !self.opts.slow.is_zero() {
            tokio::time::sleep(self.opts.slow).await;
        }
    }
}

/// Entry point of the hidden `shoal __echo` subcommand; `args` are the flags after it.
pub fn echo_main(args: Vec<String>) -> ! {
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("shoal-echo: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let code = match runtime {
        Ok(rt) => rt.block_on(serve(opts)),
        Err(e) => {
            eprintln!("shoal-echo: {e}");
            1
        }
    };
    std::process::exit(code)
}

async fn serve(opts: Options) -> i32 {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let task = env("SHOAL_TASK_NAME").or_else(|| env("HOSTNAME")).unwrap_or_else(|| "shoal-echo".into());
    let node = env("SHOAL_NODE_NAME").unwrap_or_else(|| "unknown".into());
    let (open, _) = tokio::sync::watch::channel(0usize);
    let echo = Arc::new(Echo { opts, task, node, draining: false.into(), open });
    // Handlers first: as a task's PID 1 we only get the SIGTERM we handle.
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("shoal-echo: cannot handle signals: {e}");
            return 1;
        }
    };
    for &port in &echo.opts.tcp {
        let listener = match bind_tcp(port).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("cannot listen on tcp port {port}: {e}")),
        };
        tokio::spawn(accept_loop(listener, echo.clone()));
    }
    for &port in &echo.opts.udp {
        let socket = match bind_udp(port).await {
            Ok(s) => Arc::new(s),
            Err(e) => return fail(&format!("cannot listen on udp port {port}: {e}")),
        };
        tokio::spawn(udp_loop(socket, echo.clone()));
    }
    let mode = if echo.opts.http { "http" } else { "tcp" };
    println!("shoal-echo: {} listening on {mode} {:?}, udp {:?}", echo.task, echo.opts.tcp, echo.opts.udp);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    if !echo.opts.exit_delay.is_zero() {
        println!("shoal-echo: signal received, exiting in {} ms", echo.opts.exit_delay.as_millis());
        tokio::time::sleep(echo.opts.exit_delay).await;
    }
    drain(&echo).await;
    println!("shoal-echo: exiting");
    0
}

/// A graceful HTTP shutdown: keep-alive clients get `Connection: close` on their next request,
/// so none of them sends a request into a connection we are closing; exit when all are closed.
async fn drain(echo: &Echo) {
    if !echo.opts.http {
        return;
    }
    echo.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut open = echo.open.subscribe();
    let _ = tokio::time::timeout(DRAIN_LIMIT, open.wait_for(|n| *n == 0)).await;
}

fn fail(message: &str) -> i32 {
    eprintln!("shoal-echo: {message}");
    1
}

/// Dual-stack where IPv6 exists, IPv4 only where it does not.
async fn bind_tcp(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(("::", port)).await {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind(("0.0.0.0", port)).await,
    }
}

async fn bind_udp(port: u16) -> std::io::Result<UdpSocket> {
    match UdpSocket::bind(("::", port)).await {
        Ok(s) => Ok(s),
        Err(_) => UdpSocket::bind(("0.0.0.0", port)).await,
    }
}

async fn accept_loop(listener: TcpListener, echo: Arc<Echo>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let echo = echo.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if echo.opts.http {
                        http_conn(stream, peer, &echo).await;
                    } else {
                        echo.pause().await;
                        let mut stream = stream;
                        let _ = stream.write_all(echo.line(peer).as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
            // Out of fds or similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn udp_loop(socket: Arc<UdpSocket>, echo: Arc<Echo>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((_, peer)) = socket.recv_from(&mut buf).await else { continue };
        let (socket, echo) = (socket.clone(), echo.clone());
        tokio::spawn(async move {
            echo.pause().await;
            let _ = socket.send_to(echo.line(peer).as_bytes(), peer).await;
        });
    }
}

/// One HTTP/1.x request head, as much of it as the echo server cares about.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    body_len: usize,
}

fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut connection = String::new();
    let mut body_len = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            connection = value.to_ascii_lowercase();
        }
    }
    let keep_alive = match version {
        "HTTP/1.1" => !connection.contains("close"),
        "HTTP/1.0" => connection.contains("keep-alive"),
        _ => return None,
    };
    Some(Request { method: method.into(), path: path.into(), keep_alive, body_len })
}

async fn http_conn(mut stream: TcpStream, peer: SocketAddr, echo: &Echo) {
    let _open = OpenConnection::new(&echo.open);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let Some(req) = parse_head(&String::from_utf8_lossy(&buf[..head_end])) else {
            let _ =
                stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            return;
        };
        // Skip the body, whose content does not matter.
        while buf.len() < head_end + req.body_len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + req.body_len);
        echo.pause().await;
        let health = req.path == "/health" || req.path.starts_with("/health?");
        let (status, body) = match (health, health && echo.healthy()) {
            (true, true) => ("200 OK", "ok\n".to_string()),
            (true, false) => ("500 Internal Server Error", "unhealthy\n".to_string()),
            (false, _) => ("200 OK", echo.line(peer)),
        };
        let keep_alive = req.keep_alive && !echo.draining.load(std::sync::atomic::Ordering::SeqCst);
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nServer: shoal-echo\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
            body.len()
        );
        if req.method != "HEAD" {
            response.push_str(&body);
        }
        if stream.write_all(response.as_bytes()).await.is_err() || !keep_alive {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags() {
        let o = Options::parse(&args(&["--http", "--tcp", "8080", "--tcp", "81", "--slow", "250"])).unwrap();
        assert_eq!(o.tcp, [8080, 81]);
        assert_eq!(o.udp, [80]);
        assert!(o.http && !o.fail_health);
        assert_eq!(o.slow, Duration::from_millis(250));
        let o = Options::parse(&args(&["--udp", "53", "--fail-health", "--exit-delay", "1500"])).unwrap();
        assert_eq!(
            (o.tcp, o.udp, o.fail_health, o.exit_delay),
            (vec![80], vec![53], true, Duration::from_millis(1500))
        );
        for bad in [&["--tcp"][..], &["--tcp", "70000"], &["--slow", "x"], &["--bogus"]] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_heads() {
        let r = parse_head("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert_eq!(r, Request { method: "GET".into(), path: "/health".into(), keep_alive: true, body_len: 3 });
        assert!(!parse_head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().keep_alive);
        assert!(!parse_head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(parse_head("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n").unwrap().keep_alive);
        assert_eq!(parse_head("garbage\r\n\r\n"), None);
    }

    fn test_echo(opts: Options) -> Arc<Echo> {
        let (open, _) = tokio::sync::watch::channel(0usize);
        Arc::new(Echo { opts, task: "web.1.x".into(), node: "n1".into(), draining: false.into(), open })
    }

    async fn request(c: &mut TcpStream) -> String {
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn draining_closes_keep_alive_connections_after_their_next_answer() {
        let echo = test_echo(Options { http: true, ..Options::default() });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(listener, echo.clone()));
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(request(&mut c).await.contains("Connection: keep-alive\r\n"));
        let drained = tokio::spawn({
            let echo = echo.clone();
            async move { drain(&echo).await }
        });
        // The open connection keeps the server from exiting until it got its `close`.
        tokio::task::yield_now().await;
        assert!(!drained.is_finished());
        let answer = request(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.contains("Connection: close\r\n"), "{answer}");
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).await.unwrap(), 0, "the server closes after the answer");
        tokio::time::timeout(Duration::from_secs(2), drained).await.expect("drain ends once all are closed").unwrap();
    }

    #[tokio::test]
    async fn http_keep_alive_and_health() {
        let opts = Options { http: true, ..Options::default() };
        let echo = test_echo(opts);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(listener, echo));
        let mut c = TcpStream::connect(addr).await.unwrap();
        let me = c.local_addr().unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("\r\n\r\nweb.1.x on n1 from {me}\n")), "{text}");
        assert!(text.ends_with("Connection: close\r\n\r\nok\n"), "{text}");
    }
}
