//! Byte streams in and out: the USB CDC-ACM line output with backpressure,
//! and the meter line's Modbus RTU framing by silence.
//!
//! Owns when a protocol line leaves the fixture's queue (only when it fits
//! whole in the USB buffer, so the fixture's own queue does the counting of
//! lines the host did not read: `LOSS LINES`) and which bytes from the
//! leader reach the meter emulation (whole 8-byte requests, delimited by
//! 3.5 character times of silence; anything else is dropped and counted,
//! so one garbled byte cannot shift every later request).

use heapless::{Deque, String, Vec};
use rig::protocol::MAX_LINE;

/// Bytes waiting for the USB endpoint.
#[derive(Debug, Default)]
pub struct LineOut<const L: usize> {
    bytes: Deque<u8, L>,
}

impl<const L: usize> LineOut<L> {
    /// Take lines from `next_line` while a whole line of the longest kind
    /// fits; a line stays in the fixture's queue otherwise.
    pub fn fill(&mut self, mut next_line: impl FnMut(&mut String<MAX_LINE>) -> bool) {
        let mut line = String::new();
        while L - self.bytes.len() >= MAX_LINE {
            if !next_line(&mut line) {
                break;
            }
            for &b in line.as_bytes() {
                // Room for MAX_LINE was checked above.
                let _ = self.bytes.push_back(b);
            }
        }
    }

    /// Hand bytes to `write` (the endpoint: returns how many it took, 0
    /// when busy) until it takes no more.
    pub fn drain(&mut self, mut write: impl FnMut(&[u8]) -> usize) {
        loop {
            let (head, _) = self.bytes.as_slices();
            if head.is_empty() {
                return;
            }
            let n = write(head).min(head.len());
            if n == 0 {
                return;
            }
            for _ in 0..n {
                self.bytes.pop_front();
            }
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Modbus RTU silence between frames at 9600 baud: 3.5 characters of 11
/// bits (the standard's fixed 1750 us applies above 19200 baud only).
pub const METER_GAP_US: u64 = (35u64 * 11 * 1_000_000).div_ceil(10 * 9_600);
/// A function 0x04 request: the only one the SDM630 emulation answers.
pub const REQUEST_LEN: usize = 8;

/// Bytes from the leader into frames.
#[derive(Debug, Default)]
pub struct MeterFramer {
    frame: Vec<u8, 256>,
    last_us: u64,
    /// Frames dropped for their length.
    pub dropped: u32,
}

impl MeterFramer {
    /// A byte received at `t_us`.
    pub fn handle_byte(&mut self, t_us: u64, b: u8) -> Option<Vec<u8, REQUEST_LEN>> {
        let done = self.end(t_us);
        if self.frame.push(b).is_err() {
            self.frame.clear();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.last_us = t_us;
        done
    }

    /// The frame, once the line has been silent long enough at `now_us`.
    pub fn poll(&mut self, now_us: u64) -> Option<Vec<u8, REQUEST_LEN>> {
        self.end(now_us)
    }

    fn end(&mut self, now_us: u64) -> Option<Vec<u8, REQUEST_LEN>> {
        if self.frame.is_empty() || now_us.saturating_sub(self.last_us) < METER_GAP_US {
            return None;
        }
        let out = if self.frame.len() == REQUEST_LEN {
            Vec::from_slice(&self.frame).ok()
        } else {
            None
        };
        if out.is_none() {
            self.dropped = self.dropped.saturating_add(1);
        }
        self.frame.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> impl FnMut(&mut String<MAX_LINE>) -> bool {
        let mut k = 0;
        move |s| {
            if k == n {
                return false;
            }
            s.clear();
            let _ = core::fmt::write(s, format_args!("E {k} 0 HB*0000\n"));
            k += 1;
            true
        }
    }

    #[test]
    fn lines_wait_in_the_fixture_while_the_host_does_not_read() {
        let mut out: LineOut<{ MAX_LINE + 20 }> = LineOut::default();
        let mut taken = 0;
        let mut src = lines(10);
        out.fill(|s| {
            let r = src(s);
            taken += usize::from(r);
            r
        });
        // Only as many as leave room for a longest line each.
        assert_eq!(taken, 2);
        // The endpoint is busy: nothing moves, nothing is lost here.
        out.drain(|_| 0);
        out.fill(|s| {
            let r = src(s);
            taken += usize::from(r);
            r
        });
        assert_eq!(taken, 2);
        // It takes 10 bytes at a time: whole lines come out in order.
        let mut host = std::vec::Vec::new();
        out.drain(|b| {
            let n = b.len().min(10);
            host.extend_from_slice(&b[..n]);
            n
        });
        assert!(out.is_empty());
        assert_eq!(
            String::<64>::try_from(core::str::from_utf8(&host).unwrap()).unwrap(),
            "E 0 0 HB*0000\nE 1 0 HB*0000\n"
        );
    }

    #[test]
    fn the_gap_at_9600_baud_is_four_milliseconds() {
        assert_eq!(METER_GAP_US, 4_011);
    }

    #[test]
    fn a_request_is_handed_over_after_the_silence_and_garbage_is_dropped() {
        let mut f = MeterFramer::default();
        let req = [1u8, 4, 0, 0, 0, 2, 0x71, 0xcb];
        for (i, &b) in req.iter().enumerate() {
            assert_eq!(f.handle_byte(1_000 + 1_146 * i as u64, b), None);
        }
        let last = 1_000 + 1_146 * 7;
        assert_eq!(
            f.poll(last + METER_GAP_US - 1),
            None,
            "not silent long enough"
        );
        assert_eq!(f.poll(last + METER_GAP_US).unwrap().as_slice(), &req);
        assert_eq!(f.poll(last + 10 * METER_GAP_US), None, "once");
        // Three stray bytes, then a request: the request arrives whole.
        let t = last + 20_000;
        for (i, b) in [0xffu8, 0, 7].into_iter().enumerate() {
            assert_eq!(f.handle_byte(t + i as u64 * 1_146, b), None);
        }
        let t2 = t + 20_000;
        let mut got = None;
        for (i, &b) in req.iter().enumerate() {
            got = f.handle_byte(t2 + 1_146 * i as u64, b).or(got);
        }
        assert_eq!(got, None, "the stray bytes were not a request");
        assert_eq!(f.dropped, 1);
        assert_eq!(f.poll(t2 + 30_000).unwrap().as_slice(), &req);
    }

    #[test]
    fn an_endless_stream_without_silence_is_dropped_not_grown() {
        let mut f = MeterFramer::default();
        for i in 0..1_000u64 {
            assert_eq!(f.handle_byte(i * 1_000, 0x55), None);
        }
        assert_eq!(f.poll(1_000_000 + METER_GAP_US), None);
        assert!(f.dropped >= 3, "{}", f.dropped);
    }
}
