//! `ndots`: the cluster DNS server / node-local cache binary.
//!
//! Flags follow CoreDNS's and node-cache's spelling (`resolver::flags`), so a Deployment or a
//! DaemonSet can switch images without touching its args. `-localip` selects node-local mode.

use std::process::ExitCode;

use resolver::flags::{self, Flags};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let f: Flags = match flags::parse(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ndots: {e}\n{}", flags::USAGE);
            return ExitCode::from(2);
        }
    };
    if f.version {
        println!("ndots {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if f.help {
        println!("{}", flags::USAGE);
        return ExitCode::SUCCESS;
    }
    if f.plugins {
        println!("Server types:\n  dns\n\nPlugins:\n  {}", resolver::config::PLUGIN_ORDER.join("\n  "));
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube-client logs every failed request of a retrying watch at ERROR; ndots says once that
            // the watch failed, with the cause, and once that it resumed (NDOTS_LOG brings them back).
            tracing_subscriber::EnvFilter::try_from_env("NDOTS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; a file or a log collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let conf = f.corefile();
    if f.check {
        let checked = match &f.node_local {
            Some(nl) => resolver::driver::nodelocal::check(nl, &conf).map(|_| ()),
            None => resolver::driver::check_config(&conf).map(|_| ()),
        };
        return match checked {
            Ok(()) => {
                println!("{}: ok", conf.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ndots: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let seed = f.seed.or_else(|| std::env::var("NDOTS_SEED").ok()?.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let workers = f.workers.or_else(|| std::env::var("NDOTS_WORKERS").ok()?.parse().ok().filter(|n| *n >= 1));
    let workers = workers.unwrap_or_else(resolver::driver::default_workers);
    // CoreDNS's -pidfile: written once every socket is bound, removed on the way out.
    let pidfile = f.pidfile.clone();
    let on_listening: Option<Box<dyn FnOnce() + Send>> = pidfile.clone().map(|p| {
        Box::new(move || {
            if let Err(e) = std::fs::write(&p, format!("{}\n", std::process::id())) {
                eprintln!("ndots: cannot write the pidfile {}: {e}", p.display());
            }
        }) as Box<dyn FnOnce() + Send>
    });
    let opts = resolver::driver::Options { conf, seed, workers, freebind: false, on_listening, dns_services: None };
    let result = match &f.node_local {
        Some(nl) => resolver::driver::nodelocal::run(nl, opts),
        None => resolver::driver::run(opts, std::future::pending()),
    };
    if let Some(p) = pidfile {
        let _ = std::fs::remove_file(p);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ndots: {e}");
            ExitCode::FAILURE
        }
    }
}
