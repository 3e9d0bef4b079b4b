//! The deterministic, node_exporter-like data generator.
//!
//! Every instance (a scraped host) exposes the same families a real node_exporter does — CPU
//! seconds per cpu and mode, memory, load, filesystems, disks, network interfaces — plus one
//! HTTP latency histogram, so the data has the shapes the storage engines are tuned for:
//! counters that grow at a rate and sometimes reset, gauges that wander with node_exporter's
//! decimal precision, constants, and histogram buckets that grow together.
//!
//! Determinism: every value comes from a PRNG seeded by `(seed, group)` and every timestamp from
//! a hash of `(seed, instance, scrape)`, so the same [`GenConfig`] always yields the same samples,
//! however the caller later slices them into requests.

mod template;

pub use template::SERIES_PER_INSTANCE;
use template::{Kind, format_le, instance_template, member_series};

/// A label pair, name then value.
pub type LabelPair = (String, String);

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Wanted number of series; rounded up to whole instances (see [`Dataset::series_count`]).
    pub series: usize,
    /// Number of scrapes (samples per series).
    pub scrapes: usize,
    /// Timestamp of the first scrape round, in milliseconds since the epoch.
    pub start_ms: i64,
    /// Scrape interval in milliseconds (15 s like a default Prometheus job).
    pub interval_ms: i64,
    /// Chance per scrape, in parts per million, that a counter's process restarted (a reset).
    pub reset_ppm: u32,
}

impl GenConfig {
    /// A config with node_exporter's usual 15 s interval and rare counter resets.
    pub fn new(seed: u64, series: usize, scrapes: usize, start_ms: i64) -> Self {
        GenConfig {
            seed,
            series,
            scrapes,
            start_ms,
            interval_ms: 15_000,
            reset_ppm: 200,
        }
    }
}

/// A group of series whose values are generated together (one series, or a whole histogram).
#[derive(Debug, Clone)]
struct Group {
    kind: Kind,
    /// Index of its first series in [`Dataset::series`].
    first: usize,
}

/// The series of a run and how each one evolves.
#[derive(Debug, Clone)]
pub struct Dataset {
    cfg: GenConfig,
    series: Vec<Vec<LabelPair>>,
    /// The instance each series belongs to.
    instance_of: Vec<u32>,
    groups: Vec<Group>,
    instances: usize,
}

impl Dataset {
    /// Builds the series of `cfg`: `ceil(series / SERIES_PER_INSTANCE)` instances of the node
    /// template.
    pub fn new(cfg: GenConfig) -> Dataset {
        let template = instance_template();
        let per_instance: usize = template.iter().map(|m| member_series(&m.kind)).sum();
        debug_assert_eq!(per_instance, SERIES_PER_INSTANCE);
        let instances = cfg.series.div_ceil(per_instance).max(1);
        let mut series = Vec::with_capacity(instances * per_instance);
        let mut instance_of = Vec::with_capacity(instances * per_instance);
        let mut groups = Vec::with_capacity(instances * template.len());
        let regions = ["eu-west-1", "us-east-1", "ap-south-1"];
        for i in 0..instances {
            let base = [
                (
                    "instance".to_owned(),
                    format!("10.{}.{}.{}:9100", 1 + i / 65_536, (i / 256) % 256, i % 256),
                ),
                ("job".to_owned(), "node".to_owned()),
                ("region".to_owned(), regions[i % regions.len()].to_owned()),
            ];
            for m in &template {
                groups.push(Group {
                    kind: m.kind.clone(),
                    first: series.len(),
                });
                let mut make = |name: String, extra: Option<LabelPair>| {
                    let mut labels = Vec::with_capacity(base.len() + m.labels.len() + 2);
                    labels.push(("__name__".to_owned(), name));
                    labels.extend(base.iter().cloned());
                    labels.extend(m.labels.iter().cloned());
                    labels.extend(extra);
                    labels.sort();
                    series.push(labels);
                    instance_of.push(i as u32);
                };
                match &m.kind {
                    Kind::Histogram { bounds, .. } => {
                        for b in bounds {
                            make(format!("{}_bucket", m.name), Some(("le".to_owned(), format_le(*b))));
                        }
                        make(format!("{}_sum", m.name), None);
                        make(format!("{}_count", m.name), None);
                    }
                    _ => make(m.name.clone(), None),
                }
            }
        }
        Dataset {
            cfg,
            series,
            instance_of,
            groups,
            instances,
        }
    }

    /// The config it was built from.
    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// Number of series (a whole number of instances, so at least the wanted number).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Number of instances (scraped hosts).
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Total samples: series × scrapes.
    pub fn sample_count(&self) -> u64 {
        self.series.len() as u64 * self.cfg.scrapes as u64
    }

    /// The labels of series `i`, sorted by name (`__name__` first).
    pub fn labels(&self, i: usize) -> &[LabelPair] {
        &self.series[i]
    }

    /// The instance series `i` belongs to.
    pub fn instance_of(&self, i: usize) -> usize {
        self.instance_of[i] as usize
    }

