//! Helpers for the integration tests: run real `ndots` processes on loopback and query them with
//! `dig` (Debian's dnsutils, installed by .ci/run) or raw sockets.

#![allow(dead_code)] // Each test file uses its own subset of the helpers.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = u.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Ndots {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub conf: PathBuf,
}

impl Drop for Ndots {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ndots-test-{tag}-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Starts `ndots` with a Corefile and extra files (`{PORT}` replaced by a fresh port in both), waits until
/// it answers on that port.
pub fn start(tag: &str, corefile: &str, files: &[(&str, &str)]) -> Ndots {
    start_env(tag, corefile, files, &[])
}

/// `start` with environment variables for the process (`NDOTS_WORKERS`, ...).
pub fn start_env(tag: &str, corefile: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Ndots {
    let port = free_port();
    let dir = temp_dir(tag);
    for (name, text) in files {
        // An imported file may hold server blocks on the same port.
        std::fs::write(dir.join(name), text.replace("{PORT}", &port.to_string())).expect("write file");
    }
    let conf = dir.join("Corefile");
    std::fs::write(&conf, corefile.replace("{PORT}", &port.to_string())).expect("write Corefile");
    let child = Command::new(env!("CARGO_BIN_EXE_ndots"))
        .arg("-conf")
        .arg(&conf)
        .env("NDOTS_LOG", "warn")
        .envs(env.iter().copied())
        // The `log` plugin writes to standard output: kept in the test's directory.
        .stdout(std::fs::File::create(dir.join("stdout")).expect("stdout file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ndots");
    let n = Ndots { child, port, dir, conf };
    wait_ready(port);
    n
}

/// Waits until something answers DNS over UDP on the port.
pub fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    // QDCOUNT 0: every server answers FORMERR at once, without forwarding anything.
    let mut q = raw_query(0x4242, "ready.invalid.", 1, false);
    q[5] = 0;
    while Instant::now() < deadline {
        let _ = sock.send_to(&q, ("127.0.0.1", port));
        let mut buf = [0u8; 512];
        if sock.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("ndots did not answer on port {port} within 10 s");
}

/// Runs dig against 127.0.0.1:port and returns its stdout.
pub fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=10", "+tries=1"])
        .args(args)
        .output()
        .expect("dig must be installed (apt-get install -y dnsutils; .ci/run does it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dig +short, lines sorted.
pub fn short(port: u16, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = dig(port, &a).lines().map(str::to_string).collect();
    v.sort();
    v
}

pub fn status(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| format!("no answer: {out}"))
}

/// A wire-format query with an optional OPT record.
pub fn raw_query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    m
}

/// Sends raw bytes over UDP and returns the answer, if any arrives within `wait`.
pub fn udp_exchange(port: u16, payload: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    sock.send_to(payload, ("127.0.0.1", port)).expect("send");
    let mut buf = vec![0u8; 65535];
    sock.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}

pub fn rcode(msg: &[u8]) -> u8 {
    msg[3] & 0x0f
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends SIGTERM to the process.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}

/// A plain HTTP/1.0 GET on loopback: the response, headers and body.
#[allow(dead_code)] // Not every test binary scrapes HTTP.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}
