//! One direction of an emulated path, as text (`delay=25ms,loss=1%`) and as
//! numbers, plus its translation to `tc netem` arguments so that the same
//! profile runs on kernels with and without sch_netem.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Distribution of the per-packet jitter added to the fixed delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Uniform in [-jitter, +jitter] (netem's default).
    Uniform,
    /// Normal with standard deviation `jitter` (netem `distribution normal`).
    Normal,
}

/// Gilbert-Elliott bursty loss, given by what a reader cares about: the
/// average loss rate and the mean length of a loss burst (in packets). The
/// bad state drops every packet, the good state none (netem `gemodel p r 100% 0%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Long-run fraction of packets lost (0..1).
    pub loss: f64,
    /// Mean burst length in packets (>= 1).
    pub len: f64,
}

impl Burst {
    /// Per-packet probability of leaving the good state (netem's `p`).
    pub fn p(&self) -> f64 {
        self.loss * self.r() / (1.0 - self.loss)
    }
    /// Per-packet probability of leaving the bad state (netem's `r`).
    pub fn r(&self) -> f64 {
        1.0 / self.len
    }
}

/// What happens to packets going one way. The default is a perfect link.
#[derive(Debug, Clone, PartialEq)]
pub struct DirSpec {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Jitter: half-width (uniform) or standard deviation (normal); zero for none.
    pub jitter: Duration,
    /// Distribution of the jitter.
    pub dist: Dist,
    /// Let jitter reorder packets (each packet independent, as netem without
    /// a rate). Without it a packet never overtakes the one before it.
    pub reorder: bool,
    /// Independent random loss (0..1).
    pub loss: f64,
    /// Bursty loss; exclusive with `loss`.
    pub burst: Option<Burst>,
    /// Bottleneck rate in bit/s (IP bytes), none for unlimited.
    pub rate_bps: Option<u64>,
    /// Longest a packet may wait for the bottleneck before it is tail-dropped.
    pub queue: Duration,
    /// The queue as given in bytes (`queue=64K`), if it was; `queue` is then
    /// the time those bytes take at the rate.
    pub queue_bytes: Option<u64>,
}

impl Default for DirSpec {
    fn default() -> Self {
        DirSpec {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            dist: Dist::Normal,
            reorder: false,
            loss: 0.0,
            burst: None,
            rate_bps: None,
            queue: Duration::from_millis(100),
            queue_bytes: None,
        }
    }
}

fn parse_ms(key: &str, v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{key}={v}: {e} (e.g. 25ms)"))
}

fn parse_pct(key: &str, v: &str) -> Result<f64, String> {
    let n: f64 = v
        .strip_suffix('%')
        .ok_or_else(|| format!("{key}={v}: give a percentage, e.g. 1%"))?
        .parse()
        .map_err(|_| format!("{key}={v}: not a percentage"))?;
    if !(0.0..100.0).contains(&n) {
        return Err(format!("{key}={v}: must be at least 0 % and below 100 %"));
    }
    Ok(n / 100.0)
}

/// Parse a rate such as `3200kbit`, `2.5mbit`, `20000000bit`.
pub fn parse_rate(v: &str) -> Result<u64, String> {
    let t = v.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix("bit") {
        (n, 1.0)
    } else {
        return Err(format!("rate={v}: give a unit: bit, kbit, mbit or gbit"));
    };
    let n: f64 = num.parse().map_err(|_| format!("rate={v}: not a number"))?;
    let bps = n * mult;
    if !(bps >= 8000.0 && bps.is_finite()) {
        return Err(format!("rate={v}: at least 8kbit"));
    }
    Ok(bps as u64)
}

