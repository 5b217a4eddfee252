//! Pilot edge capture: the PIO program and the conversion of its FIFO
//! words into edge instants for `rig` capture.
//!
//! Owns the program text ([`program`]), the word format and its timing
//! ([`EdgeDecoder`]): which edge a word is, how many system clocks passed
//! since the previous word (counting the cycles the program spends outside
//! its counting loops), the 31-bit count's wrap-around, and the conversion
//! to the microseconds `rig` works in.
//!
//! One state machine per channel, `jmp pin` on the comparator output,
//! counting X down once per two system clocks while it waits for the pilot
//! to change. A word is `(X & 0x7fff_ffff) << 1 | rising`, pushed at each
//! change: rising and falling words strictly alternate (a lost word shows
//! as two of a kind in a row and is counted, [`EdgeDecoder::lost`]).
//!
//! Timing, in system clocks, with `c` the cycle of a word's `in x`:
//! the wait loops take 2 cycles per count; after a word the program spends
//! 3 cycles (`in`, `in`, `push`) before it waits again; a rising edge is
//! pushed 1 cycle after `jmp pin` sees it, a falling edge 2 cycles after
//! (`jmp pin`, `jmp fall`). So a rising word is `c_prev + 4 + 2 n` and a
//! falling word `c_prev + 5 + 2 n` cycles after the previous word, `n` the
//! counts between them. When X itself wraps (every 2^32 counts, 68.7 s) the
//! loop spends one extra cycle (`jmp` back), an 8 ns error per 68.7 s that
//! is not corrected. The 31 bits in a word wrap every 2^31 counts (34.4 s
//! at 125 MHz); how many times they wrapped between two words comes from
//! the 1 MHz timer read when the words were drained
//! ([`EdgeDecoder::handle_word`]).
//!
//! Resolution: an edge is seen within 2 system clocks, 16 ns at 125 MHz.
//! `rig` takes microseconds, so the instants handed to it are floored to
//! the microsecond.

/// System clock the PIO runs at (clock divider 1).
pub const SYS_HZ: u32 = 125_000_000;
/// Nanoseconds per system clock.
pub const NS_PER_CYCLE: u64 = 8;
/// System clocks per count of the wait loops.
pub const CYCLES_PER_COUNT: u64 = 2;
/// The count bits in a word.
pub const COUNT_BITS: u32 = 31;
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;
/// Cycles from the previous word's `in x` to a rising word's, beyond the counts.
pub const RISE_OVERHEAD_CYCLES: u64 = 4;
/// Cycles from the previous word's `in x` to a falling word's, beyond the counts.
pub const FALL_OVERHEAD_CYCLES: u64 = 5;
/// Cycles from `jmp pin` seeing a rising edge to its word's `in x`.
const RISE_LATENCY_CYCLES: u64 = 1;
/// Cycles from `jmp pin` seeing a falling edge to its word's `in x`.
const FALL_LATENCY_CYCLES: u64 = 2;
/// The state machine runs `set y, 1` and `mov x, !null` once and waits from
/// cycle 2 with X all ones: relative to cycle 0 (the enable), the first
/// word is timed as if a word (count all ones) had been at cycle
/// `-START_CYCLES`.
const START_CYCLES: u64 = 1;
/// Timer slack when counting wraps: the 1 MHz timer's own step and the
/// anchor read, in counts.
const WRAP_SLACK_COUNTS: u64 = 2 * 1_000 / (NS_PER_CYCLE * CYCLES_PER_COUNT) + 1;

/// The PIO program (`pioasm` text, assembled at build time).
#[must_use]
pub fn program() -> pio::Program<32> {
    pio::pio_asm!(
        "    set y, 1             ; once: the bit rising words carry",
        "    mov x, !null         ; once: count down from all ones",
        ".wrap_target",
        "wait_high:",
        "    jmp pin rise         ; pilot high: a rising edge",
        "    jmp x-- wait_high    ; else count (2 cycles per count)",
        "    jmp wait_high        ; X wrapped: keep waiting",
        "rise:",
        "    in x, 31             ; the count at the edge",
        "    in y, 1              ; 1: rising",
        "    push noblock         ; a full FIFO drops it: counted as a loss",
        "wait_low:",
        "    jmp pin still_high",
        "    jmp fall",
        "still_high:",
        "    jmp x-- wait_low",
        "    jmp wait_low",
        "fall:",
        "    in x, 31",
        "    in null, 1           ; 0: falling",
        "    push noblock",
        ".wrap",
    )
    .program
}

/// A pilot edge, on the fixture's time base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// When `jmp pin` saw the new level, nanoseconds (within 16 ns after
    /// the comparator changed).
    pub t_ns: u64,
    pub rising: bool,
}

impl Edge {
    /// The instant in `rig`'s microseconds (floored).
    #[must_use]
    pub fn t_us(&self) -> u64 {
        self.t_ns / 1_000
    }
}

