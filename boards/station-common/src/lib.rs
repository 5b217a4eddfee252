//! What every station board shares, so each board crate is only its
//! peripherals: the SysTick clock ([`clock`]), bounded transmit queues
//! ([`TxQueue`]) and what a station sends into them ([`drain_output`]),
//! the accepted commissioning kept in flash with a boot
//! counter ([`config_store`]).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod clock;
pub mod config_store;

use firmware::sharing::frame::MAX_FRAME;
use firmware::station::Station;
use firmware::telemetry;
use heapless::Deque;

/// The longest meter request a station sends.
pub const MAX_METER_REQUEST: usize = 16;

/// Move what `station` has to send into its boards' queues: link frames,
/// meter requests and telemetry lines, each only while a whole one of the
/// longest kind fits. What stays is the station's to hold (a frame is sent
/// later; a telemetry line left in its queue is counted by it, `lost`).
pub fn drain_output<
    const S: usize,
    const N: usize,
    const A: usize,
    const B: usize,
    const C: usize,
>(
    station: &mut Station<S, N>,
    link: &mut TxQueue<A>,
    meter: &mut TxQueue<B>,
    debug: &mut TxQueue<C>,
) {
    let mut frame = [0u8; MAX_FRAME];
    while link.room() >= MAX_FRAME {
        let Some(n) = station.poll_transmit(&mut frame) else {
            break;
        };
        link.send(frame.get(..n).unwrap_or(&[]));
    }
    while meter.room() >= MAX_METER_REQUEST {
        let Some(req) = station.poll_meter_transmit() else {
            break;
        };
        meter.send(&req);
    }
    while debug.room() >= telemetry::MAX_LINE {
        let Some(t) = station.poll_telemetry() else {
            break;
        };
        debug.send(t.encode().as_bytes());
    }
}

/// A transmit queue of `L` bytes in front of a UART: whole messages in,
/// bytes out as the UART takes them. Never blocks.
pub struct TxQueue<const L: usize> {
    bytes: Deque<u8, L>,
    /// Messages refused because the queue was full.
    pub refused: u32,
}

impl<const L: usize> Default for TxQueue<L> {
    fn default() -> Self {
        Self {
            bytes: Deque::new(),
            refused: 0,
        }
    }
}

impl<const L: usize> TxQueue<L> {
    /// Room left.
    pub fn room(&self) -> usize {
        L - self.bytes.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Queue a whole message, or refuse it whole (counted in `refused`).
    pub fn send(&mut self, msg: &[u8]) -> bool {
        if msg.len() > self.room() {
            self.refused = self.refused.saturating_add(1);
            return false;
        }
        for &b in msg {
            // Room was checked above.
            let _ = self.bytes.push_back(b);
        }
        true
    }

    /// Hand bytes to `write` while it takes them (`false`: the UART is busy).
    pub fn pump(&mut self, mut write: impl FnMut(u8) -> bool) {
        while let Some(&b) = self.bytes.front() {
            if !write(b) {
                break;
            }
            self.bytes.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware::sharing::config::{GroupConfig, NodeConfig, Phase, StationConfig, Timing};
    use firmware::time::us;

    /// Station `id` of two on one 32 A circuit (1 leads), booted at 0.
    fn station(id: u8) -> Station<2, 1> {
        let mut nodes = heapless::Vec::new();
        let _ = nodes.push(NodeConfig {
            parent: None,
            limit_da: 320,
            breaker_da: None,
        });
        let mut stations = heapless::Vec::new();
        for id in [1, 2] {
            let _ = stations.push(StationConfig {
                id,
                node: 0,
                nameplate_da: 320,
                breaker_da: None,
                phases: 1,
                rotation: Phase::L1,
                fallback_da: 100,
                priority: 0,
                weight: 1,
            });
        }
        let group = GroupConfig {
            group: 3,
            key: [0x5A; 32],
            enabled: true,
            leader: 1,
            nodes,
            stations,
            timing: Timing::default(),
            dynamic: None,
        };
        Station::new(group, id, 7, us(0)).unwrap()
    }

    /// Run `st`'s timers until it has a link frame to send.
    fn until_it_sends(st: &mut Station<2, 1>) {
        for _ in 0..100 {
            let Some(now) = st.poll_timeout() else { break };
            st.handle_timeout(now);
            let mut probe: TxQueue<{ MAX_FRAME * 4 }> = TxQueue::default();
            let mut none: TxQueue<1> = TxQueue::default();
            let mut debug: TxQueue<1> = TxQueue::default();
            // Only the link queue has room: a frame is all that can move.
            drain_output(st, &mut probe, &mut none, &mut debug);
            if !probe.is_empty() {
                return;
            }
        }
        panic!("the follower never sent a frame");
    }

    #[test]
    fn output_moves_only_while_a_whole_message_of_its_kind_fits() {
        let mut st = station(1);
        // Too little room for the longest line: the boot line stays with
        // the station, nothing is cut.
        let mut link: TxQueue<{ MAX_FRAME - 1 }> = TxQueue::default();
        let mut meter: TxQueue<1> = TxQueue::default();
        let mut small: TxQueue<{ telemetry::MAX_LINE - 1 }> = TxQueue::default();
        drain_output(&mut st, &mut link, &mut meter, &mut small);
        assert!(small.is_empty() && small.refused == 0);
        // With room, it goes out whole, one line.
        let mut debug: TxQueue<{ telemetry::MAX_LINE * 4 }> = TxQueue::default();
        drain_output(&mut st, &mut link, &mut meter, &mut debug);
        let mut out = std::vec::Vec::new();
        debug.pump(|b| {
            out.push(b);
            true
        });
        let text = std::string::String::from_utf8(out).unwrap();
        assert!(text.starts_with("T boot leader*"), "{text}");
        assert!(text.ends_with('\n'), "{text:?}");
        // A frame waits while the link queue cannot take the longest one
        // (a follower asks to join its leader).
        until_it_sends(&mut station(2));
        let mut st = station(2);
        let mut now = us(0);
        let mut held = false;
        for _ in 0..100 {
            let Some(t) = st.poll_timeout() else { break };
            now = t;
            st.handle_timeout(now);
            drain_output(&mut st, &mut link, &mut meter, &mut debug);
            assert!(
                link.is_empty(),
                "a frame went into a queue too small for the longest"
            );
            let mut frame = [0u8; MAX_FRAME];
            if st.poll_transmit(&mut frame).is_some() {
                held = true;
                break;
            }
        }
        assert!(held, "the follower held no frame by {now:?}");
    }

    #[test]
    fn a_message_goes_whole_or_not_at_all() {
        let mut q: TxQueue<8> = TxQueue::default();
        assert!(q.send(b"12345"));
        assert!(!q.send(b"6789"), "4 bytes do not fit in 3");
        assert_eq!((q.room(), q.refused), (3, 1));
        assert!(q.send(b"678"));
        assert_eq!(q.room(), 0);
    }

    #[test]
    fn pump_stops_while_the_uart_is_busy_and_resumes_in_order() {
        let mut q: TxQueue<8> = TxQueue::default();
        assert!(q.send(b"abcdef"));
        let mut out = std::vec::Vec::new();
        let mut budget = 2;
        q.pump(|b| {
            if budget == 0 {
                return false;
            }
            budget -= 1;
            out.push(b);
            true
        });
        assert_eq!(out, b"ab");
        q.pump(|b| {
            out.push(b);
            true
        });
        assert_eq!(out, b"abcdef");
        assert!(q.is_empty());
    }
}