impl FromStr for DirSpec {
    type Err = String;
    /// Comma-separated `key=value` items: `delay=25ms`, `jitter=10ms`,
    /// `dist=normal|uniform`, `reorder`, `loss=1%`, `burst=2%/3` (average loss
    /// / mean burst length in packets), `rate=3200kbit`, `queue=100ms` (or in
    /// bytes: `queue=64K`, binary units, needs a rate).
    /// `none` or an empty string is a perfect link.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut d = DirSpec::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty() && *i != "none") {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            match k {
                "delay" => d.delay = parse_ms(k, v)?,
                "jitter" => d.jitter = parse_ms(k, v)?,
                "dist" => {
                    d.dist = match v {
                        "normal" => Dist::Normal,
                        "uniform" => Dist::Uniform,
                        _ => return Err(format!("dist={v}: normal or uniform")),
                    }
                }
                "reorder" => d.reorder = true,
                "loss" => d.loss = parse_pct(k, v)?,
                "burst" => {
                    let (l, n) = v.split_once('/').ok_or_else(|| format!("burst={v}: LOSS%/LEN, e.g. 2%/3"))?;
                    let len: f64 = n.parse().map_err(|_| format!("burst={v}: LEN is a number of packets"))?;
                    if !(len >= 1.0 && len.is_finite()) {
                        return Err(format!("burst={v}: LEN must be at least 1 packet"));
                    }
                    d.burst = Some(Burst { loss: parse_pct(k, l)?, len });
                }
                "rate" => d.rate_bps = Some(parse_rate(v)?),
                "queue" if v.ends_with('s') => d.queue = parse_ms(k, v)?,
                "queue" => {
                    d.queue_bytes =
                        Some(crate::units::parse_size(v).map_err(|e| format!("queue={v}: {e} (100ms or 64K)"))?)
                }
                _ => {
                    return Err(format!(
                        "unknown path item {item:?} (delay, jitter, dist, reorder, loss, burst, rate, queue)"
                    ))
                }
            }
        }
        if d.loss > 0.0 && d.burst.is_some() {
            return Err("loss= and burst= cannot be combined (netem has one loss model)".into());
        }
        if d.reorder && d.jitter.is_zero() {
            return Err("reorder needs jitter".into());
        }
        if let Some(b) = d.queue_bytes {
            let r = d.rate_bps.ok_or("a queue in bytes needs a rate")?;
            d.queue = Duration::from_secs_f64(b as f64 * 8.0 / r as f64);
        }
        Ok(d)
    }
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v.fract() == 0.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v}ms")
    }
}

fn pct(f: f64) -> String {
    format!("{}%", (f * 1e6).round() / 1e4)
}

impl fmt::Display for DirSpec {
    /// The canonical spec text (parses back to the same value); `none` for a perfect link.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        if !self.delay.is_zero() {
            items.push(format!("delay={}", ms(self.delay)));
        }
        if !self.jitter.is_zero() {
            items.push(format!("jitter={}", ms(self.jitter)));
            items.push(format!("dist={}", if self.dist == Dist::Normal { "normal" } else { "uniform" }));
            if self.reorder {
                items.push("reorder".into());
            }
        }
        if self.loss > 0.0 {
            items.push(format!("loss={}", pct(self.loss)));
        }
        if let Some(b) = self.burst {
            items.push(format!("burst={}/{}", pct(b.loss), b.len));
        }
        if let Some(r) = self.rate_bps {
            items.push(format!("rate={}kbit", r as f64 / 1000.0));
            items.push(match self.queue_bytes {
                Some(b) => format!("queue={b}"),
                None => format!("queue={}", ms(self.queue)),
            });
        }
        if items.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

impl DirSpec {
    /// True when packets pass untouched (no emulator needed).
    pub fn is_perfect(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss == 0.0
            && self.burst.is_none()
            && self.rate_bps.is_none()
    }

    /// Long-run fraction of packets the loss model drops (not counting queue overflow).
    pub fn expected_loss(&self) -> f64 {
        self.burst.map_or(self.loss, |b| b.loss)
    }

    /// A short human description, e.g. `25 ms ± 10 ms (normal), 1 % loss`.
    pub fn describe(&self) -> String {
        if self.is_perfect() {
            return "no impairment".into();
        }
        let mut parts = Vec::new();
        let msf = |d: Duration| format!("{}", (d.as_secs_f64() * 1e4).round() / 10.0);
        if !self.delay.is_zero() || !self.jitter.is_zero() {
            let mut s = format!("{} ms", msf(self.delay));
            if !self.jitter.is_zero() {
                s += &format!(
                    " ± {} ms ({}{})",
                    msf(self.jitter),
                    if self.dist == Dist::Normal { "normal, σ" } else { "uniform, half-width" },
                    if self.reorder { ", reordering" } else { ", no reordering" }
                );
            }
            parts.push(s);
        }
        if self.loss > 0.0 {
            parts.push(format!("{} % random loss", (self.loss * 1e4).round() / 100.0));
        }
        if let Some(b) = self.burst {
            parts.push(format!(
                "{} % bursty loss (Gilbert-Elliott, mean burst {} packets)",
                (b.loss * 1e4).round() / 100.0,
                b.len
            ));
        }
        if let Some(r) = self.rate_bps {
            parts.push(format!("{} kbit/s bottleneck, queue {} ms", r / 1000, msf(self.queue)));
        }
        parts.join(", ")
    }