/// One channel's words to edges.
#[derive(Debug, Clone)]
pub struct EdgeDecoder {
    /// Nanoseconds at cycle 0 (the state machine's enable).
    anchor_ns: u64,
    /// Cycle of the previous word's `in x` (offset by `START_CYCLES` so it
    /// stays unsigned), its count bits and its kind.
    prev_cycle: u64,
    prev_count: u32,
    prev_rising: Option<bool>,
    lost: u32,
}

impl EdgeDecoder {
    /// A decoder for a state machine enabled at timer value `start_us`.
    #[must_use]
    pub fn new(start_us: u64) -> Self {
        Self {
            anchor_ns: start_us.saturating_mul(1_000),
            prev_cycle: 0,
            prev_count: COUNT_MASK,
            prev_rising: None,
            lost: 0,
        }
    }

    /// Words that never arrived (two edges of a kind in a row).
    #[must_use]
    pub fn lost(&self) -> u32 {
        self.lost
    }

    /// One FIFO word, drained at timer value `drained_us` (no earlier than
    /// the word was pushed, and less than 34 s later).
    pub fn handle_word(&mut self, word: u32, drained_us: u64) -> Edge {
        let rising = word & 1 == 1;
        let count = (word >> 1) & COUNT_MASK;
        // X counts down: counts since the previous word, modulo 2^31.
        let n_mod = u64::from(self.prev_count.wrapping_sub(count) & COUNT_MASK);
        let overhead = if rising {
            RISE_OVERHEAD_CYCLES
        } else {
            FALL_OVERHEAD_CYCLES
        };
        // Whole 2^31 wraps: as many as fit before the drain instant.
        let prev_ns = self.ns_at(self.prev_cycle);
        let elapsed_counts = drained_us.saturating_mul(1_000).saturating_sub(prev_ns)
            / (NS_PER_CYCLE * CYCLES_PER_COUNT)
            + WRAP_SLACK_COUNTS;
        let wraps = elapsed_counts.saturating_sub(n_mod) >> COUNT_BITS;
        let n = n_mod.saturating_add(wraps << COUNT_BITS);
        let cycle = self
            .prev_cycle
            .saturating_add(overhead)
            .saturating_add(n.saturating_mul(CYCLES_PER_COUNT));
        if self.prev_rising == Some(rising) {
            self.lost = self.lost.saturating_add(1);
        }
        self.prev_cycle = cycle;
        self.prev_count = count;
        self.prev_rising = Some(rising);
        let latency = if rising {
            RISE_LATENCY_CYCLES
        } else {
            FALL_LATENCY_CYCLES
        };
        Edge {
            t_ns: self.ns_at(cycle.saturating_sub(latency)),
            rising,
        }
    }

    /// Nanoseconds at a decoder cycle (offset by `START_CYCLES`).
    fn ns_at(&self, cycle: u64) -> u64 {
        self.anchor_ns.saturating_add(
            cycle
                .saturating_sub(START_CYCLES)
                .saturating_mul(NS_PER_CYCLE),
        )
    }
}

#[cfg(test)]
pub(crate) mod sim {
    //! A cycle-by-cycle interpreter of the PIO instructions the edge
    //! program uses (`jmp` with `pin`/`x--`/always, `in`, `push`, `set`),
    //! after the RP2040 datasheet's encoding, so the decoder's timing is
    //! checked against the program, not against itself.