    /// Timestamp (ms) of `instance`'s scrape number `scrape`: the round's time, the instance's
    /// fixed offset within the interval (targets are spread over it), and ±20 ms of jitter.
    pub fn timestamp(&self, instance: usize, scrape: usize) -> i64 {
        let offset = (mix(self.cfg.seed ^ 0x0ff5e7, instance as u64) % self.cfg.interval_ms.max(1) as u64) as i64;
        let jitter = (mix(self.cfg.seed ^ 0x717e4, (instance as u64) << 32 | scrape as u64) % 41) as i64 - 20;
        self.cfg.start_ms + scrape as i64 * self.cfg.interval_ms + offset + jitter
    }

    /// The last timestamp any sample has.
    pub fn last_timestamp(&self) -> i64 {
        self.cfg.start_ms + self.cfg.scrapes as i64 * self.cfg.interval_ms + 20
    }

    /// A generator positioned before the first scrape.
    pub fn generator(&self) -> Generator<'_> {
        Generator::new(self)
    }
}

/// SplitMix64's finaliser over two words: a stateless hash for seeds and jitter.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small xorshift* PRNG; its output is fixed by its seed on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed, 0x5eed) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn chance_ppm(&mut self, ppm: u32) -> bool {
        self.next_u64() % 1_000_000 < u64::from(ppm)
    }
}

fn round_to(v: f64, decimals: u32) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (v * scale).round() / scale
}

/// Per-group state between scrapes.
#[derive(Debug, Clone)]
enum State {
    Counter { value: f64, rate: f64 },
    Gauge { value: f64 },
    Const,
    Histogram { counts: Vec<u64>, sum: f64 },
}

/// Walks through the scrapes of a [`Dataset`], one scrape round at a time.
pub struct Generator<'a> {
    data: &'a Dataset,
    rngs: Vec<Rng>,
    states: Vec<State>,
    scrape: usize,
}

/// The values of one scrape round: `values[i]` is series `i`'s sample, taken at
/// `timestamps[instance_of(i)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// Which scrape this is (0-based).
    pub index: usize,
    /// Timestamp in ms per instance.
    pub timestamps: Vec<i64>,
    /// Value per series.
    pub values: Vec<f64>,
}

impl<'a> Generator<'a> {
    fn new(data: &'a Dataset) -> Generator<'a> {
        let mut rngs = Vec::with_capacity(data.groups.len());
        let mut states = Vec::with_capacity(data.groups.len());
        for (g, group) in data.groups.iter().enumerate() {
            let mut rng = Rng::new(mix(data.cfg.seed, g as u64));
            let state = match &group.kind {
                Kind::Counter { rate, .. } => {
                    // Hosts differ: rates spread log-normally; uptime gives the starting value.
                    let rate = rate * (0.5 * rng.normal()).exp();
                    let uptime_s = 3600.0 + rng.unit() * 30.0 * 86_400.0;
                    State::Counter {
                        value: rate * uptime_s,
                        rate,
                    }
                }
                Kind::Gauge { min, max, .. } => State::Gauge {
                    value: min + rng.unit() * (max - min),
                },
                Kind::Const(_) => State::Const,
                Kind::Histogram { bounds, .. } => State::Histogram {
                    counts: vec![0; bounds.len()],
                    sum: 0.0,
                },
            };
            rngs.push(rng);
            states.push(state);
        }
        Generator {
            data,
            rngs,
            states,
            scrape: 0,
        }
    }

    /// The next scrape round, or `None` after the last.
    pub fn next_scrape(&mut self) -> Option<Scrape> {
        let data = self.data;
        if self.scrape >= data.cfg.scrapes {
            return None;
        }
        let index = self.scrape;
        self.scrape += 1;
        let timestamps = (0..data.instances).map(|i| data.timestamp(i, index)).collect();
        let mut values = vec![0.0; data.series.len()];
        let interval_s = data.cfg.interval_ms as f64 / 1000.0;
        let reset_ppm = data.cfg.reset_ppm;
        for ((group, rng), state) in data.groups.iter().zip(&mut self.rngs).zip(&mut self.states) {
            let out = &mut values[group.first..];
            match (&group.kind, state) {
                (Kind::Counter { decimals, .. }, State::Counter { value, rate }) => {
                    let increment = *rate * interval_s * (0.5 + rng.unit());
                    if index > 0 && rng.chance_ppm(reset_ppm) {
                        // The process restarted: counting starts again from zero.
                        *value = increment;
                    } else {
                        *value += increment;
                    }
                    out[0] = round_to(*value, *decimals);
                }
                (
                    Kind::Gauge {
                        min,
                        max,
                        step,
                        decimals,
                    },
                    State::Gauge { value },
                ) => {
                    *value = (*value + step * (2.0 * rng.unit() - 1.0)).clamp(*min, *max);
                    out[0] = round_to(*value, *decimals);
                }
                (Kind::Const(v), State::Const) => out[0] = *v,
                (Kind::Histogram { bounds, rate, median }, State::Histogram { counts, sum }) => {
                    if index > 0 && rng.chance_ppm(reset_ppm) {
                        counts.iter_mut().for_each(|c| *c = 0);
                        *sum = 0.0;
                    }
                    let observations = (rate * interval_s * (0.8 + 0.4 * rng.unit())).round() as u64;
                    // Draw at most 32 latencies and weight them, so big rates stay cheap.
                    let draws = observations.min(32);
                    for d in 0..draws {
                        let weight = observations / draws + u64::from(d < observations % draws);
                        let latency = median * (0.8 * rng.normal()).exp();
                        *sum += latency * weight as f64;
                        for (count, bound) in counts.iter_mut().zip(bounds) {
                            if latency <= *bound {
                                *count += weight;
                            }
                        }
                    }
                    for (slot, count) in out.iter_mut().zip(counts.iter()) {
                        *slot = *count as f64;
                    }
                    out[bounds.len()] = *sum;
                    out[bounds.len() + 1] = counts.last().copied().unwrap_or(0) as f64;
                }
                // Kinds and states are built pairwise in `new`.
                _ => {}
            }
        }
        Some(Scrape {
            index,
            timestamps,
            values,
        })
    }
}

impl Iterator for Generator<'_> {
    type Item = Scrape;

