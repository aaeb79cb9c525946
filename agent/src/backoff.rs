//! Reconnect pacing: capped exponential backoff with "equal jitter" (each
//! delay is drawn from the upper half of its step). Owns the schedule only;
//! the caller sleeps and decides when a connection counts as healthy again.
//!
//! Jitter keeps thousands of agents from reconnecting in lockstep after an
//! aggregator restart; keeping half of each step fixed means a flapping
//! aggregator is never hammered with near-zero delays.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The un-jittered step for the current attempt: base·2ⁿ, at most cap.
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay, with jitter from `u` in `[0, 1)`: within
    /// `[step/2, step]`.
    pub fn next_with(&mut self, u: f64) -> Duration {
        let step = self.step();
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(u.clamp(0.0, 1.0))
    }

    /// [`Backoff::next_with`] with a random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }

    /// After a healthy connection the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn steps_double_up_to_the_cap() {
        let mut b = Backoff::new(BASE, CAP);
        let steps: Vec<u64> = (0..10)
            .map(|_| {
                let s = b.step();
                b.next_with(0.0);
                s.as_millis() as u64
            })
            .collect();
        assert_eq!(
            steps,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
        for _ in 0..100 {
            b.next_with(1.0);
        }
        assert_eq!(b.step(), CAP, "the shift never overflows");
    }

    #[test]
    fn jitter_stays_within_the_upper_half_of_each_step() {
        let mut b = Backoff::new(BASE, CAP);
        assert_eq!(b.clone().next_with(0.0), BASE / 2);
        assert_eq!(b.clone().next_with(1.0), BASE);
        for _ in 0..50 {
            let step = b.step();
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
            assert!(d <= CAP);
        }
    }

    #[test]
    fn random_delays_actually_vary() {
        let delays: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Backoff::new(CAP, CAP).next_delay())
            .collect();
        assert!(delays.len() > 1, "{delays:?}");
    }

    #[test]
    fn reset_starts_from_base() {
        let mut b = Backoff::new(BASE, CAP);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.step(), BASE);
    }
}
