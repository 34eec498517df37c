//! The minimum rate of an upload body.
//!
//! The idle timeout only catches a body that sends nothing; one that drips a
//! byte every few seconds would hold its connection, its ingest slot and a
//! growing object for ever. An upload must bring at least `min_bytes` in
//! every `window` (consecutive windows from the start of the request), else
//! it is aborted with 408. The defaults (1 KiB per 30 s) never touch a real
//! encoder: ffmpeg's LL-DASH bodies bring a fragment per frame or per
//! fraction of a segment (kilobytes per second), and even a non-fragmented
//! 30 s segment arrives whole within its window. An encoder's persistent
//! connection idling *between* requests is not a body and is not measured.
//!
//! The floor is shared with the upload's connection ([`SharedFloor`]): when
//! its listener's ingest budget is full, the transport closes connections
//! whose upload is behind the floor *pro rata* ([`RateFloor::behind`]) at
//! once, instead of waiting for the end of the window.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a window must have run before [`RateFloor::behind`] judges it
/// (a new body, or one between two fragments, is not judged on its first
/// milliseconds).
pub const GRACE: Duration = Duration::from_secs(1);

/// What a too-slow body brought in the window that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow {
    /// Bytes received in that window.
    pub got: u64,
}

/// Tracks one upload body against the minimum rate.
#[derive(Debug)]
pub struct RateFloor {
    /// Bytes each window must bring (0: no floor).
    min_bytes: u64,
    /// Length of a window.
    window: Duration,
    /// Start of the current window.
    start: Instant,
    /// Bytes received in the current window.
    got: u64,
}

impl RateFloor {
    /// A floor of `min_bytes` per `window`, starting now.
    pub fn new(min_bytes: u64, window: Duration) -> RateFloor {
        RateFloor { min_bytes, window, start: Instant::now(), got: 0 }
    }

    /// `n` bytes arrived at `now`. Fails if a window that ended before them
    /// brought less than the minimum.
    pub fn add(&mut self, n: u64, now: Instant) -> Result<(), TooSlow> {
        if self.min_bytes > 0 && !self.window.is_zero() {
            while now.duration_since(self.start) >= self.window {
                if self.got < self.min_bytes {
                    return Err(TooSlow { got: self.got });
                }
                self.start += self.window;
                self.got = 0;
            }
        }
        self.got += n;
        Ok(())
    }

    /// True if, at `now`, the body is behind the floor pro rata: the current
    /// window has run for at least [`GRACE`] and brought less than its share
    /// of `min_bytes` so far, or a window ended short (the next byte will
    /// fail it). What a full ingest budget applies early.
    pub fn behind(&self, now: Instant) -> bool {
        if self.min_bytes == 0 || self.window.is_zero() {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= self.window {
            // The window ended: short, or nothing since in the next one.
            return self.got < self.min_bytes || elapsed >= self.window + GRACE.min(self.window);
        }
        elapsed >= GRACE.min(self.window)
            && u128::from(self.got) * self.window.as_nanos() < u128::from(self.min_bytes) * elapsed.as_nanos()
    }
}

/// An upload's [`RateFloor`], shared between the core (which counts the
/// body's bytes in it) and the upload's connection (which asks whether it
/// keeps pace when its listener's ingest budget is full). Unset until the
/// core starts it.
#[derive(Debug, Default)]
pub struct SharedFloor(Mutex<Option<RateFloor>>);

impl SharedFloor {
    /// Start the floor of `min_bytes` per `window`, now.
    pub(super) fn start(&self, min_bytes: u64, window: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(RateFloor::new(min_bytes, window));
    }

    /// [`RateFloor::add`]; a floor not started takes anything.
    pub(super) fn add(&self, n: u64, now: Instant) -> Result<(), TooSlow> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut().map_or(Ok(()), |f| f.add(n, now))
    }

    /// [`RateFloor::behind`]; false before the core started it.
    pub fn behind(&self, now: Instant) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|f| f.behind(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drip_fails_and_bursts_pass() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut f = RateFloor { min_bytes: 1000, window: s(10), start: t0, got: 0 };
        // A fragment per window, however late in it, passes.
        assert!(f.add(24, t0).is_ok());
        assert!(f.add(5000, t0 + s(9)).is_ok());
        assert!(f.add(1000, t0 + s(19)).is_ok());
        // One byte every few seconds fails at the first byte after a window.
        let mut f = RateFloor { min_bytes: 1000, window: s(10), start: t0, got: 0 };
        for i in 0..4 {
            assert!(f.add(1, t0 + s(3 * i)).is_ok());
        }
        assert_eq!(f.add(1, t0 + s(12)), Err(TooSlow { got: 4 }));
        // No floor.
        let mut f = RateFloor::new(0, s(10));
        assert!(f.add(1, Instant::now() + s(100)).is_ok());
    }

    #[test]
    fn behind_is_pro_rata_after_the_grace() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = RateFloor { min_bytes: 1000, window: ms(10_000), start: t0, got: 0 };
        // Nothing yet: not judged in the first second.
        assert!(!f.behind(t0 + ms(900)));
        assert!(f.behind(t0 + ms(1100)));
        // 300 bytes by 2 s is ahead of 200; by 4 s it is behind 400.
        f.add(300, t0 + ms(1500)).unwrap();
        assert!(!f.behind(t0 + ms(2000)));
        assert!(f.behind(t0 + ms(4000)));
        // A window that ended short is behind; one that ended full is not, for a second.
        f.add(700, t0 + ms(9000)).unwrap();
        assert!(!f.behind(t0 + ms(10_500)));
        assert!(f.behind(t0 + ms(11_500)));
        assert!(!RateFloor::new(0, ms(1000)).behind(t0 + ms(60_000)));
    }
}