    fn next(&mut self) -> Option<Scrape> {
        self.next_scrape()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(seed: u64, reset_ppm: u32) -> Dataset {
        let mut cfg = GenConfig::new(seed, 500, 400, 1_700_000_000_000);
        cfg.reset_ppm = reset_ppm;
        Dataset::new(cfg)
    }

    fn counter_series(d: &Dataset) -> Vec<usize> {
        (0..d.series_count())
            .filter(|&i| {
                let name = &d.labels(i)[0].1;
                name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count")
            })
            .collect()
    }

    #[test]
    fn same_seed_same_samples_other_seed_other_samples() {
        let a: Vec<Scrape> = dataset(7, 200).generator().collect();
        let b: Vec<Scrape> = dataset(7, 200).generator().collect();
        let c: Vec<Scrape> = dataset(8, 200).generator().collect();
        assert_eq!(a.len(), 400);
        // Compare bit patterns: equal floats are not enough to promise equal bytes.
        let bits = |s: &[Scrape]| -> Vec<u64> { s.iter().flat_map(|x| x.values.iter().map(|v| v.to_bits())).collect() };
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(a, b);
        assert_ne!(bits(&a), bits(&c));
    }

    #[test]
    fn series_are_whole_instances_with_sorted_unique_labels() {
        let d = dataset(1, 0);
        assert_eq!(d.series_count() % SERIES_PER_INSTANCE, 0);
        assert!(d.series_count() >= 500);
        let mut seen = std::collections::HashSet::new();
        for i in 0..d.series_count() {
            let labels = d.labels(i);
            assert_eq!(labels[0].0, "__name__");
            assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "unsorted: {labels:?}");
            assert!(seen.insert(labels.to_vec()), "duplicate series {labels:?}");
        }
    }

    #[test]
    fn counters_only_decrease_by_resetting() {
        let d = dataset(3, 2_000);
        let counters = counter_series(&d);
        let scrapes: Vec<Scrape> = d.generator().collect();
        let mut resets = 0;
        for &i in &counters {
            for w in scrapes.windows(2) {
                let (before, after) = (w[0].values[i], w[1].values[i]);
                if after < before {
                    resets += 1;
                    // A reset starts from (about) one interval's worth, far below the old value.
                    assert!(after < before / 2.0 || before < 1.0, "series {i}: {before} -> {after}");
                }
            }
        }
        assert!(resets > 0, "a reset rate of 0.2% over 400 scrapes must produce resets");
        let none = dataset(3, 0);
        let scrapes: Vec<Scrape> = none.generator().collect();
        for &i in &counter_series(&none) {
            assert!(
                scrapes.windows(2).all(|w| w[1].values[i] >= w[0].values[i]),
                "series {i} decreased"
            );
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_is_inf_bucket() {
        let d = dataset(5, 0);
        let scrape = d.generator().nth(10).expect("scrape 10");
        let first_bucket = (0..d.series_count())
            .find(|&i| d.labels(i)[0].1 == "http_request_duration_seconds_bucket")
            .expect("a bucket series");
        let buckets = &scrape.values[first_bucket..first_bucket + 12];
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "not cumulative: {buckets:?}");
        assert!(buckets[11] > 0.0);
        assert_eq!(scrape.values[first_bucket + 13], buckets[11]);
    }

    #[test]
    fn timestamps_increase_per_instance_and_stay_near_the_interval() {
        let d = dataset(9, 0);
        for inst in 0..d.instances() {
            for s in 1..50 {
                let gap = d.timestamp(inst, s) - d.timestamp(inst, s - 1);
                assert!((14_960..=15_040).contains(&gap), "gap {gap}");
            }
            assert!(d.timestamp(inst, 399) <= d.last_timestamp());
        }
    }
}
