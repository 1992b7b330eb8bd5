//! One rule for every rate headroom measures — swap-outs, an MLX process's
//! growth, MemAvailable's fall (issue 20): a rate is the change over the
//! shortest span of recent readings that is at least a minimum window long,
//! never over the few milliseconds between two samples. A sample taken right
//! after a PSI wake-up, 5 ms after the previous one, used to read the
//! swap-out counter's 5 ms delta (often 0) as "not swapping" and restart the
//! `swapout_hold` in the middle of 140–190 MiB/s of swapping; measured over
//! the window it reads what the kernel's counter says.

use std::collections::VecDeque;
use std::time::Duration;

/// The window for kernel counters (swap-outs, page-ins): one second, the
/// default `poll.interval`, so a steady sampler sees consecutive samples.
pub const COUNTER_WINDOW: Duration = Duration::from_secs(1);

/// Below this span no rate is given at all (None), whatever the window.
pub const MIN_SPAN: Duration = Duration::from_millis(100);

/// Readings kept: readings closer than a 64th of the window apart are not
/// stored, so this always spans the window.
const KEEP: usize = 256;

/// Recent `(at, value)` readings of one quantity and the rate over them.
#[derive(Clone, Debug)]
pub struct Window {
    min: Duration,
    /// A gap longer than this between two readings (the daemon was
    /// SIGSTOPped, the machine stalled it) starts the window again: the old
    /// readings say nothing about the rate now (issue 9).
    max_gap: Option<Duration>,
    readings: VecDeque<(Duration, f64)>,
}

impl Window {
    /// Rates over at least `min` (at least MIN_SPAN).
    pub fn new(min: Duration) -> Window {
        Window {
            min: min.max(MIN_SPAN),
            max_gap: None,
            readings: VecDeque::new(),
        }
    }

    /// The same, starting again after a gap longer than `gap`.
    pub fn with_max_gap(mut self, gap: Duration) -> Window {
        self.max_gap = Some(gap);
        self
    }

    /// Forgets every reading (the quantity was reset, or the process is new).
    pub fn clear(&mut self) {
        self.readings.clear();
    }

    /// Adds a gauge reading and returns its rate of change per second
    /// (negative when it fell): over the newest earlier reading at least
    /// `min` older than `at`; while no reading is that old yet (the first
    /// window after a start or a reset), over the oldest, if that spans at
    /// least MIN_SPAN. None otherwise. A reading not later than the last one
    /// is ignored (the clock is monotonic; a repeat adds nothing).
    pub fn push(&mut self, at: Duration, value: f64) -> Option<f64> {
        if let Some(&(t, v)) = self.readings.back().filter(|(t, _)| *t >= at) {
            return self.rate_at(t, v);
        }
        if let (Some(gap), Some((t, _))) = (self.max_gap, self.readings.back()) {
            if at.saturating_sub(*t) > gap {
                self.readings.clear();
            }
        }
        // Readings closer together than a 64th of the window are not kept
        // (each still gets its rate): at 2 ms samples near a crossing, KEEP
        // readings would otherwise span 0.5 s, not the window.
        if self
            .readings
            .back()
            .is_some_and(|(t, _)| at.saturating_sub(*t) < self.min / 64)
        {
            return self.rate_at(at, value);
        }
        self.readings.push_back((at, value));
        // Keep the newest reading that is at least `min` old and everything
        // after it; older ones can never be the base again.
        while self.readings.len() > 2
            && self
                .readings
                .get(1)
                .is_some_and(|(t, _)| at.saturating_sub(*t) >= self.min)
        {
            self.readings.pop_front();
        }
        while self.readings.len() > KEEP {
            self.readings.pop_front();
        }
        self.rate_at(at, value)
    }

    /// Adds a reading of a counter that only grows (pages swapped out since
    /// boot): a counter that went backwards was reset, so the window starts
    /// again from it and there is no rate (None) until it spans MIN_SPAN.
    pub fn push_counter(&mut self, at: Duration, value: u64) -> Option<f64> {
        let v = value as f64;
        if self.readings.back().is_some_and(|(_, last)| v < *last) {
            self.readings.clear();
        }
        self.push(at, v)
    }

