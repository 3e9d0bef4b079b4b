//! Checks of a stopped node's data directory that the crash and disk-full tests share.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every part listed by a data partition's or an index table's `parts.json` is a complete
/// directory (call it while the node is down), and nothing was quarantined. With `strict`,
/// every directory beside the listed parts is listed too (an unlisted one is a half-written or
/// orphaned part); a mergeset table's `tmp` work directory may exist, but only empty.
pub fn check_parts(data: &Path, strict: bool) {
    let mut manifests = Vec::new();
    find_manifests(data, &mut manifests);
    assert!(!manifests.is_empty(), "no parts.json under {}", data.display());
    for pj in manifests {
        let dir = pj.parent().expect("parts.json has a directory");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&pj).unwrap_or_else(|e| panic!("cannot read {}: {e}", pj.display())))
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", pj.display()));
        let listed = listed_parts(dir, &json);
        for (base, name) in &listed {
            let p = base.join(name);
            assert!(p.is_dir(), "{} is listed in {} but missing", p.display(), pj.display());
            assert!(entries(&p).len() >= 2, "{} is listed but (nearly) empty", p.display());
        }
        if strict {
            let names: BTreeSet<&str> = listed
                .iter()
                .filter(|(b, _)| b == dir)
                .map(|(_, n)| n.as_str())
                .collect();
            for path in entries(dir) {
                let n = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if n == "tmp" {
                    let left = entries(&path);
                    assert!(
                        left.is_empty(),
                        "half-written parts left in {}: {left:?}",
                        path.display()
                    );
                    continue;
                }
                assert!(
                    !path.is_dir() || names.contains(n.as_str()),
                    "{} is not listed in {}: a half-written or orphaned part",
                    path.display(),
                    pj.display()
                );
            }
        }
    }
    assert!(!data.join("quarantine").exists(), "a part was quarantined");
}

/// (directory, part name) for every part a manifest lists: an index (mergeset) table lists
/// names in its own directory; a data partition lists small parts beside the manifest and big
/// ones under `../../big/<partition>`.
fn listed_parts(dir: &Path, json: &serde_json::Value) -> Vec<(PathBuf, String)> {
    let name = |n: &serde_json::Value| n.as_str().expect("a part name is a string").to_string();
    if let Some(names) = json.as_array() {
        return names.iter().map(|n| (dir.to_path_buf(), name(n))).collect();
    }
    let partition = dir.file_name().expect("a partition directory has a name");
    let big = dir
        .parent()
        .and_then(Path::parent)
        .expect("partitions live under data/small/")
        .join("big")
        .join(partition);
    let small = json["Small"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (dir.to_path_buf(), name(n)));
    let bigs = json["Big"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (big.clone(), name(n)));
    small.chain(bigs).collect()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect()
}

fn find_manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "snapshots") {
                continue;
            }
            find_manifests(&p, out);
        } else if p.file_name().is_some_and(|n| n == "parts.json") {
            out.push(p);
        }
    }
}
