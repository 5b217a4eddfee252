//! What every station board shares, so each board crate is only its
//! peripherals: the SysTick clock ([`clock`]), bounded transmit queues
//! ([`TxQueue`]), the accepted commissioning kept in flash with a boot
//! counter ([`config_store`]).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod clock;
pub mod config_store;

use heapless::Deque;

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