    fn rate_at(&self, at: Duration, value: f64) -> Option<f64> {
        let base = self
            .readings
            .iter()
            .rev()
            .find(|(t, _)| at.saturating_sub(*t) >= self.min)
            .or_else(|| self.readings.front())?;
        let span = at.saturating_sub(base.0);
        (span >= MIN_SPAN).then(|| (value - base.1) / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const PAGE: f64 = 4096.0;

    #[test]
    fn readings_every_2ms_still_span_the_window() {
        // A 5 s growth window fed every 2 ms (samples near a crossing): a
        // burst 4 s ago must still be in the rate, as with 1 s samples.
        let mut w = Window::new(Duration::from_secs(5));
        let mut last = None;
        for i in 0..=3000u64 {
            let v = if i < 1000 { 0.0 } else { 100.0 }; // +100 at 2 s
            last = w.push(ms(i * 2), v);
        }
        // At 6 s: over the span since ~1 s (≥ 5 s), the +100 is in it.
        let r = last.expect("a rate");
        assert!((r - 100.0 / 5.0).abs() < 1.0, "{r}");
        assert!(w.readings.len() <= KEEP, "{}", w.readings.len());
    }

    #[test]
    fn a_sample_5ms_after_the_last_reads_the_rate_over_the_window() {
        // The run in issue 20: ~140 MiB/s of swap-outs (35,840 pages/s),
        // samples every 500 ms, then a PSI wake-up 5 ms after a sample in
        // which the counter had not moved.
        let mut w = Window::new(COUNTER_WINDOW);
        let per_ms = 35.84; // pages per millisecond
        let mut last = None;
        for t in (0..=3000).step_by(500) {
            last = w.push_counter(ms(t), (t as f64 * per_ms) as u64);
        }
        let steady = last.expect("a rate") * PAGE;
        assert!((steady / (1 << 20) as f64 - 140.0).abs() < 0.1, "{steady}");
        // 5 ms later, the same counter: the old rule read 0 B/s here.
        let woke = w
            .push_counter(ms(3005), (3000.0 * per_ms) as u64)
            .expect("a rate")
            * PAGE;
        assert!(woke / (1 << 20) as f64 > 130.0, "{woke}");
    }

    #[test]
    fn first_window_then_steady_state() {
        let mut w = Window::new(COUNTER_WINDOW);
        assert_eq!(w.push_counter(ms(0), 0), None, "one reading: no rate");
        assert_eq!(w.push_counter(ms(50), 10), None, "50 ms: below MIN_SPAN");
        // 200 ms after the start: no reading is 1 s old yet; the oldest is used.
        assert_eq!(w.push_counter(ms(200), 100), Some(500.0));
        assert_eq!(w.push_counter(ms(1000), 1000), Some(1000.0));
        // From now on the base is the newest reading at least 1 s old.
        assert_eq!(w.push_counter(ms(1500), 1000), Some((1000.0 - 100.0) / 1.3));
        assert_eq!(w.push_counter(ms(2000), 1000), Some(0.0));
    }

    #[test]
    fn a_counter_reset_restarts_the_window() {
        let mut w = Window::new(COUNTER_WINDOW);
        w.push_counter(ms(0), 5_000);
        assert_eq!(w.push_counter(ms(1000), 6_000), Some(1000.0));
        assert_eq!(w.push_counter(ms(2000), 10), None, "went backwards");
        assert_eq!(w.push_counter(ms(2500), 510), Some(1000.0));
    }

    #[test]
    fn gauges_fall_negative_and_repeats_add_nothing() {
        let gib = (1u64 << 30) as f64;
        let mut w = Window::new(ms(250));
        w.push(ms(0), 8.0 * gib);
        assert_eq!(w.push(ms(500), 7.0 * gib), Some(-2.0 * gib));
        // The same instant again (or an earlier one) changes nothing.
        assert_eq!(w.push(ms(500), 7.0 * gib), Some(-2.0 * gib));
        assert_eq!(w.push(ms(400), 1.0), Some(-2.0 * gib));
        // 10 ms later: still over at least 250 ms.
        let r = w.push(ms(510), 7.0 * gib).expect("a rate");
        assert!((r + 2.0 * gib * 0.5 / 0.51).abs() < 1.0, "{r}");
    }

    #[test]
    fn a_gap_longer_than_max_gap_starts_again() {
        // Issue 9: a daemon stopped for 60 s must not average 60 s of growth.
        let mut w = Window::new(COUNTER_WINDOW).with_max_gap(Duration::from_secs(5));
        w.push(ms(0), 0.0);
        assert_eq!(w.push(ms(1000), 100.0), Some(100.0));
        assert_eq!(w.push(ms(61_000), 100.0 + 6000.0), None, "after the gap");
        assert_eq!(w.push(ms(61_500), 100.0 + 6000.0 + 500.0), Some(1000.0));
    }

    #[test]
    fn memory_stays_bounded_at_the_fastest_poll() {
        let mut w = Window::new(Duration::from_secs(3600));
        for t in 0..100_000u64 {
            w.push(ms(t * 10), t as f64);
        }
        assert!(w.readings.len() <= KEEP);
    }
}
