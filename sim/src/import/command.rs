//! The `import` subcommand: read a dump (a file, or `kubectl` against a live context), write the
//! scenario and its state file, load what was written, and say what was assumed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Options, import, library::Rule};

/// What `kubectl` is asked for: everything the importer reads.
pub const KUBECTL_ARGS: &[&str] = &["get", "nodes,pods,services,endpointslices,configmaps,daemonsets,deployments", "-A", "-o", "yaml"];

pub struct Args<'a> {
    pub dump: Option<&'a Path>,
    pub context: Option<&'a str>,
    pub out: &'a Path,
    pub rate: f64,
    pub rules: &'a [String],
    pub name: Option<&'a str>,
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ndots-sim import: {msg}");
    ExitCode::from(2)
}

/// `kubectl get ... --context CTX`: the live cluster's dump.
fn kubectl(context: &str) -> Result<String, String> {
    let kubectl = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
    let out = std::process::Command::new(&kubectl).args(KUBECTL_ARGS).args(["--context", context]).output().map_err(|e| {
        format!(
            "cannot run {}: {e} (install kubectl, or dump the cluster yourself: kubectl {})",
            kubectl.to_string_lossy(),
            KUBECTL_ARGS.join(" ")
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "kubectl {} --context {context} failed: {}",
            KUBECTL_ARGS.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "kubectl printed something that is not UTF-8".into())
}

pub fn run(a: &Args<'_>) -> ExitCode {
    let (text, source) = match (a.dump, a.context) {
        (Some(_), Some(_)) => return fail("give a dump file or --context, not both"),
        (None, None) => return fail(&format!("give a dump file (kubectl {} > cluster.yaml) or --context NAME", KUBECTL_ARGS.join(" "))),
        (Some(p), None) => match std::fs::read_to_string(p) {
            Ok(t) => (t, p.display().to_string()),
            Err(e) => return fail(&format!("cannot read {}: {e}", p.display())),
        },
        (None, Some(ctx)) => match kubectl(ctx) {
            Ok(t) => (t, format!("kubectl context {ctx}")),
            Err(e) => return fail(&e),
        },
    };
    let rules: Result<Vec<Rule>, String> = a.rules.iter().map(|r| r.parse()).collect();
    let rules = match rules {
        Ok(r) => r,
        Err(e) => return fail(&format!("--library {e}")),
    };
    if !(a.rate > 0.0 && a.rate.is_finite()) {
        return fail("--rate: lookups per second per pod, a positive number");
    }
    let stem = a.out.file_stem().map_or("cluster".into(), |s| s.to_string_lossy().to_string());
    let state_name = format!("{stem}.state.yaml");
    let opts = Options { name: a.name.map_or(stem.clone(), str::to_string), rate: a.rate, rules, state_file: state_name.clone() };
    let imported = match import(&text, &source, &opts) {
        Ok(i) => i,
        Err(e) => return fail(&e),
    };
    let state_path: PathBuf = a.out.with_file_name(&state_name);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return fail(&format!("cannot create {}: {e}", dir.display()));
    }
    for (path, body) in [(a.out, &imported.scenario), (state_path.as_path(), &imported.state)] {
        if let Err(e) = std::fs::write(path, body) {
            return fail(&format!("cannot write {}: {e}", path.display()));
        }
    }
    let c = &imported.cluster;
    let pods: usize = c.groups.iter().map(|g| g.count).sum();
    println!("wrote {} and {}", a.out.display(), state_path.display());
    println!(
        "  {} nodes in {} zones, {} kube-proxy, {} x{}{}, {} pods in {} groups",
        c.nodes,
        c.zones.len(),
        c.kube_proxy.mode,
        c.dns.server,
        c.dns.replicas,
        if c.node_local.is_some() { ", node-local-dns" } else { "" },
        pods,
        c.groups.len()
    );
    let from_env = c.groups.iter().filter(|g| !g.names.is_empty()).count();
    println!(
        "  assumed: {} lookups/s per pod; names from the environment for {from_env} of {} groups (edit both in the file)",
        a.rate,
        c.groups.len()
    );
    // What was written must load: a Corefile plugin ndots lacks, say, is named here with its line.
    match crate::file::load(a.out, &[]) {
        Ok(_) => {
            println!("next: ndots-sim run {0} --report out/   and   ndots-sim lint {0}", a.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("the scenario was written but does not load; edit it and run it again:\n{e}")),
    }
}
