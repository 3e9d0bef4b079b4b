//! Series names: the canonical encoding (FORMATS.md §1.2), the raw ingestion form, escaping and
//! TSID generation (§1.1).

use crate::{StorageError, Tenant, Tsid};

/// Escape byte inside keys and values.
pub const ESCAPE_CHAR: u8 = 0;
/// Terminates every escaped key and value.
pub const TAG_SEPARATOR: u8 = 1;
/// Separates a MetricName from the TSID in `MetricNameToTSID` items.
pub const KV_SEPARATOR: u8 = 2;

/// Appends `src` escaped: 0x00, 0x01, 0x02 become `00 '0'`, `00 '1'`, `00 '2'`, so an
/// escaped string never contains the separators.
pub fn escape_into(dst: &mut Vec<u8>, src: &[u8]) {
    for &b in src {
        match b {
            0..=2 => dst.extend_from_slice(&[ESCAPE_CHAR, b'0' + b]),
            _ => dst.push(b),
        }
    }
}

/// Appends `esc(s) 01`.
pub fn put_tag_part(dst: &mut Vec<u8>, s: &[u8]) {
    escape_into(dst, s);
    dst.push(TAG_SEPARATOR);
}

/// Reverses [`escape_into`]; `None` for a dangling or unknown escape.
pub fn unescape(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(src.len());
    let mut it = src.iter();
    while let Some(&b) = it.next() {
        if b == ESCAPE_CHAR {
            match it.next()? {
                c @ b'0'..=b'2' => out.push(c - b'0'),
                _ => return None,
            }
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Splits off one `esc(s) 01` part, returning it still escaped.
pub fn split_tag_part(src: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = src.iter().position(|&b| b == TAG_SEPARATOR)?;
    Some((&src[..i], &src[i + 1..]))
}

const JOB_LIKE: [&str; 14] = [
    "namespace",
    "ns",
    "datacenter",
    "dc",
    "environment",
    "env",
    "cluster",
    "service",
    "job",
    "model",
    "type",
    "sensor_type",
    "SensorType",
    "db",
];
const INSTANCE_LIKE: [&str; 10] = [
    "instance",
    "host",
    "server",
    "pod",
    "node",
    "device",
    "tenant",
    "client",
    "name",
    "measurement",
];

/// The sort key of a label name: job-like names first, instance-like second, others by bytes.
fn normalized_key(key: &str) -> (u8, u8, &str) {
    // `Job` sorts like `job`: only the first letter may be capitalised.
    let same = |k: &str| {
        key == k || {
            let (a, b) = (key.as_bytes(), k.as_bytes());
            a.len() == b.len() && !a.is_empty() && a[0] == b[0].to_ascii_uppercase() && a[1..] == b[1..]
        }
    };
    let lower_first = |list: &[&str]| list.iter().position(|k| same(k));
    if let Some(i) = lower_first(&JOB_LIKE) {
        // sensor_type and SensorType share one slot.
        let i = if i == 12 { 11 } else { i };
        return (0, i as u8, "");
    }
    if let Some(i) = lower_first(&INSTANCE_LIKE) {
        return (1, i as u8, "");
    }
    (2, 0, key)
}

/// A series name in canonical form: metric name apart, other labels in canonical order
/// (job-like, instance-like, then by bytes), no empty values, no duplicate names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CanonicalName {
    /// The tenant.
    pub tenant: Tenant,
    /// `__name__` (may be empty).
    pub name: String,
    /// The other labels in canonical order.
    pub tags: Vec<(String, String)>,
}

/// Longest accepted label name or value (the raw form stores u16 lengths).
pub const MAX_LABEL_LEN: usize = 65535;

impl CanonicalName {
    /// Builds the canonical form from labels in any order. Empty values are dropped; for a
    /// repeated name the last value wins.
    pub fn from_labels(tenant: Tenant, labels: &[super::Label<'_>]) -> Result<CanonicalName, StorageError> {
        let mut name = String::new();
        let mut tags: Vec<(String, String)> = Vec::with_capacity(labels.len());
        for l in labels {
            if l.name.len() > MAX_LABEL_LEN || l.value.len() > MAX_LABEL_LEN {
                return Err(StorageError::InvalidInput(format!(
                    "label {:?} is longer than {MAX_LABEL_LEN} bytes",
                    truncate(l.name)
                )));
            }
            if l.name == "__name__" {
                name = l.value.to_string();
                continue;
            }
            if l.name.is_empty() {
                // Prometheus forbids empty label names; in the index "" is the metric name.
                continue;
            }
            if let Some(t) = tags.iter_mut().find(|t| t.0 == l.name) {
                t.1 = l.value.to_string();
            } else {
                tags.push((l.name.to_string(), l.value.to_string()));
            }
        }
        tags.retain(|t| !t.1.is_empty());
        tags.sort_by(|a, b| normalized_key(&a.0).cmp(&normalized_key(&b.0)));
        Ok(CanonicalName { tenant, name, tags })
    }

    /// Appends `T | esc(name) 01 | {esc(k) 01 esc(v) 01}*`.
    pub fn marshal(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.tenant.account_id.to_be_bytes());
        dst.extend_from_slice(&self.tenant.project_id.to_be_bytes());
        put_tag_part(dst, self.name.as_bytes());
        for (k, v) in &self.tags {
            put_tag_part(dst, k.as_bytes());
            put_tag_part(dst, v.as_bytes());
        }
    }

    /// Reads the form [`CanonicalName::marshal`] writes; `None` if malformed.
    pub fn unmarshal(src: &[u8]) -> Option<CanonicalName> {
        let (acc, src) = src.split_first_chunk::<4>()?;
        let (proj, src) = src.split_first_chunk::<4>()?;
        let tenant = Tenant {
            account_id: u32::from_be_bytes(*acc),
            project_id: u32::from_be_bytes(*proj),
        };
        let text = |b: &[u8]| String::from_utf8(unescape(b)?).ok();
        let (name, mut src) = split_tag_part(src)?;
        let name = text(name)?;
        let mut tags = Vec::new();
        while !src.is_empty() {
            let (k, rest) = split_tag_part(src)?;
            let (v, rest) = split_tag_part(rest)?;
            tags.push((text(k)?, text(v)?));
            src = rest;
        }
        Some(CanonicalName { tenant, name, tags })
    }

    /// The TSID of this name with a fresh `metric_id` (FORMATS.md §1.1).
    pub fn tsid(&self, metric_id: u64) -> Tsid {
        let h = |s: &str| xxhash_rust::xxh64::xxh64(s.as_bytes(), 0);
        Tsid {
            tenant: self.tenant,
            metric_group_id: h(&self.name),
            job_id: self.tags.first().map_or(0, |t| h(&t.1) as u32),
            instance_id: self.tags.get(1).map_or(0, |t| h(&t.1) as u32),
            metric_id,
        }
    }

    /// The API form: labels sorted by name, `__name__` included when set.
    pub fn to_metric_name(&self) -> super::MetricName {
        let mut labels = self.tags.clone();
        if !self.name.is_empty() {
            labels.push(("__name__".to_string(), self.name.clone()));
        }
        labels.sort();
        super::MetricName {
            tenant: self.tenant,
            labels,
        }
    }

    /// The value of `key` ("" for `__name__`), empty when absent.
    pub fn value_of(&self, key: &str) -> &str {
        if key.is_empty() {
            return &self.name;
        }
        self.tags.iter().find(|t| t.0 == key).map_or("", |t| t.1.as_str())
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends the raw form `u32 acc | u32 proj | {u16 len|name, u16 len|value}*` in arrival order,
/// `__name__` with an empty name, empty values skipped. Cheap: no sorting on the hot path.
pub fn marshal_raw(dst: &mut Vec<u8>, tenant: Tenant, labels: &[super::Label<'_>]) -> Result<(), StorageError> {
    dst.extend_from_slice(&tenant.account_id.to_be_bytes());
    dst.extend_from_slice(&tenant.project_id.to_be_bytes());
    for l in labels {
        if l.value.is_empty() || l.name.is_empty() {
            continue;
        }
        let name = if l.name == "__name__" { "" } else { l.name };
        for s in [name, l.value] {
            let n = u16::try_from(s.len()).map_err(|_| {
                StorageError::InvalidInput(format!(
                    "label {:?} is longer than {MAX_LABEL_LEN} bytes",
                    truncate(l.name)
                ))
            })?;
            dst.extend_from_slice(&n.to_be_bytes());
            dst.extend_from_slice(s.as_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Label;
    use super::*;

    fn l<'a>(name: &'a str, value: &'a str) -> Label<'a> {
        Label { name, value }
    }

    #[test]
    fn canonical_order_and_roundtrip() {
        let t = Tenant {
            account_id: 3,
            project_id: 4,
        };
        let cn = CanonicalName::from_labels(
            t,
            &[
                l("zeta", "1"),
                l("instance", "h:9"),
                l("__name__", "up"),
                l("alpha", "a\u{0}b\u{1}"),
                l("job", "x"),
                l("empty", ""),
                l("zeta", "2"),
            ],
        )
        .unwrap();
        let keys: Vec<&str> = cn.tags.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(keys, ["job", "instance", "alpha", "zeta"]);
        assert_eq!(cn.value_of("zeta"), "2");
        assert_eq!(cn.name, "up");
        let mut buf = Vec::new();
        cn.marshal(&mut buf);
        assert_eq!(&buf[..8], &[0, 0, 0, 3, 0, 0, 0, 4]);
        assert_eq!(&buf[8..11], b"up\x01");
        assert_eq!(CanonicalName::unmarshal(&buf).unwrap(), cn);
        let tsid = cn.tsid(7);
        assert_eq!(tsid.job_id, xxhash_rust::xxh64::xxh64(b"x", 0) as u32);
        assert_eq!(tsid.instance_id, xxhash_rust::xxh64::xxh64(b"h:9", 0) as u32);
        let mn = cn.to_metric_name();
        assert_eq!(mn.labels[0].0, "__name__");
        // Two job-like names: the second feeds instance_id.
        let cn2 = CanonicalName::from_labels(t, &[l("job", "j"), l("Namespace", "n")]).unwrap();
        assert_eq!(cn2.tags[0].0, "Namespace");
        assert!(CanonicalName::unmarshal(&buf[..buf.len() - 1]).is_none());
    }

    #[test]
    fn escaping_roundtrips() {
        let s = b"a\x00b\x01c\x02d";
        let mut e = Vec::new();
        escape_into(&mut e, s);
        assert!(!e.contains(&1) && !e.contains(&2));
        assert_eq!(unescape(&e).unwrap(), s);
        assert!(unescape(b"\x00").is_none());
    }

    #[test]
    fn raw_form_rejects_long_values() {
        let mut b = Vec::new();
        marshal_raw(&mut b, Tenant::default(), &[l("__name__", "m"), l("a", "")]).unwrap();
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'm']);
        let long = "x".repeat(70_000);
        assert!(marshal_raw(&mut b, Tenant::default(), &[l("a", &long)]).is_err());
        assert!(CanonicalName::from_labels(Tenant::default(), &[l("a", &long)]).is_err());
    }
}
