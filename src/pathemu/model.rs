//! The path model, free of any I/O: given a packet's arrival time and size,
//! decide whether it is lost and when it leaves. Order of the stages:
//! loss (random or Gilbert-Elliott) → bottleneck (rate, bounded queue,
//! tail drop) → delay + jitter (in order unless `reorder`).

use std::time::Duration;

use super::spec::{DirSpec, Dist};

/// A small seedable PRNG (xoshiro256**, seeded through splitmix64): enough
/// for loss and jitter draws, reproducible with `--seed`.
#[derive(Debug, Clone)]
pub struct Rng {
    /// Generator state.
    s: [u64; 4],
}

impl Rng {
    /// A generator from a 64-bit seed.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The random or bursty loss model.
    Loss,
    /// The bottleneck queue was full (longer than `queue`).
    Queue,
}

/// One direction's state: loss state, bottleneck clock, last departure.
#[derive(Debug)]
pub struct Path {
    /// The configuration.
    spec: DirSpec,
    /// Random numbers for loss and jitter.
    rng: Rng,
    /// Gilbert-Elliott: in the bad (dropping) state.
    bad: bool,
    /// When the bottleneck has sent everything admitted so far (time since start).
    link_free: Duration,
    /// Departure of the previous packet (keeps order without `reorder`).
    last_departure: Duration,
}

impl Path {
    /// A path in its initial state (good loss state, empty queue).
    pub fn new(spec: DirSpec, seed: u64) -> Path {
        Path { spec, rng: Rng::new(seed), bad: false, link_free: Duration::ZERO, last_departure: Duration::ZERO }
    }

    /// A packet of `len` IP bytes arrives at `now` (time since an arbitrary
    /// start, non-decreasing): `Ok(departure)` or why it is dropped.
    pub fn admit(&mut self, now: Duration, len: usize) -> Result<Duration, Drop> {
        let s = &self.spec;
        if s.loss > 0.0 && self.rng.unit() < s.loss {
            return Err(Drop::Loss);
        }
        if let Some(b) = s.burst {
            // Move the chain once per packet, then the state decides.
            let u = self.rng.unit();
            self.bad = if self.bad { u >= b.r() } else { u < b.p() };
            if self.bad {
                return Err(Drop::Loss);
            }
        }
        let mut t = now;
        if let Some(rate) = s.rate_bps {
            let start = self.link_free.max(now);
            if start - now > s.queue {
                return Err(Drop::Queue);
            }
            self.link_free = start + Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            t = self.link_free;
        }
        let mut d = s.delay.as_secs_f64();
        if !s.jitter.is_zero() {
            let j = s.jitter.as_secs_f64();
            d += match s.dist {
                Dist::Normal => j * self.rng.normal(),
                Dist::Uniform => j * (2.0 * self.rng.unit() - 1.0),
            };
        }
        let mut dep = t + Duration::from_secs_f64(d.max(0.0));
        if !s.reorder {
            dep = dep.max(self.last_departure);
        }
        self.last_departure = self.last_departure.max(dep);
        Ok(dep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn fixed_delay() {
        let mut p = Path::new("delay=25ms".parse().unwrap(), 1);
        assert_eq!(p.admit(ms(0), 100), Ok(ms(25)));
        assert_eq!(p.admit(ms(3), 1500), Ok(ms(28)));
    }

    #[test]
    fn random_loss_rate() {
        let mut p = Path::new("loss=3%".parse().unwrap(), 7);
        let n = 200_000;
        let lost = (0..n).filter(|_| p.admit(ms(0), 100).is_err()).count();
        let f = lost as f64 / n as f64;
        assert!((f - 0.03).abs() < 0.002, "{f}");
    }

    #[test]
    fn gilbert_elliott_average_and_burst_length() {
        let mut p = Path::new("burst=2%/3".parse().unwrap(), 11);
        let n = 400_000;
        let (mut lost, mut bursts, mut in_burst) = (0, 0, false);
        for _ in 0..n {
            let l = p.admit(ms(0), 100).is_err();
            lost += l as usize;
            if l && !in_burst {
                bursts += 1;
            }
            in_burst = l;
        }
        let f = lost as f64 / n as f64;
        let mean_len = lost as f64 / bursts as f64;
        assert!((f - 0.02).abs() < 0.003, "loss {f}");
        assert!((mean_len - 3.0).abs() < 0.3, "mean burst {mean_len}");
    }

    #[test]
    fn bottleneck_serialises_and_tail_drops() {
        // 1 Mbit/s: a 1250-byte packet takes 10 ms; queue 30 ms.
        let mut p = Path::new("rate=1mbit,queue=30ms".parse().unwrap(), 1);
        assert_eq!(p.admit(ms(0), 1250), Ok(ms(10)));
        assert_eq!(p.admit(ms(0), 1250), Ok(ms(20)));
        assert_eq!(p.admit(ms(0), 1250), Ok(ms(30)));
        assert_eq!(p.admit(ms(0), 1250), Ok(ms(40))); // waited 30 ms: still fits
        assert_eq!(p.admit(ms(0), 1250), Err(Drop::Queue)); // would wait 40 ms
        assert_eq!(p.admit(ms(35), 1250), Ok(ms(50)));
        // an idle link sends at once
        assert_eq!(p.admit(ms(100), 125), Ok(ms(101)));
    }

    #[test]
    fn jitter_keeps_order_unless_reorder() {
        let spec = "delay=25ms,jitter=10ms";
        let mut p = Path::new(spec.parse().unwrap(), 3);
        let mut last = Duration::ZERO;
        let mut sum = 0.0;
        for i in 0..10_000u64 {
            let d = p.admit(ms(i * 50), 100).unwrap();
            assert!(d >= last);
            last = d;
            sum += (d - ms(i * 50)).as_secs_f64();
        }
        // 50 ms apart: order is almost never forced, the mean stays at the delay.
        assert!((sum / 10_000.0 - 0.025).abs() < 0.0005, "{}", sum / 10_000.0);
        let mut p = Path::new(format!("{spec},reorder").parse().unwrap(), 3);
        let deps: Vec<_> = (0..1000u64).map(|i| p.admit(ms(i), 100).unwrap()).collect();
        assert!(deps.windows(2).any(|w| w[1] < w[0]), "1 ms apart with 10 ms jitter must reorder");
    }
}
