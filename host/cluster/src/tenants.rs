//! The tenants a storage node has taken writes for, for `/admin/tenants`.
//!
//! The index keys every series by tenant but has no cheap "list tenants" read, so the node
//! notes each tenant on its first write and keeps the set in a small file beside the data
//! (`cluster-tenants.txt`, one `accountID:projectID` per line, replaced atomically when a new
//! tenant appears). The hot path is one lock and one set lookup per write request. A tenant
//! stays listed after its series are deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_storage::Tenant;

/// File name of the tenant list inside the data directory.
pub const TENANTS_FILE: &str = "cluster-tenants.txt";

/// Set of tenants, optionally persisted.
#[derive(Debug, Default)]
pub struct TenantRegistry {
    path: Option<PathBuf>,
    set: Mutex<BTreeSet<Tenant>>,
}

/// Parses `accountID[:projectID]`.
pub fn parse_tenant(text: &str) -> Option<Tenant> {
    let (a, p) = text.split_once(':').unwrap_or((text, "0"));
    Some(Tenant {
        account_id: a.trim().parse().ok()?,
        project_id: p.trim().parse().ok()?,
    })
}

impl TenantRegistry {
    /// A registry kept in memory only (tests, tools).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads `dir/cluster-tenants.txt` if present; new tenants are written there. Lines that
    /// do not parse are skipped with a warning rather than failing start-up.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(TENANTS_FILE);
        let mut set = BTreeSet::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    match parse_tenant(line) {
                        Some(t) => {
                            set.insert(t);
                        }
                        None => tracing::warn!(file = %path.display(), "skipping bad tenant line {line:?}"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            path: Some(path),
            set: Mutex::new(set),
        })
    }

    /// Notes that `tenant` wrote; persists the set when the tenant is new.
    pub fn note(&self, tenant: Tenant) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(tenant) {
            return;
        }
        if let Some(path) = &self.path {
            let text: String = set
                .iter()
                .map(|t| format!("{}:{}\n", t.account_id, t.project_id))
                .collect();
            // Losing the list costs only an entry in /admin/tenants, never data: log and go on.
            if let Err(e) = strata_fsutil::atomic_write(path, text.as_bytes()) {
                tracing::warn!(file = %path.display(), "cannot save the tenant list: {e}");
            }
        }
    }

    /// The tenants, sorted.
    pub fn list(&self) -> Vec<Tenant> {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_persist_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let r = TenantRegistry::open(dir.path()).unwrap();
        assert!(r.list().is_empty());
        let t = |a, p| Tenant {
            account_id: a,
            project_id: p,
        };
        r.note(t(7, 1));
        r.note(t(0, 0));
        r.note(t(7, 1));
        drop(r);
        let mut text = std::fs::read_to_string(dir.path().join(TENANTS_FILE)).unwrap();
        assert_eq!(text, "0:0\n7:1\n");
        text.push_str("garbage\n42\n");
        std::fs::write(dir.path().join(TENANTS_FILE), text).unwrap();
        let r = TenantRegistry::open(dir.path()).unwrap();
        assert_eq!(r.list(), vec![t(0, 0), t(7, 1), t(42, 0)]);
        assert_eq!(parse_tenant("1:x"), None);
    }
}
