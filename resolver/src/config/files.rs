//! Where the files a Corefile names are read from: the machine's filesystem (the binary), or only
//! the files a simulated node has (the simulator), so that no simulated run reads the host.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy)]
pub enum Files<'a> {
    /// The machine's filesystem; relative names are taken from this directory.
    Disk(&'a Path),
    /// Only these files exist, each under the exact name a Corefile gives it (a simulated node's
    /// `/etc/resolv.conf`); any other name is a missing file.
    Only(&'a [(&'a str, &'a str)]),
}

impl Files<'_> {
    /// The path a name stands for (kept in the configuration for files read later, such as a
    /// kubeconfig).
    pub fn path(&self, name: &str) -> PathBuf {
        match self {
            Files::Disk(base) => base.join(name),
            Files::Only(_) => PathBuf::from(name),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        match self {
            Files::Disk(base) => base.join(name).is_file(),
            Files::Only(files) => files.iter().any(|(n, _)| *n == name),
        }
    }

    /// The file's text, or why it cannot be read (naming the file).
    pub fn read(&self, name: &str) -> Result<String, String> {
        match self {
            Files::Disk(base) => {
                let p = base.join(name);
                std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            }
            Files::Only(files) => match files.iter().find(|(n, _)| *n == name) {
                Some((_, text)) => Ok((*text).to_string()),
                None => {
                    let have: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
                    Err(format!(
                        "cannot read {name}: a simulated node has only {}",
                        if have.is_empty() { "no files".into() } else { have.join(", ") }
                    ))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_node_has_only_the_files_it_is_given() {
        let only = Files::Only(&[("/etc/resolv.conf", "nameserver 10.255.0.2\n")]);
        assert!(only.exists("/etc/resolv.conf"));
        assert_eq!(only.read("/etc/resolv.conf").as_deref(), Ok("nameserver 10.255.0.2\n"));
        // A file the machine running the simulation has is not the node's.
        assert!(!only.exists("/etc/hostname"));
        let e = only.read("/etc/hostname").expect_err("missing");
        assert!(e.contains("/etc/hostname") && e.contains("/etc/resolv.conf"), "{e}");
        assert_eq!(only.path("db.example"), PathBuf::from("db.example"));
    }
}
