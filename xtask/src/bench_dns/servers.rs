//! The servers in the comparison, each a caching forwarder to the upstream on its own loopback
//! address (port 53), started in the foreground so its process is the one measured.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::UPSTREAM;

pub struct Server {
    pub name: &'static str,
    pub addr: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Server {
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

/// Every server `all` starts, by name (ndots and the floor always run; the others on request).
pub const NAMES: [&str; 9] =
    ["ndots", "ndots-nodetect", "ndots-cluster", "ndots-forward", "floor", "unbound", "dnsdist", "kresd", "pdns-recursor"];

const PACKAGES: [&str; 6] = ["dnsperf", "dnsutils", "unbound", "dnsdist", "knot-resolver", "pdns-recursor"];

/// Installs dnsperf, dig (readiness checks) and the peers from Debian, without starting their
/// services.
pub fn install() -> Result<(), String> {
    if ["dnsperf", "dig", "unbound", "dnsdist", "kresd", "pdns_recursor"].iter().all(|b| crate::sh(&["which", b]).is_ok()) {
        return Ok(());
    }
    // A policy-rc.d that forbids starting services while the packages install.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let had_policy = policy.exists();
    if !had_policy {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n").map_err(|e| format!("{}: {e}", policy.display()))?;
        let _ = Command::new("chmod").arg("+x").arg(policy).status();
    }
    let r = crate::run(
        "apt-get install dnsperf dnsutils unbound dnsdist knot-resolver pdns-recursor",
        Command::new("apt-get").args(["install", "-y", "-qq"]).args(PACKAGES).env("DEBIAN_FRONTEND", "noninteractive"),
    );
    if !had_policy {
        let _ = std::fs::remove_file(policy);
    }
    r.map_err(|_| "installing the servers failed".to_string())
}

fn write(path: &Path, text: &str) -> PathBuf {
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("bench dns: {}: {e}", path.display());
    }
    path.to_path_buf()
}

/// Every server: ndots and the floor (ours), then the peers.
pub fn all(release: &Path, dir: &Path) -> Vec<Server> {
    let s = |name, addr, program: PathBuf, args: Vec<String>| Server { name, addr, program, args, env: Vec::new() };
    let ndots_conf = write(
        &dir.join("ndots.Corefile"),
        &format!(
            ".:53 {{\n    bind 127.0.0.20\n    cache 3600 {{\n        success 100000\n        denial 100000\n    }}\n    forward . {UPSTREAM}\n}}\n"
        ),
    );
    // The same with the detectors off: what they cost on the hit path.
    let nodetect_conf = write(
        &dir.join("ndots-nodetect.Corefile"),
        &format!(
            ".:53 {{\n    bind 127.0.0.27\n    detect off\n    cache 3600 {{\n        success 100000\n        denial 100000\n    }}\n    forward . {UPSTREAM}\n}}\n"
        ),
    );
    // Cluster DNS: CoreDNS's default Corefile, the API replaced by a cluster-state file.
    let cluster_conf = write(
        &dir.join("ndots-cluster.Corefile"),
        &format!(
            ".:53 {{\n    bind 127.0.0.26\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        cluster_state {}\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 30\n    }}\n    forward . {UPSTREAM}\n    cache 3600\n}}\n",
            dir.join("cluster-state.yaml").display()
        ),
    );
    // Every query a miss: what the node-local cache spends per forwarded query.
    let forward_conf = write(&dir.join("ndots-forward.Corefile"), &format!(".:53 {{\n    bind 127.0.0.25\n    forward . {UPSTREAM}\n}}\n"));
    let unbound_conf = write(
        &dir.join("unbound.conf"),
        &format!(
            "server:\n  interface: 127.0.0.21\n  port: 53\n  do-daemonize: no\n  use-syslog: no\n  username: \"\"\n  chroot: \"\"\n  pidfile: \"\"\n  directory: \"{}\"\n  num-threads: 2\n  so-reuseport: yes\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  msg-cache-size: 64m\n  rrset-cache-size: 128m\n  module-config: \"iterator\"\n  verbosity: 0\nforward-zone:\n  name: \".\"\n  forward-addr: {UPSTREAM}\n",
            dir.display()
        ),
    );
    let dnsdist_conf = write(
        &dir.join("dnsdist.conf"),
        &format!(
            "setLocal('127.0.0.22:53', {{reusePort=true}})\naddLocal('127.0.0.22:53', {{reusePort=true}})\nsetACL({{'127.0.0.0/8'}})\nnewServer({{address='{UPSTREAM}:53', healthCheckMode='lazy'}})\npc = newPacketCache(200000, {{maxTTL=86400, minTTL=0}})\ngetPool(''):setCache(pc)\n"
        ),
    );
    let pdns_dir = dir.join("pdns");
    let _ = std::fs::create_dir_all(&pdns_dir);
    write(&pdns_dir.join("recursor.conf"), "");
    let kresd_dir = dir.join("kresd");
    let _ = std::fs::create_dir_all(&kresd_dir);
    let kresd_conf = write(
        &dir.join("kresd.conf"),
        &format!(
            "net.listen('127.0.0.23', 53, {{ kind = 'dns' }})\ncache.size = 200 * MB\npolicy.add(policy.all(policy.FORWARD('{UPSTREAM}')))\ntrust_anchors.remove('.')\n"
        ),
    );
    vec![
        Server {
            env: vec![("NDOTS_LOG", "warn".into())],
            ..s("ndots", "127.0.0.20", release.join("ndots"), vec!["-conf".into(), ndots_conf.display().to_string()])
        },
        Server {
            env: vec![("NDOTS_LOG", "warn".into())],
            ..s("ndots-nodetect", "127.0.0.27", release.join("ndots"), vec!["-conf".into(), nodetect_conf.display().to_string()])
        },
        Server {
            env: vec![("NDOTS_LOG", "warn".into())],
            ..s("ndots-cluster", "127.0.0.26", release.join("ndots"), vec!["-conf".into(), cluster_conf.display().to_string()])
        },
        Server {
            env: vec![("NDOTS_LOG", "warn".into())],
            ..s("ndots-forward", "127.0.0.25", release.join("ndots"), vec!["-conf".into(), forward_conf.display().to_string()])
        },
        s("floor", "127.0.0.29", release.join("dns-floor"), vec!["127.0.0.29:53".into()]),
        s("unbound", "127.0.0.21", "unbound".into(), vec!["-d".into(), "-c".into(), unbound_conf.display().to_string()]),
        s(
            "dnsdist",
            "127.0.0.22",
            "dnsdist".into(),
            vec!["--supervised".into(), "--disable-syslog".into(), "-C".into(), dnsdist_conf.display().to_string()],
        ),
        s(
            "kresd",
            "127.0.0.23",
            "kresd".into(),
            vec!["-n".into(), "-c".into(), kresd_conf.display().to_string(), kresd_dir.display().to_string()],
        ),
        s(
            "pdns-recursor",
            "127.0.0.24",
            "pdns_recursor".into(),
            [
                "--local-address=127.0.0.24",
                "--daemon=no",
                "--disable-syslog",
                "--threads=2",
                "--allow-from=127.0.0.0/8",
                "--dont-query=",
                "--dnssec=off",
                "--max-negative-ttl=3600",
                &format!("--forward-zones-recurse=.={UPSTREAM}"),
                &format!("--socket-dir={}", dir.display()),
            ]
            .iter()
            .map(|a| a.to_string())
            .chain([format!("--config-dir={}", pdns_dir.display())])
            .collect(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_lists_every_server() {
        let dir = std::env::temp_dir().join("ndots-bench-names");
        let _ = std::fs::create_dir_all(&dir);
        let names: Vec<&str> = super::all(&dir, &dir).iter().map(|s| s.name).collect();
        assert_eq!(names, super::NAMES);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
