//! A small deterministic mutator for the stable smoke run: bit flips, byte sets, inserts,
//! deletions, duplications, truncations and splices of seed inputs, driven by a xorshift PRNG
//! (no dependency, reproducible from the seed).

/// xorshift64* pseudo-random numbers.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator; a zero seed is replaced (xorshift would stay at zero).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Bytes that often sit on decoder boundaries.
const INTERESTING: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, b'{', b'"', b'\n', b'\\'];

/// Produces mutated inputs from a seed corpus.
#[derive(Debug)]
pub struct Mutator {
    rng: Rng,
    seeds: Vec<Vec<u8>>,
}

impl Mutator {
    /// A mutator over `seeds` (an empty corpus mutates the empty input).
    pub fn new(seed: u64, seeds: Vec<Vec<u8>>) -> Mutator {
        Mutator {
            rng: Rng::new(seed),
            seeds: if seeds.is_empty() { vec![Vec::new()] } else { seeds },
        }
    }

    /// The next input: one seed with 1 to 8 mutations, or (1 in 16) random bytes.
    pub fn next_input(&mut self) -> Vec<u8> {
        if self.rng.below(16) == 0 {
            let n = self.rng.below(256);
            return (0..n).map(|_| self.rng.next_u64() as u8).collect();
        }
        let mut data = self.seeds[self.rng.below(self.seeds.len())].clone();
        for _ in 0..1 + self.rng.below(8) {
            self.mutate(&mut data);
        }
        data
    }

    fn mutate(&mut self, d: &mut Vec<u8>) {
        let len = d.len();
        match self.rng.below(8) {
            0 if len > 0 => {
                let i = self.rng.below(len);
                d[i] ^= 1 << self.rng.below(8);
            }
            1 if len > 0 => {
                let i = self.rng.below(len);
                d[i] = INTERESTING[self.rng.below(INTERESTING.len())];
            }
            2 => {
                let i = self.rng.below(len + 1);
                d.insert(i, self.rng.next_u64() as u8);
            }
            3 if len > 0 => {
                let a = self.rng.below(len);
                let b = (a + 1 + self.rng.below(16)).min(len);
                d.drain(a..b);
            }
            4 if len > 0 => {
                let a = self.rng.below(len);
                let b = (a + 1 + self.rng.below(32)).min(len);
                let chunk = d[a..b].to_vec();
                let at = self.rng.below(len + 1);
                d.splice(at..at, chunk);
            }
            5 if len > 0 => d.truncate(self.rng.below(len)),
            6 => {
                let other = &self.seeds[self.rng.below(self.seeds.len())];
                if !other.is_empty() {
                    let a = self.rng.below(other.len());
                    let b = (a + 1 + self.rng.below(64)).min(other.len());
                    let at = self.rng.below(len + 1);
                    let chunk = other[a..b].to_vec();
                    d.splice(at..at, chunk);
                }
            }
            _ if len >= 4 => {
                // A multi-byte integer field set to an extreme.
                let i = self.rng.below(len - 3);
                let v: [u8; 4] = match self.rng.below(3) {
                    0 => [0xff; 4],
                    1 => [0; 4],
                    _ => [0xff, 0xff, 0xff, 0x0f],
                };
                d[i..i + 4].copy_from_slice(&v);
            }
            _ => d.push(self.rng.next_u64() as u8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let seeds = vec![b"hello world".to_vec(), b"{\"a\":1}".to_vec()];
        let mut a = Mutator::new(7, seeds.clone());
        let mut b = Mutator::new(7, seeds);
        let xs: Vec<_> = (0..100).map(|_| a.next_input()).collect();
        let ys: Vec<_> = (0..100).map(|_| b.next_input()).collect();
        assert_eq!(xs, ys);
        let distinct: std::collections::BTreeSet<_> = xs.iter().collect();
        assert!(distinct.len() > 80, "{}", distinct.len());
    }
}
