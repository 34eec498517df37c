//! A/B path profiles: a name such as `rtt50-loss1` made of `-`-separated
//! parts, turned into the two directions of the path ([`DirSpec`]s) that
//! `scripts/ab.sh` sets up (`h3live pathemu profile NAME` prints them).
//!
//! The grammar (each part at most once; every part but `rate` and `step`
//! applies to both directions):
//! - `clean`: nothing (only alone);
//! - `rttN`: N ms round trip, N/2 ms one-way delay each way;
//! - `lossN`: N % random loss each way;
//! - `jitterN`: normal jitter with σ = N/2 ms each way (the round trip varies
//!   by about ±N ms);
//! - `reorder`: let jitter reorder packets (needs `jitterN`; by default a
//!   packet never overtakes the one before it);
//! - `burst` / `burstN`: N % (default 2) bursty loss each way, Gilbert-Elliott
//!   with a mean burst of 3 packets;
//! - `rate` / `rateK`: a downstream bottleneck of K kbit/s (default: the
//!   caller's `--rate-default`), 100 ms queue, tail drop;
//! - `step`: the ABR rate step, set by the A/B driver with tc tbf on the
//!   origin's veth on a schedule; with it, a bare `rate` means the step, not
//!   an emulator bottleneck (`rateK` still is one).

use std::time::Duration;

use super::spec::{Burst, DirSpec};

/// Queue of a `rate` bottleneck.
const RATE_QUEUE: Duration = Duration::from_millis(100);
/// Default loss of a bare `burst`, in percent.
const BURST_DEFAULT_PCT: f64 = 2.0;
/// Mean burst length of `burst`, in packets.
const BURST_LEN: f64 = 3.0;

/// A parsed profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Origin -> client.
    pub down: DirSpec,
    /// Client -> origin.
    pub up: DirSpec,
    /// The ABR rate step is part of it.
    pub step: bool,
}

/// The parts, for error messages.
pub const PARTS: &str = "clean, rttN, lossN, jitterN, reorder, burst[N], rate[K], step";

/// The number after a part's word (`50` in `rtt50`): `None` without one.
fn number(part: &str, word: &str, n: &str) -> Result<Option<f64>, String> {
    if n.is_empty() {
        return Ok(None);
    }
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && n.bytes().all(|b| b.is_ascii_digit() || b == b'.') => Ok(Some(v)),
        _ => Err(format!("{part:?}: {word} takes a number, e.g. {word}50")),
    }
}

/// Milliseconds as a duration, to the nanosecond (as the spec text parses back).
fn ms(v: f64) -> Duration {
    Duration::from_nanos((v * 1e6).round() as u64)
}

impl Profile {
    /// Parse profile `name`; `rate_default_kbit` is what a bare `rate` means.
    pub fn parse(name: &str, rate_default_kbit: Option<u64>) -> Result<Profile, String> {
        let mut p = Profile { down: DirSpec::default(), up: DirSpec::default(), step: false };
        if name == "clean" {
            return Ok(p);
        }
        let parts: Vec<&str> = name.split('-').collect();
        p.step = parts.contains(&"step");
        let mut seen = Vec::new();
        for part in parts {
            let word = part.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
            let n = number(part, word, &part[word.len()..])?;
            if seen.contains(&word) {
                return Err(format!("{name:?}: {word} given twice"));
            }
            seen.push(word);
            match (word, n) {
                ("rtt", Some(n)) => p.both(|d| d.delay = ms(n / 2.0)),
                ("loss", Some(n)) => {
                    let loss = n / 100.0;
                    if loss >= 1.0 {
                        return Err(format!("{part:?}: loss below 100 %"));
                    }
                    p.both(|d| d.loss = loss)
                }
                ("jitter", Some(n)) => p.both(|d| d.jitter = ms(n / 2.0)),
                ("reorder", None) => p.both(|d| d.reorder = true),
                ("burst", n) => {
                    let loss = n.unwrap_or(BURST_DEFAULT_PCT) / 100.0;
                    if loss >= 1.0 {
                        return Err(format!("{part:?}: loss below 100 %"));
                    }
                    p.both(|d| d.burst = Some(Burst { loss, len: BURST_LEN }))
                }
                // With the step, a bare rate is the step's (tc tbf), not the emulator's.
                ("rate", None) if p.step => {}
                ("rate", n) => {
                    let kbit = match n {
                        Some(k) => k,
                        None => rate_default_kbit.ok_or(format!("{name:?}: a bare rate needs --rate-default"))? as f64,
                    };
                    if kbit < 8.0 {
                        return Err(format!("{part:?}: at least 8 kbit/s"));
                    }
                    p.down.rate_bps = Some((kbit * 1000.0) as u64);
                    p.down.queue = RATE_QUEUE;
                }
                ("step", None) => {}
                ("rtt" | "loss" | "jitter", None) => {
                    return Err(format!("{part:?}: {word} takes a number, e.g. {word}50"))
                }
                _ => return Err(format!("{name:?}: unknown part {part:?} (parts: {PARTS})")),
            }
        }
        for d in [&p.down, &p.up] {
            if d.reorder && d.jitter.is_zero() {
                return Err(format!("{name:?}: reorder needs jitterN"));
            }
            if d.loss > 0.0 && d.burst.is_some() {
                return Err(format!("{name:?}: loss and burst cannot be combined (one loss model)"));
            }
        }
        Ok(p)
    }

