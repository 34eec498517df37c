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

use std::time::{Duration, Instant};

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
}