    /// `tc qdisc add dev X root netem ARGS`: the same path on a kernel with sch_netem.
    ///
    /// Differences from the user-space engine: netem's queue limit counts
    /// packets (delayed ones too), so `queue` becomes a packet limit sized for
    /// full-size packets over delay + queue; without `reorder`, netem keeps
    /// packets in order only when it has a rate, so a 100gbit rate is added.
    pub fn netem_args(&self) -> Vec<String> {
        let us = |d: Duration| format!("{}us", d.as_micros());
        let mut a = vec!["delay".to_string(), us(self.delay)];
        if !self.jitter.is_zero() {
            a.push(us(self.jitter));
            if self.dist == Dist::Normal {
                a.extend(["distribution".into(), "normal".into()]);
            }
        }
        if self.loss > 0.0 {
            a.extend(["loss".into(), "random".into(), pct(self.loss)]);
        }
        if let Some(b) = self.burst {
            a.extend(["loss".into(), "gemodel".into(), pct(b.p()), pct(b.r()), "100%".into(), "0%".into()]);
        }
        let mut limit = 10_000u64;
        match self.rate_bps {
            Some(r) => {
                a.extend(["rate".into(), format!("{r}bit")]);
                let hold = self.delay + self.jitter * 3 + self.queue;
                limit = ((hold.as_secs_f64() * r as f64 / 8.0 / 1500.0).ceil() as u64).max(10);
            }
            None if !self.jitter.is_zero() && !self.reorder => a.extend(["rate".into(), "100gbit".into()]),
            None => {}
        }
        a.extend(["limit".into(), limit.to_string()]);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for s in [
            "none",
            "delay=25ms",
            "delay=25ms,jitter=10ms,dist=normal",
            "delay=50ms,jitter=5ms,dist=uniform,reorder,loss=3%",
            "delay=50ms,burst=2%/3",
            "delay=40ms,rate=3200kbit,queue=100ms",
            "rate=1000kbit,queue=62500",
        ] {
            let d: DirSpec = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<DirSpec>().unwrap(), d);
        }
        assert!("".parse::<DirSpec>().unwrap().is_perfect());
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for (s, why) in [
            ("delay=25", "25ms"),
            ("loss=1", "percentage"),
            ("loss=100%", "below 100"),
            ("loss=1%,burst=2%/3", "cannot be combined"),
            ("burst=2%/0.5", "at least 1"),
            ("rate=3", "unit"),
            ("reorder", "needs jitter"),
            ("delya=5ms", "unknown path item"),
            ("dist=pareto", "normal or uniform"),
            ("queue=64K", "needs a rate"),
        ] {
            let e = s.parse::<DirSpec>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn queue_in_bytes_is_time_at_the_rate() {
        let d: DirSpec = "rate=1mbit,queue=64K".parse().unwrap();
        assert_eq!(d.queue_bytes, Some(65536));
        assert_eq!(d.queue, Duration::from_secs_f64(65536.0 * 8.0 / 1e6));
    }

    #[test]
    fn burst_parameters_give_the_average_loss() {
        let b = Burst { loss: 0.02, len: 3.0 };
        // stationary share of the bad state = p / (p + r)
        let share = b.p() / (b.p() + b.r());
        assert!((share - 0.02).abs() < 1e-12);
    }

    #[test]
    fn netem_arguments() {
        let d: DirSpec = "delay=25ms,jitter=10ms,loss=1%".parse().unwrap();
        assert_eq!(
            d.netem_args().join(" "),
            "delay 25000us 10000us distribution normal loss random 1% rate 100gbit limit 10000"
        );
        let d: DirSpec = "delay=40ms,rate=3200kbit,queue=100ms".parse().unwrap();
        assert_eq!(d.netem_args().join(" "), "delay 40000us rate 3200000bit limit 38");
        let d: DirSpec = "burst=2%/4".parse().unwrap();
        assert!(d.netem_args().join(" ").contains("loss gemodel 0.5102% 25% 100% 0%"), "{:?}", d.netem_args());
    }
}
