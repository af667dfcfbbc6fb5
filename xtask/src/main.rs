//! Project automation, run as `cargo xtask <command>` (alias in .cargo/config.toml).
//!
//! - `ci`: what CI checks, in order: `cargo fmt --check`, `cargo clippy --all-targets -- -D warnings`,
//!   `cargo test --workspace`. Stops at the first failure with its exit code.

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        _ => {
            eprintln!("usage: cargo xtask ci\n  ci    fmt --check, clippy -D warnings, and the whole test suite");
            ExitCode::from(2)
        }
    }
}

fn run(step: &str, cmd: &mut Command) -> Result<(), ExitCode> {
    let t0 = Instant::now();
    eprintln!("==> {step}");
    let status = cmd.status().map_err(|e| {
        eprintln!("xtask: cannot run {step}: {e}");
        ExitCode::FAILURE
    })?;
    eprintln!("<== {step}: {} in {:.1}s", if status.success() { "ok" } else { "FAILED" }, t0.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8)) }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ci() -> ExitCode {
    let steps: [(&str, Vec<&str>); 3] = [
        ("cargo fmt --check", vec!["fmt", "--all", "--check"]),
        ("cargo clippy --all-targets -- -D warnings", vec!["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        ("cargo test --workspace", vec!["test", "--workspace"]),
    ];
    for (name, args) in steps {
        if let Err(code) = run(name, cargo().args(&args)) {
            return code;
        }
    }
    ExitCode::SUCCESS
}
