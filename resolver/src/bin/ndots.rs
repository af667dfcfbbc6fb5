//! `ndots`: the cluster DNS server / node-local cache binary.
//!
//! Flags follow CoreDNS's spelling so a Deployment can switch images without touching its args:
//! `-conf FILE` (also `--conf FILE`, `-conf=FILE`), `-version`. Go's single-dash long flags are not
//! something clap parses, so the handful of flags is read by hand here.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ndots [-conf FILE] [-seed N] [-workers N] [-check] [-version]
  -conf FILE   Corefile to load (default: Corefile)
  -seed N      seed for the server's random choices (default: random; NDOTS_SEED also sets it)
  -workers N   worker threads, each serving every address (default: one per CPU; NDOTS_WORKERS)
  -check       validate the Corefile and cluster state, then exit
  -version     print the version";

fn main() -> ExitCode {
    let mut conf = PathBuf::from("Corefile");
    let mut seed: Option<u64> = std::env::var("NDOTS_SEED").ok().and_then(|s| s.parse().ok());
    let mut check = false;
    let mut workers: Option<usize> = std::env::var("NDOTS_WORKERS").ok().and_then(|s| s.parse().ok());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let flag = arg.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = |what: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("flag -{name} needs {what}"));
        let r: Result<(), String> = match name {
            "conf" => value("a file").map(|v| conf = PathBuf::from(v)),
            "seed" => {
                value("a number").and_then(|v| v.parse().map(|n| seed = Some(n)).map_err(|_| format!("-seed: '{v}' is not a number")))
            }
            "workers" => value("a number").and_then(|v| match v.parse::<usize>() {
                Ok(n) if n >= 1 => {
                    workers = Some(n);
                    Ok(())
                }
                _ => Err(format!("-workers: '{v}' is not a number of at least 1")),
            }),
            "check" => {
                check = true;
                Ok(())
            }
            "version" => {
                println!("ndots {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "h" | "help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => Err(format!("unknown flag '{arg}'")),
        };
        if let Err(e) = r {
            eprintln!("ndots: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NDOTS_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if check {
        return match resolver::driver::check_config(&conf) {
            Ok(_) => {
                println!("{}: ok", conf.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ndots: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let seed = seed.unwrap_or_else(|| fastrand::u64(..));
    let workers = workers.unwrap_or_else(resolver::driver::default_workers);
    let opts = resolver::driver::Options { conf, seed, workers };
    match resolver::driver::run(opts, std::future::pending()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ndots: {e}");
            ExitCode::FAILURE
        }
    }
}
