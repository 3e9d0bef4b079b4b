//! Human-friendly durations (`5s`, `30d`, `1y`) and sizes (`64MiB`) for appliance.toml.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way operators write them: `500ms`, `5s`, `1m`, `2h`, `30d`, `2w`, `1y`,
/// or a sum such as `1h30m`. A year is 365 days; there is no month unit because `m` is minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub std::time::Duration);

const DURATION_UNITS: &str = "ms, s, m, h, d, w, y";

impl HumanDuration {
    /// Builds a duration from whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// Builds a duration from milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The duration as std's type.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(format!(
                "empty duration; write a number with a unit ({DURATION_UNITS}), e.g. \"5s\""
            ));
        }
        if text == "0" {
            return Ok(Self::default());
        }
        let mut total_ms: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("invalid duration {s:?}: expected a number at {rest:?}"));
            }
            let number: u128 = rest[..digits]
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let unit_ms: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "y" => 365 * 86_400_000,
                "" => {
                    return Err(format!(
                        "invalid duration {s:?}: missing unit; allowed units are {DURATION_UNITS}"
                    ));
                }
                other => {
                    return Err(format!(
                        "invalid duration {s:?}: unknown unit {other:?}; allowed units are {DURATION_UNITS}"
                    ));
                }
            };
            total_ms = number
                .checked_mul(unit_ms)
                .and_then(|v| v.checked_add(total_ms))
                .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
        }
        let ms = u64::try_from(total_ms).map_err(|_| format!("invalid duration {s:?}: too large"))?;
        Ok(Self(std::time::Duration::from_millis(ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("y", 365 * 86_400_000u128),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A byte size: `512`, `64KiB`, `64MiB`, `2GiB`, `1TiB` (powers of 1024) or `64KB`, `64MB`,
/// `2GB`, `1TB` (powers of 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: &str = "B, KiB, MiB, GiB, TiB, KB, MB, GB, TB";

impl ByteSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        if digits == 0 {
            return Err(format!(
                "invalid size {s:?}: expected a number followed by one of {SIZE_UNITS}"
            ));
        }
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| format!("invalid size {s:?}: number too large"))?;
        let multiplier: u64 = match text[digits..].trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {other:?}; allowed units are {SIZE_UNITS}"
                ));
            }
        };
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accept a bare integer too: `max_request_body = 1048576`.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("1m", Duration::from_secs(60)),
            ("1h30m", Duration::from_secs(5400)),
            ("30d", Duration::from_secs(30 * 86400)),
            ("2w", Duration::from_secs(14 * 86400)),
            ("1y", Duration::from_secs(365 * 86400)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<HumanDuration>().unwrap().get(), want, "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_allowed() {
        for bad in ["", "5", "5x", "s", "1M", "99999999999999999999999y"] {
            let err = bad.parse::<HumanDuration>().unwrap_err();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
        assert!("5x".parse::<HumanDuration>().unwrap_err().contains(DURATION_UNITS));
    }

    #[test]
    fn durations_display_round_trip() {
        for text in ["5s", "30d", "1y", "1500ms", "2h", "0s"] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().bytes(), 64 << 20);
        assert_eq!("2GB".parse::<ByteSize>().unwrap().bytes(), 2_000_000_000);
        assert_eq!("100".parse::<ByteSize>().unwrap().bytes(), 100);
        assert_eq!("1 KiB".parse::<ByteSize>().unwrap().bytes(), 1024);
        assert!("64mb".parse::<ByteSize>().unwrap_err().contains(SIZE_UNITS));
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize::mib(32).to_string(), "32MiB");
    }
}