    /// Apply `f` to both directions.
    fn both(&mut self, f: impl Fn(&mut DirSpec)) {
        f(&mut self.down);
        f(&mut self.up);
    }

    /// What the path does, e.g. `25 ms, 1 % random loss each way`.
    pub fn describe(&self) -> String {
        if self.down.is_perfect() && self.up.is_perfect() {
            "no impairment".into()
        } else if self.down == self.up {
            format!("{} each way", self.down.describe())
        } else {
            format!("down: {}; up: {}", self.down.describe(), self.up.describe())
        }
    }

    /// `KEY='value'` lines for a shell to `eval`: `DOWN` and `UP` (spec
    /// text, `none` for a perfect link), `STEP` (1 or 0) and `DESC`.
    pub fn shell(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        format!(
            "DOWN={}\nUP={}\nSTEP={}\nDESC={}\n",
            q(&self.down.to_string()),
            q(&self.up.to_string()),
            u8::from(self.step),
            q(&self.describe())
        )
    }

    /// The same as JSON: `{"down", "up", "step", "desc"}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "down": self.down.to_string(),
            "up": self.up.to_string(),
            "step": self.step,
            "desc": self.describe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(name: &str) -> (String, String, bool) {
        let p = Profile::parse(name, Some(3192)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // What is printed parses back to the same path.
        assert_eq!(p.down.to_string().parse::<DirSpec>().unwrap(), p.down, "{name}");
        assert_eq!(p.up.to_string().parse::<DirSpec>().unwrap(), p.up, "{name}");
        (p.down.to_string(), p.up.to_string(), p.step)
    }

    #[test]
    fn default_profiles() {
        let s = |d: &str, u: &str, step| (d.to_string(), u.to_string(), step);
        assert_eq!(specs("clean"), s("none", "none", false));
        assert_eq!(specs("rtt50"), s("delay=25ms", "delay=25ms", false));
        assert_eq!(specs("rtt50-loss1"), s("delay=25ms,loss=1%", "delay=25ms,loss=1%", false));
        assert_eq!(specs("rtt100-loss3"), s("delay=50ms,loss=3%", "delay=50ms,loss=3%", false));
        assert_eq!(
            specs("rtt50-jitter20"),
            s("delay=25ms,jitter=10ms,dist=normal", "delay=25ms,jitter=10ms,dist=normal", false)
        );
        assert_eq!(specs("rtt100-burst"), s("delay=50ms,burst=2%/3", "delay=50ms,burst=2%/3", false));
        assert_eq!(specs("rtt80-rate"), s("delay=40ms,rate=3192kbit,queue=100ms", "delay=40ms", false));
    }

    #[test]
    fn every_part() {
        assert_eq!(specs("rtt25").0, "delay=12.5ms");
        assert_eq!(specs("loss0.5").0, "loss=0.5%");
        assert_eq!(specs("jitter20-reorder").0, "jitter=10ms,dist=normal,reorder");
        assert_eq!(specs("burst5").0, "burst=5%/3");
        assert_eq!(specs("rate1000"), ("rate=1000kbit,queue=100ms".into(), "none".into(), false));
        // Parts in any order, the same path.
        assert_eq!(specs("loss1-rtt50"), specs("rtt50-loss1"));
        // The rate step: a bare rate is the step's, not an emulator bottleneck.
        assert_eq!(specs("rate-step"), ("none".into(), "none".into(), true));
        assert_eq!(specs("rtt80-rate-step"), ("delay=40ms".into(), "delay=40ms".into(), true));
        assert_eq!(specs("step-rate900").0, "rate=900kbit,queue=100ms");
    }

    #[test]
    fn bad_profiles_are_refused_with_a_reason() {
        for (name, why) in [
            ("", "unknown part"),
            ("rtt", "takes a number"),
            ("rttx", "unknown part"),
            ("rtt50-", "unknown part"),
            ("rtt5x0", "unknown part"),
            ("rtt-5", "takes a number"),
            ("clean-rtt50", "unknown part"),
            ("rtt50-rtt80", "given twice"),
            ("loss100", "below 100"),
            ("reorder", "needs jitter"),
            ("loss1-burst", "cannot be combined"),
            ("rate4", "at least 8"),
            ("Rtt50", "unknown part"),
        ] {
            let e = Profile::parse(name, Some(3192)).unwrap_err();
            assert!(e.contains(why), "{name:?}: {e}");
        }
        assert!(Profile::parse("rtt80-rate", None).unwrap_err().contains("--rate-default"));
    }

    #[test]
    fn printed_forms() {
        let p = Profile::parse("rtt80-rate", Some(3192)).unwrap();
        assert_eq!(
            p.shell(),
            "DOWN='delay=40ms,rate=3192kbit,queue=100ms'\nUP='delay=40ms'\nSTEP=0\n\
             DESC='down: 40 ms, 3192 kbit/s bottleneck, queue 100 ms; up: 40 ms'\n"
        );
        let p = Profile::parse("rtt50-loss1", None).unwrap();
        assert_eq!(p.describe(), "25 ms, 1 % random loss each way");
        assert_eq!(p.json()["step"], false);
        assert_eq!(Profile::parse("clean", None).unwrap().describe(), "no impairment");
    }
}
