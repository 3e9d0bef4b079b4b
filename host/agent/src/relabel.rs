//! Relabeling with Prometheus' semantics (`relabel_configs`, `metric_relabel_configs`).
//!
//! A rule joins the values of `source_labels` with `separator` (default `;`) and matches the
//! result against `regex`, which is anchored at both ends (default `(.*)`). Actions:
//! `replace` (default), `keep`, `drop`, `keepequal`, `dropequal`, `hashmod`, `labelmap`,
//! `labeldrop`, `labelkeep`, `lowercase`, `uppercase`. A label set to the empty string is
//! removed, as Prometheus treats empty labels as absent.

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

/// Labels as (name, value) pairs, kept sorted by name with unique names.
pub type Labels = Vec<(String, String)>;

/// One rule as written in YAML.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RelabelConfig {
    /// Labels whose values are joined into the matched string.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// The join separator (default `;`).
    #[serde(default)]
    pub separator: Option<String>,
    /// The label written by replace, hashmod, lowercase, uppercase; compared by keepequal and
    /// dropequal.
    #[serde(default)]
    pub target_label: Option<String>,
    /// The regular expression (RE2 syntax, anchored; default `(.*)`).
    #[serde(default)]
    pub regex: Option<String>,
    /// The modulus of hashmod.
    #[serde(default)]
    pub modulus: Option<u64>,
    /// The replacement, with `$1` / `${name}` references (default `$1`).
    #[serde(default)]
    pub replacement: Option<String>,
    /// The action (default `replace`).
    #[serde(default)]
    pub action: Option<String>,
}

/// A relabel rule that cannot be compiled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelabelError {
    /// Unknown action name.
    #[error("unknown relabel action {0:?}")]
    UnknownAction(String),
    /// The regex does not compile.
    #[error("invalid relabel regex {regex:?}: {message}")]
    Regex {
        /// The regex.
        regex: String,
        /// The compiler's message.
        message: String,
    },
    /// A key the action needs is missing.
    #[error("relabel action {action} needs {key}")]
    Missing {
        /// The action.
        action: &'static str,
        /// The missing key.
        key: &'static str,
    },
}

/// The actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the expanded replacement into target_label when the regex matches.
    Replace,
    /// Keep the series only if the regex matches.
    Keep,
    /// Drop the series if the regex matches.
    Drop,
    /// Keep only if the joined source equals target_label's value.
    KeepEqual,
    /// Drop if the joined source equals target_label's value.
    DropEqual,
    /// target_label = md5(source) mod modulus.
    HashMod,
    /// Copy labels whose name matches to the expanded replacement name.
    LabelMap,
    /// Remove labels whose name matches.
    LabelDrop,
    /// Remove labels whose name does not match.
    LabelKeep,
    /// target_label = lowercase(source).
    Lowercase,
    /// target_label = uppercase(source).
    Uppercase,
}

impl Action {
    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "replace" => Self::Replace,
            "keep" => Self::Keep,
            "drop" => Self::Drop,
            "keepequal" => Self::KeepEqual,
            "dropequal" => Self::DropEqual,
            "hashmod" => Self::HashMod,
            "labelmap" => Self::LabelMap,
            "labeldrop" => Self::LabelDrop,
            "labelkeep" => Self::LabelKeep,
            "lowercase" => Self::Lowercase,
            "uppercase" => Self::Uppercase,
            _ => return None,
        })
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::KeepEqual => "keepequal",
            Self::DropEqual => "dropequal",
            Self::HashMod => "hashmod",
            Self::LabelMap => "labelmap",
            Self::LabelDrop => "labeldrop",
            Self::LabelKeep => "labelkeep",
            Self::Lowercase => "lowercase",
            Self::Uppercase => "uppercase",
        }
    }
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Relabel {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: Action,
}

