//! When to sample a channel's pilot level: in the middle of each plateau,
//! timed from the PIO's edges, or every millisecond while the pilot is
//! steady.
//!
//! Owns the schedule and the pairing of a high and a low sample into the
//! `(high_mv, low_mv)` that `rig::capture` classifies. A plateau is sampled
//! half its previous length after the edge that starts it (the same
//! plateau one period earlier); one too short for the ADC's conversion
//! ([`MIN_PLATEAU_NS`]) is not sampled.

/// The shortest plateau sampled: an MCP3208 conversion at 2 MHz SPI takes
/// about 12 us, and it must fall inside the plateau.
pub const MIN_PLATEAU_NS: u64 = 30_000;
/// With no edge for this long the pilot is steady: sampled every
/// [`STEADY_EVERY_NS`], high and low alike.
pub const STEADY_AFTER_NS: u64 = 3_000_000;
pub const STEADY_EVERY_NS: u64 = 1_000_000;

/// Which plateau a sample is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plateau {
    High,
    Low,
    /// No PWM: one level, reported as both.
    Steady,
}

#[derive(Debug, Clone, Default)]
pub struct Sampler {
    last_rise_ns: Option<u64>,
    last_fall_ns: Option<u64>,
    high_len_ns: Option<u64>,
    low_len_ns: Option<u64>,
    last_edge_ns: u64,
    due: Option<(u64, Plateau)>,
    high_mv: Option<i32>,
}

impl Sampler {
    /// A pilot edge (from the PIO).
    pub fn handle_edge(&mut self, t_ns: u64, rising: bool) {
        self.last_edge_ns = t_ns;
        let (plateau, len) = if rising {
            self.low_len_ns = self.last_fall_ns.map(|f| t_ns.saturating_sub(f));
            self.last_rise_ns = Some(t_ns);
            (Plateau::High, self.high_len_ns)
        } else {
            self.high_len_ns = self.last_rise_ns.map(|r| t_ns.saturating_sub(r));
            self.last_fall_ns = Some(t_ns);
            (Plateau::Low, self.low_len_ns)
        };
        self.due = len
            .filter(|&l| l >= MIN_PLATEAU_NS)
            .map(|l| (t_ns.saturating_add(l / 2), plateau));
    }

    /// A sample due at `now_ns`, at most once.
    pub fn poll(&mut self, now_ns: u64) -> Option<Plateau> {
        match self.due {
            Some((at, p)) if now_ns >= at => {
                self.due = None;
                Some(p)
            }
            Some(_) => None,
            None if now_ns.saturating_sub(self.last_edge_ns) >= STEADY_AFTER_NS => {
                // Next steady sample a millisecond on; a PWM restarting
                // replaces it.
                self.last_edge_ns = now_ns.saturating_sub(STEADY_AFTER_NS - STEADY_EVERY_NS);
                self.high_mv = None;
                Some(Plateau::Steady)
            }
            None => None,
        }
    }

    /// The sampled level for `plateau`: `(high_mv, low_mv)` for `rig` once
    /// a pair is complete.
    pub fn handle_sample(&mut self, plateau: Plateau, mv: i32) -> Option<(i32, i32)> {
        match plateau {
            Plateau::High => {
                self.high_mv = Some(mv);
                None
            }
            Plateau::Low => self.high_mv.take().map(|h| (h, mv)),
            Plateau::Steady => Some((mv, mv)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateaus_are_sampled_in_their_middle_from_the_second_period_on() {
        let mut s = Sampler::default();
        // 1 kHz at 26.67 %.
        let (p, h) = (1_000_000u64, 266_700u64);
        let mut samples = Vec::new();
        for k in 0..3u64 {
            let r = 10_000 + k * p;
            s.handle_edge(r, true);
            for t in (r..r + h).step_by(1_000) {
                if let Some(pl) = s.poll(t) {
                    samples.push((t, pl));
                }
            }
            s.handle_edge(r + h, false);
            for t in (r + h..r + p).step_by(1_000) {
                if let Some(pl) = s.poll(t) {
                    samples.push((t, pl));
                }
            }
        }
        // Period 0 only measures; from period 1 on each plateau is sampled
        // half its previous length after its edge (polled every microsecond from each edge).
        assert_eq!(
            samples,
            vec![
                (1_144_000, Plateau::High),
                (1_643_700, Plateau::Low),
                (2_144_000, Plateau::High),
                (2_643_700, Plateau::Low),
            ]
        );
        assert_eq!(s.handle_sample(Plateau::High, 5_986), None);
        assert_eq!(
            s.handle_sample(Plateau::Low, -12_000),
            Some((5_986, -12_000))
        );
        assert_eq!(s.handle_sample(Plateau::Low, -12_000), None, "a pair once");
    }

    #[test]
    fn a_plateau_too_short_to_convert_is_not_sampled() {
        let mut s = Sampler::default();
        // 2 % duty: 20 us high.
        s.handle_edge(0, true);
        s.handle_edge(20_000, false);
        s.handle_edge(1_000_000, true);
        for t in (1_000_000..1_020_000).step_by(500) {
            assert_eq!(s.poll(t), None);
        }
    }

    #[test]
    fn a_steady_pilot_is_sampled_every_millisecond() {
        let mut s = Sampler::default();
        s.handle_edge(0, false);
        let hits: Vec<u64> = (0..10_000_000u64)
            .step_by(100_000)
            .filter(|&t| s.poll(t) == Some(Plateau::Steady))
            .collect();
        assert_eq!(hits.first(), Some(&3_000_000));
        assert_eq!(hits.len(), 7, "{hits:?}");
        assert_eq!(
            s.handle_sample(Plateau::Steady, 8_983),
            Some((8_983, 8_983))
        );
    }
}
