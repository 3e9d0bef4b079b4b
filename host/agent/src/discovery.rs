//! From a loaded configuration to the list of targets: static and file service discovery,
//! then `relabel_configs`, then the URL and the final target labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{LoadedConfig, ScrapeConfig};
use crate::relabel::{self, Labels, Relabel};

/// How a target authenticates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// No credentials.
    None,
    /// Basic auth; the password file is read at every scrape so rotation works.
    Basic {
        /// User.
        username: String,
        /// Password, if given inline.
        password: Option<String>,
        /// Password file.
        password_file: Option<PathBuf>,
    },
    /// `Authorization: <kind> <credentials>`.
    Header {
        /// The scheme, e.g. `Bearer`.
        kind: String,
        /// Credentials, if given inline.
        credentials: Option<String>,
        /// Credentials file.
        credentials_file: Option<PathBuf>,
    },
}

/// Everything needed to scrape one target.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    /// The job name.
    pub job: String,
    /// The full URL scraped.
    pub url: String,
    /// Labels attached to every series of this target (sorted; `job`, `instance`, ...).
    pub labels: Labels,
    /// The labels as discovered, before relabeling.
    pub discovered: Labels,
    /// Scrape interval.
    pub interval: Duration,
    /// Scrape timeout (≤ interval).
    pub timeout: Duration,
    /// Scraped labels win on conflict.
    pub honor_labels: bool,
    /// Use exposed timestamps.
    pub honor_timestamps: bool,
    /// 0: none.
    pub sample_limit: usize,
    /// 0: none.
    pub label_limit: usize,
    /// Compiled metric relabel rules of the job.
    pub metric_relabel: Arc<Vec<Relabel>>,
    /// Credentials.
    pub auth: Auth,
    /// `global.external_labels`.
    pub external_labels: Arc<Labels>,
    /// The job's `tls_config` with resolved paths (`None`: defaults, used for `https` targets).
    pub tls: Option<crate::tls::TlsSettings>,
    /// Identity across reloads: equal keys mean the same scrape loop can keep running.
    pub key: u64,
}

/// A target removed by `relabel_configs`, kept for the targets page.
#[derive(Clone, Debug)]
pub struct DroppedTarget {
    /// The job.
    pub job: String,
    /// Its labels before relabeling.
    pub discovered: Labels,
}

/// The result of discovery.
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    /// Targets to scrape, in configuration order.
    pub targets: Vec<TargetSpec>,
    /// Targets dropped by relabeling.
    pub dropped: Vec<DroppedTarget>,
    /// The file_sd files that were read (watched for changes).
    pub files: Vec<PathBuf>,
    /// Problems that did not stop discovery (unreadable file_sd files, bad targets).
    pub warnings: Vec<String>,
}

/// One group in a file_sd file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Resolves every job of `loaded` into targets.
pub fn discover(loaded: &LoadedConfig) -> Discovered {
    let mut out = Discovered::default();
    let base_dir = loaded.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let external: Labels = loaded
        .config
        .global
        .external_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let external = Arc::new(external);
    for (i, job) in loaded.config.scrape_configs.iter().enumerate() {
        let (interval, timeout) = loaded.interval_and_timeout(i);
        let mut groups: Vec<(Vec<String>, Labels)> = job
            .static_configs
            .iter()
            .map(|s| (s.targets.clone(), to_labels(&s.labels)))
            .collect();
        for sd in &job.file_sd_configs {
            for pattern in &sd.files {
                for file in expand_glob(&base_dir.join(pattern), &mut out.warnings) {
                    match read_file_groups(&file) {
                        Ok(file_groups) => {
                            for g in file_groups {
                                let mut labels = to_labels(&g.labels);
                                relabel::set(&mut labels, "__meta_filepath", file.display().to_string());
                                groups.push((g.targets, labels));
                            }
                        }
                        Err(message) => out.warnings.push(message),
                    }
                    out.files.push(file);
                }
            }
        }
        let metric_relabel = Arc::new(loaded.metric_relabel[i].clone());
        let auth = auth_of(job, &base_dir);
        let tls = job.tls_config.as_ref().map(|t| crate::tls::TlsSettings {
            ca_file: t.ca_file.as_ref().map(|p| base_dir.join(p)),
            cert_file: t.cert_file.as_ref().map(|p| base_dir.join(p)),
            key_file: t.key_file.as_ref().map(|p| base_dir.join(p)),
            server_name: t.server_name.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        });
        let fingerprint =
            xxhash_rust::xxh64::xxh64(format!("{job:?}{interval:?}{timeout:?}{external:?}").as_bytes(), 0);
        for (addresses, group_labels) in groups {
            for address in addresses {
                let mut labels = group_labels.clone();
                relabel::set(&mut labels, "__address__", address.clone());
                relabel::set(&mut labels, "job", job.job_name.clone());
                relabel::set(&mut labels, "__scheme__", job.scheme.clone());
                relabel::set(&mut labels, "__metrics_path__", job.metrics_path.clone());
                relabel::set(
                    &mut labels,
                    "__scrape_interval__",
                    crate::duration::PromDuration(interval).to_string(),
                );
                relabel::set(
                    &mut labels,
                    "__scrape_timeout__",
                    crate::duration::PromDuration(timeout).to_string(),
                );
                for (name, values) in &job.params {
                    if let Some(first) = values.first() {
                        relabel::set(&mut labels, &format!("__param_{name}"), first.clone());
                    }
                }
                let discovered = labels.clone();
                if !relabel::apply_all(&loaded.relabel[i], &mut labels) {
                    out.dropped.push(DroppedTarget {
                        job: job.job_name.clone(),
                        discovered,
                    });
                    continue;
                }
                match finish_target(job, labels) {
                    Ok((url, final_labels)) => {
                        let key = xxhash_rust::xxh64::xxh64(format!("{url}{final_labels:?}").as_bytes(), fingerprint);
                        out.targets.push(TargetSpec {
                            job: job.job_name.clone(),
                            url,
                            labels: final_labels,
                            discovered,
                            interval,
                            timeout,
                            honor_labels: job.honor_labels,
                            honor_timestamps: job.honor_timestamps,
                            sample_limit: job.sample_limit,
                            label_limit: job.label_limit,
                            metric_relabel: Arc::clone(&metric_relabel),
                            auth: auth.clone(),
                            external_labels: Arc::clone(&external),
                            tls: tls.clone(),
                            key,
                        });
                    }
                    Err(message) => out.warnings.push(format!("job {:?}: {message}", job.job_name)),
                }
            }
        }
    }
    // Two identical targets would be scraped twice and write the same series: keep one.
    let mut seen = std::collections::HashSet::new();
    out.targets.retain(|t| seen.insert(t.key));
    out
}

