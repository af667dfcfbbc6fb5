//! Node-local mode's rules through the iptables command (the `iptables` crate, as node-cache goes
//! through its own wrapper around the same command): each rule checked with `-C` and prepended when
//! missing, deleted on teardown until no copy is left.

use crate::flags::IptablesMode;
use crate::nodelocal::rules::{Backend, Rule, choose_backend};

pub(super) struct Iptables {
    ipt: iptables::IPTables,
    pub(super) backend: Backend,
}

/// Why a rule could not be checked or changed: node-cache's two error kinds.
#[derive(Debug)]
pub(super) struct RuleError {
    pub(super) locked: bool,
    pub(super) msg: String,
}

fn save(cmd: &str) -> Option<String> {
    let out = std::process::Command::new(cmd).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Iptables {
    /// Picks the back end (`-iptables`, or the node's own) and checks that its command runs.
    pub(super) fn new(mode: IptablesMode, ipv6: bool) -> Result<Iptables, String> {
        let save_cmd = |b: Backend| format!("{}-save", b.command(ipv6));
        let backend = match mode {
            IptablesMode::Legacy => Backend::Legacy,
            IptablesMode::Nft => Backend::Nft,
            IptablesMode::Auto => {
                let legacy = save(&save_cmd(Backend::Legacy));
                let nft = save(&save_cmd(Backend::Nft));
                choose_backend(legacy.as_deref(), nft.as_deref())
            }
        };
        let cmd = backend.command(ipv6);
        match std::process::Command::new(cmd).arg("--version").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(format!("{cmd} --version failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => {
                return Err(format!(
                    "cannot run {cmd}: {e}; node-local mode needs iptables 1.8 (legacy and nft) in the image, or -setupiptables=false"
                ));
            }
        }
        Ok(Iptables { ipt: iptables::IPTables { cmd, has_check: true, has_wait: true, is_numeric: false }, backend })
    }

    fn error(&self, what: &str, r: &Rule, e: &dyn std::fmt::Display) -> RuleError {
        let msg = format!("{} -t {} {what} {} {}: {e}", self.ipt.cmd, r.table, r.chain, r.spec);
        RuleError { locked: msg.contains("xtables lock"), msg }
    }

    pub(super) fn exists(&self, r: &Rule) -> Result<bool, RuleError> {
        self.ipt.exists(r.table, r.chain, &r.spec).map_err(|e| self.error("-C", r, &e))
    }

    /// Prepends the rule unless it is there; true when it was added.
    pub(super) fn ensure(&self, r: &Rule) -> Result<bool, RuleError> {
        if self.exists(r)? {
            return Ok(false);
        }
        self.ipt.insert(r.table, r.chain, &r.spec, 1).map_err(|e| self.error("-I", r, &e))?;
        Ok(true)
    }

    /// Deletes every copy of the rule.
    pub(super) fn remove(&self, r: &Rule) -> Result<(), RuleError> {
        // Bounded: a rule that survives its deletions this often is someone else's to fight over.
        for _ in 0..64 {
            if !self.exists(r)? {
                return Ok(());
            }
            self.ipt.delete(r.table, r.chain, &r.spec).map_err(|e| self.error("-D", r, &e))?;
        }
        Err(RuleError {
            locked: false,
            msg: format!("{} -t {} {} {}: still present after 64 deletions", self.ipt.cmd, r.table, r.chain, r.spec),
        })
    }
}