impl Relabel {
    /// Compiles `config`, checking that the action has what it needs.
    pub fn compile(config: &RelabelConfig) -> Result<Self, RelabelError> {
        let action_name = config.action.as_deref().unwrap_or("replace");
        let action = Action::parse(action_name).ok_or_else(|| RelabelError::UnknownAction(action_name.to_owned()))?;
        let pattern = config.regex.as_deref().unwrap_or("(.*)");
        let regex = Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| RelabelError::Regex {
            regex: pattern.to_owned(),
            message: e.to_string(),
        })?;
        let target_label = config.target_label.clone().unwrap_or_default();
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::KeepEqual
                | Action::DropEqual
                | Action::Lowercase
                | Action::Uppercase
        );
        if needs_target && target_label.is_empty() {
            return Err(RelabelError::Missing {
                action: action.name(),
                key: "target_label",
            });
        }
        let modulus = config.modulus.unwrap_or(0);
        if action == Action::HashMod && modulus == 0 {
            return Err(RelabelError::Missing {
                action: "hashmod",
                key: "a non-zero modulus",
            });
        }
        Ok(Self {
            source_labels: config.source_labels.clone(),
            separator: config.separator.clone().unwrap_or_else(|| ";".to_owned()),
            target_label,
            regex,
            modulus,
            replacement: config.replacement.clone().unwrap_or_else(|| "$1".to_owned()),
            action,
        })
    }

    /// Applies this rule; returns false if the series (or target) is to be dropped.
    pub fn apply(&self, labels: &mut Labels) -> bool {
        let joined = || {
            let mut s = String::new();
            for (i, name) in self.source_labels.iter().enumerate() {
                if i > 0 {
                    s.push_str(&self.separator);
                }
                s.push_str(get(labels, name).unwrap_or(""));
            }
            s
        };
        match self.action {
            Action::Replace => {
                let value = joined();
                let Some(caps) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !is_valid_label_name(&target) {
                    return true;
                }
                let mut result = String::new();
                caps.expand(&self.replacement, &mut result);
                set(labels, &target, result);
            }
            Action::Keep => return self.regex.is_match(&joined()),
            Action::Drop => return !self.regex.is_match(&joined()),
            Action::KeepEqual => return get(labels, &self.target_label).unwrap_or("") == joined(),
            Action::DropEqual => return get(labels, &self.target_label).unwrap_or("") != joined(),
            Action::HashMod => {
                let digest = Md5::digest(joined().as_bytes());
                // Prometheus' sum64 keeps the last 8 bytes, big-endian.
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let value = u64::from_be_bytes(tail) % self.modulus;
                set(labels, &self.target_label, value.to_string());
            }
            Action::LabelMap => {
                let mut added = Vec::new();
                for (name, value) in labels.iter() {
                    if let Some(caps) = self.regex.captures(name) {
                        let mut new_name = String::new();
                        caps.expand(&self.replacement, &mut new_name);
                        added.push((new_name, value.clone()));
                    }
                }
                for (name, value) in added {
                    set(labels, &name, value);
                }
            }
            Action::LabelDrop => labels.retain(|(name, _)| !self.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|(name, _)| self.regex.is_match(name)),
            Action::Lowercase => {
                let value = joined().to_lowercase();
                set(labels, &self.target_label, value);
            }
            Action::Uppercase => {
                let value = joined().to_uppercase();
                set(labels, &self.target_label, value);
            }
        }
        true
    }
}

/// Applies `rules` in order; false if one of them drops the series.
pub fn apply_all(rules: &[Relabel], labels: &mut Labels) -> bool {
    rules.iter().all(|rule| rule.apply(labels))
}

/// Whether `name` is a valid Prometheus label name.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The value of `name` in sorted `labels`.
pub fn get<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(n, _)| n.as_str().cmp(name))
        .ok()
        .map(|i| labels[i].1.as_str())
}

/// Sets `name` to `value` in sorted `labels`; an empty value removes the label.
pub fn set(labels: &mut Labels, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_owned(), value)),
    }
}

/// Sorts `labels` by name, keeps the last value of a repeated name, drops empty values.
pub fn normalize(labels: &mut Labels) {
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    // Stable sort keeps write order among equal names: keep the last one written.
    let mut out: Labels = Vec::with_capacity(labels.len());
    for (name, value) in labels.drain(..) {
        match out.last_mut() {
            Some(last) if last.0 == name => last.1 = value,
            _ => out.push((name, value)),
        }
    }
    out.retain(|(_, v)| !v.is_empty());
    *labels = out;
}

#[cfg(test)]
mod tests;