fn to_labels(map: &BTreeMap<String, String>) -> Labels {
    let mut labels: Labels = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    relabel::normalize(&mut labels);
    labels
}

fn auth_of(job: &ScrapeConfig, base: &Path) -> Auth {
    let file = |f: &Option<String>| f.as_ref().map(|p| base.join(p));
    if let Some(b) = &job.basic_auth {
        return Auth::Basic {
            username: b.username.clone(),
            password: b.password.clone(),
            password_file: file(&b.password_file),
        };
    }
    if let Some(a) = &job.authorization {
        return Auth::Header {
            kind: a.kind.clone(),
            credentials: a.credentials.clone(),
            credentials_file: file(&a.credentials_file),
        };
    }
    if job.bearer_token.is_some() || job.bearer_token_file.is_some() {
        return Auth::Header {
            kind: "Bearer".to_owned(),
            credentials: job.bearer_token.clone(),
            credentials_file: file(&job.bearer_token_file),
        };
    }
    Auth::None
}

/// Builds the URL from the `__` labels and strips them; `instance` defaults to the address.
fn finish_target(job: &ScrapeConfig, mut labels: Labels) -> Result<(String, Labels), String> {
    let address = relabel::get(&labels, "__address__").unwrap_or("").to_owned();
    if address.is_empty() {
        return Err("a target has no __address__ after relabeling".into());
    }
    if address.contains('/') {
        return Err(format!("target address {address:?} must be host:port"));
    }
    let scheme = relabel::get(&labels, "__scheme__").unwrap_or(&job.scheme).to_owned();
    let path = relabel::get(&labels, "__metrics_path__")
        .unwrap_or(&job.metrics_path)
        .to_owned();
    let mut query: Vec<(String, String)> = Vec::new();
    for (name, values) in &job.params {
        // A relabeled __param_x replaces the first value of x.
        let first = relabel::get(&labels, &format!("__param_{name}")).map(str::to_owned);
        for (k, v) in values.iter().enumerate() {
            let value = if k == 0 {
                first.clone().unwrap_or_else(|| v.clone())
            } else {
                v.clone()
            };
            query.push((name.clone(), value));
        }
    }
    for (name, value) in &labels {
        if let Some(param) = name.strip_prefix("__param_")
            && !job.params.contains_key(param)
        {
            query.push((param.to_owned(), value.clone()));
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    for (k, (name, value)) in query.iter().enumerate() {
        url.push(if k == 0 && !path.contains('?') { '?' } else { '&' });
        url.push_str(&percent_encode(name));
        url.push('=');
        url.push_str(&percent_encode(value));
    }
    if relabel::get(&labels, "instance").is_none() {
        relabel::set(&mut labels, "instance", address);
    }
    labels.retain(|(name, _)| !name.starts_with("__"));
    Ok((url, labels))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Files matching `pattern`, where only the last path element may hold `*` wildcards.
fn expand_glob(pattern: &Path, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains('*') {
        return vec![pattern.to_owned()];
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if let Some(file_name) = entry.file_name().to_str()
                    && wildcard_match(name, file_name)
                {
                    files.push(entry.path());
                }
            }
        }
        Err(err) => warnings.push(format!("file_sd: cannot list {}: {err}", dir.display())),
    }
    files.sort();
    files
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

fn read_file_groups(file: &Path) -> Result<Vec<FileGroup>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("file_sd: cannot read {}: {e}", file.display()))?;
    let is_json = file.extension().is_some_and(|e| e == "json");
    let parsed = if is_json {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("file_sd: {}: {e}", file.display()))
}

#[cfg(test)]
mod tests;