    /// Run `program` on a pin that is `level(cycle)`, for `cycles`; the
    /// words pushed, with the cycle each was pushed at.
    pub fn run(
        program: &pio::Program<32>,
        level: impl Fn(u64) -> bool,
        cycles: u64,
        x0: u32,
    ) -> Vec<(u64, u32)> {
        let code = &program.code;
        let (mut pc, mut x, mut y, mut isr, mut isr_count) = (0usize, x0, 0u32, 0u32, 0u32);
        let mut out = Vec::new();
        for c in 0..cycles {
            let ins = code[pc];
            let op = ins >> 13;
            let mut next = pc + 1;
            match op {
                0b000 => {
                    let cond = (ins >> 5) & 7;
                    let target = usize::from(ins & 0x1f);
                    let take = match cond {
                        0b000 => true,
                        0b010 => {
                            let t = x != 0;
                            x = x.wrapping_sub(1);
                            t
                        }
                        0b110 => level(c),
                        other => panic!("jmp condition {other:03b} not in the edge program"),
                    };
                    if take {
                        next = target;
                    }
                }
                0b010 => {
                    let src = (ins >> 5) & 7;
                    let bits = u32::from(ins & 0x1f);
                    let bits = if bits == 0 { 32 } else { bits };
                    let v = match src {
                        0b001 => x,
                        0b010 => y,
                        0b011 => 0,
                        other => panic!("in source {other:03b} not in the edge program"),
                    };
                    let v = if bits == 32 { v } else { v & ((1 << bits) - 1) };
                    // Shift left (the board's ISR direction).
                    isr = if bits == 32 { v } else { (isr << bits) | v };
                    isr_count += bits;
                }
                0b100 => {
                    assert_eq!(ins & 0x80, 0, "only push");
                    out.push((c, isr));
                    isr = 0;
                    isr_count = 0;
                }
                0b101 => {
                    let (dst, op, src) = ((ins >> 5) & 7, (ins >> 3) & 3, ins & 7);
                    assert_eq!((dst, op, src), (0b001, 0b01, 0b011), "only mov x, !null");
                    x = !0;
                }
                0b111 => {
                    let dst = (ins >> 5) & 7;
                    let data = u32::from(ins & 0x1f);
                    match dst {
                        0b001 => x = data,
                        0b010 => y = data,
                        other => panic!("set destination {other:03b} not in the edge program"),
                    }
                }
                other => panic!("opcode {other:03b} not in the edge program"),
            }
            assert_eq!(ins & 0x1f00, 0, "no delay or side-set in the edge program");
            let _ = isr_count;
            pc = if next > usize::from(program.wrap.source)
                && pc == usize::from(program.wrap.source)
            {
                usize::from(program.wrap.target)
            } else {
                next
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 kHz PWM of `high_ns` (edge instants in ns from `start_ns`).
    fn pwm(t_ns: u64, start_ns: u64, period_ns: u64, high_ns: u64) -> bool {
        t_ns >= start_ns && (t_ns - start_ns) % period_ns < high_ns
    }

    #[test]
    fn the_program_fits_and_wraps_where_the_timing_assumes() {
        let p = program();
        assert_eq!(p.code.len(), 15);
        assert_eq!((p.wrap.target, p.wrap.source), (2, 14));
    }

    #[test]
    fn decoded_edges_match_the_waveform_within_two_clocks() {
        // Edges at odd nanoseconds, away from the clock grid.
        let (start, period, high) = (10_003u64, 1_000_000u64, 266_677u64);
        let level = |c: u64| pwm(c * NS_PER_CYCLE, start, period, high);
        let words = sim::run(&program(), level, 5 * period / NS_PER_CYCLE, 0);
        assert_eq!(words.len(), 10, "5 periods, 2 edges each");
        let mut d = EdgeDecoder::new(0);
        for (k, &(pushed, w)) in words.iter().enumerate() {
            let drained_us = pushed * NS_PER_CYCLE / 1_000 + 3;
            let e = d.handle_word(w, drained_us);
            let i = k as u64 / 2;
            let truth = start + i * period + if e.rising { 0 } else { high };
            assert_eq!(e.rising, k % 2 == 0);
            assert!(
                e.t_ns >= truth && e.t_ns < truth + 2 * NS_PER_CYCLE,
                "edge {k}: decoded {} ns, true {truth} ns",
                e.t_ns
            );
        }
        assert_eq!(d.lost(), 0);
    }

    #[test]
    fn a_pilot_high_at_enable_gives_a_rising_word_at_once() {
        let words = sim::run(&program(), |_| true, 100, 0);
        assert_eq!(words.len(), 1);
        let e = EdgeDecoder::new(7).handle_word(words[0].1, 8);
        // `jmp pin` saw it at cycle 2 (after `set` and `mov`): 16 ns.
        assert_eq!(
            e,
            Edge {
                t_ns: 7_016,
                rising: true
            }
        );
    }

    #[test]
    fn counts_wrapping_past_31_bits_are_recovered_from_the_drain_time() {
        // A steady pilot for 100 s between edges: the 31-bit count wraps
        // twice (34.4 s each). Words are built as the program would push
        // them (see the module's timing).
        let start_us = 1_000;
        let mut d = EdgeDecoder::new(start_us);
        let cycles_per_s = u64::from(SYS_HZ);
        let mut cycle = 0u64; // decoder cycles (offset by START_CYCLES)
        let mut x: u64 = u64::from(COUNT_MASK);
        let mut t_expect = Vec::new();
        let gaps_s = [3u64, 100, 40, 1];
        for (k, gap) in gaps_s.iter().enumerate() {
            let rising = k % 2 == 0;
            let overhead = if rising { 4 } else { 5 };
            let n = gap * cycles_per_s / 2;
            x = x.wrapping_sub(n);
            cycle += overhead + 2 * n;
            let word = ((x as u32 & COUNT_MASK) << 1) | u32::from(rising);
            let latency = if rising { 1 } else { 2 };
            let t_ns = start_us * 1_000 + (cycle - latency - START_CYCLES) * NS_PER_CYCLE;
            // Drained up to a millisecond later.
            let e = d.handle_word(word, t_ns / 1_000 + 1_000);
            t_expect.push(t_ns);
            assert_eq!(e, Edge { t_ns, rising }, "after a {gap} s gap");
        }
        assert_eq!(d.lost(), 0);
    }

    #[test]
    fn two_edges_of_a_kind_in_a_row_count_a_loss() {
        let mut d = EdgeDecoder::new(0);
        let _ = d.handle_word(0x10 << 1 | 1, 1);
        let _ = d.handle_word(0x08 << 1 | 1, 1);
        assert_eq!(d.lost(), 1);
    }

    #[test]
    fn a_word_drained_before_its_anchor_saturates_instead_of_wrapping() {
        let mut d = EdgeDecoder::new(u64::MAX / 1_000);
        let e = d.handle_word(u32::MAX, 0);
        assert!(e.t_ns >= (u64::MAX / 1_000) * 1_000 - 16);
    }
}
