//! Series identity shared by the data side and the index side (FORMATS.md §1.1).

/// A tenant: (accountID, projectID). Single-node uses 0:0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenant {
    /// Account id.
    pub account_id: u32,
    /// Project id.
    pub project_id: u32,
}

/// The internal id of a series. Field order is sort order: tenant, then metric name hash, job
/// and instance hashes group the blocks one query reads next to each other on disk; `metric_id`
/// is what makes it unique.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tsid {
    /// The tenant.
    pub tenant: Tenant,
    /// xxhash64 of `__name__`.
    pub metric_group_id: u64,
    /// Low 32 bits of xxhash64 of the first label value after canonical sort (job-like).
    pub job_id: u32,
    /// Low 32 bits of xxhash64 of the second label value after canonical sort (instance-like).
    pub instance_id: u32,
    /// The unique series id.
    pub metric_id: u64,
}

/// Marshaled size of a [`Tsid`] (cluster layout, tenant included).
pub const TSID_SIZE: usize = 32;

impl Tsid {
    /// Appends the 32-byte big-endian form; byte order equals [`Ord`] order.
    pub fn marshal(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.tenant.account_id.to_be_bytes());
        dst.extend_from_slice(&self.tenant.project_id.to_be_bytes());
        dst.extend_from_slice(&self.metric_group_id.to_be_bytes());
        dst.extend_from_slice(&self.job_id.to_be_bytes());
        dst.extend_from_slice(&self.instance_id.to_be_bytes());
        dst.extend_from_slice(&self.metric_id.to_be_bytes());
    }

    /// Reads the 32-byte form; `None` if `src` is shorter.
    pub fn unmarshal(src: &[u8]) -> Option<(Tsid, &[u8])> {
        if src.len() < TSID_SIZE {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&src[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let tsid = Tsid {
            tenant: Tenant {
                account_id: u32_at(0),
                project_id: u32_at(4),
            },
            metric_group_id: u64_at(8),
            job_id: u32_at(16),
            instance_id: u32_at(20),
            metric_id: u64_at(24),
        };
        Some((tsid, &src[TSID_SIZE..]))
    }
}

/// A closed time range in milliseconds since the epoch: `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// First millisecond included.
    pub min: i64,
    /// Last millisecond included.
    pub max: i64,
}

impl TimeRange {
    /// Whether `[min, max]` and `self` share a millisecond.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.min <= max && min <= self.max
    }

    /// Whether `ts` is inside.
    pub fn contains(&self, ts: i64) -> bool {
        self.min <= ts && ts <= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshal_order_is_ord_order() {
        let a = Tsid {
            tenant: Tenant {
                account_id: 1,
                project_id: 0,
            },
            metric_id: 5,
            ..Default::default()
        };
        let b = Tsid {
            tenant: Tenant {
                account_id: 0,
                project_id: 9,
            },
            metric_group_id: u64::MAX,
            ..Default::default()
        };
        let (mut ma, mut mb) = (Vec::new(), Vec::new());
        a.marshal(&mut ma);
        b.marshal(&mut mb);
        assert_eq!(ma.len(), TSID_SIZE);
        assert_eq!(a.cmp(&b), ma.cmp(&mb));
        assert_eq!(Tsid::unmarshal(&ma).unwrap().0, a);
        assert!(Tsid::unmarshal(&ma[..31]).is_none());
    }
}
