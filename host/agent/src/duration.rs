//! Prometheus durations: `15s`, `1m30s`, `100ms`, `1h`, `2d`, `1w`, `1y` (units in descending
//! order, each at most once, as Prometheus' `model.ParseDuration`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the Prometheus way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromDuration(pub Duration);

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: [(&str, u64); 8] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
    ("", 0),
];

impl PromDuration {
    /// Parses `text`; `None` if it is not a Prometheus duration.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "0" {
            return Some(Self(Duration::ZERO));
        }
        let bytes = text.as_bytes();
        let mut pos = 0;
        let mut total: u64 = 0;
        // Index into UNITS of the last unit seen: the next must be smaller.
        let mut last_unit: Option<usize> = None;
        if bytes.is_empty() {
            return None;
        }
        while pos < bytes.len() {
            let start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            if start == pos {
                return None;
            }
            let number: u64 = text[start..pos].parse().ok()?;
            let unit_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
                pos += 1;
            }
            let unit = &text[unit_start..pos];
            let index = UNITS.iter().position(|(name, _)| *name == unit && !name.is_empty())?;
            if last_unit.is_some_and(|last| index <= last) {
                return None;
            }
            last_unit = Some(index);
            total = total.checked_add(number.checked_mul(UNITS[index].1)?)?;
        }
        Some(Self(Duration::from_millis(total)))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for (name, len) in UNITS.iter().take(7) {
            if ms >= *len {
                write!(f, "{}{name}", ms / len)?;
                ms %= len;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: expected e.g. 15s, 1m30s, 100ms, 1h, 2d"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, ms, shown) in [
            ("15s", 15_000, "15s"),
            ("1m30s", 90_000, "1m30s"),
            ("100ms", 100, "100ms"),
            ("1h", 3_600_000, "1h"),
            ("2d", 172_800_000, "2d"),
            ("0", 0, "0s"),
            ("1s500ms", 1_500, "1s500ms"),
        ] {
            let d = PromDuration::parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(d.0, Duration::from_millis(ms), "{text}");
            assert_eq!(d.to_string(), shown);
        }
        for bad in ["", "s", "1", "1.5s", "1s1m", "1s1s", "10x", "-1s", "1 s"] {
            assert_eq!(PromDuration::parse(bad), None, "{bad}");
        }
    }
}
