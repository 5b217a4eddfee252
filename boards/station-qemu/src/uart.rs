//! The CMSDK APB UART (ARM DDI 0479), polled: the only register access of
//! this image. No maintained PAC or HAL crate covers the MPS2 FPGA images'
//! CMSDK UART, and five registers do not warrant one.
//!
//! Owns the registers, with a bounded transmit queue per UART;
//! receives one byte at a time (the CMSDK UART buffers one byte; QEMU holds
//! the rest in its chardev until the byte is read, so nothing is lost).
//! Never blocks: a byte that cannot go out waits in the queue, and a message
//! that does not fit the queue is refused whole, for the caller to count.
// MMIO: the registers are memory-mapped, so reading and writing them is a
// volatile access to a fixed address, which Rust can only do in `unsafe`.
#![allow(unsafe_code)]

use station_common::TxQueue;

/// Register offsets and bits (CMSDK APB UART).
const DATA: usize = 0x000;
const STATE: usize = 0x004;
const CTRL: usize = 0x008;
const BAUDDIV: usize = 0x010;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const STATE_OVERRUNS: u32 = (1 << 2) | (1 << 3);
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// The APB clock of the MPS2 FPGA images (QEMU's `SYSCLK_FRQ`).
pub const PCLK_HZ: u32 = 25_000_000;

/// One UART, by base address (the AN386 map: `0x4000_4000`, `0x4000_5000`,
/// `0x4000_6000`, `0x4000_7000`, `0x4000_9000`).
#[derive(Clone, Copy)]
pub struct Uart {
    base: usize,
}

impl Uart {
    /// # Safety-relevant contract
    /// `base` must be a CMSDK UART of this machine, owned by one `Uart`.
    pub const fn at(base: usize) -> Self {
        Self { base }
    }

    fn read(&self, off: usize) -> u32 {
        // SAFETY: `base + off` is a register of a CMSDK UART on this
        // machine (see `at`); a volatile 32-bit read has no other effect
        // than the device's own.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }

    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }

    /// Enable transmit and receive at `baud` (QEMU ignores the rate but
    /// refuses a divider below 16).
    pub fn enable(&self, baud: u32) {
        self.write(BAUDDIV, (PCLK_HZ / baud.max(1)).max(16));
        self.write(STATE, STATE_OVERRUNS);
        self.write(CTRL, CTRL_TX_EN | CTRL_RX_EN);
    }

    /// The received byte, if one is waiting.
    pub fn try_read(&self) -> Option<u8> {
        if self.read(STATE) & STATE_RX_FULL == 0 {
            return None;
        }
        Some((self.read(DATA) & 0xFF) as u8)
    }

    fn try_write(&self, b: u8) -> bool {
        if self.read(STATE) & STATE_TX_FULL != 0 {
            return false;
        }
        self.write(DATA, u32::from(b));
        true
    }
}

/// A UART with a transmit queue of `L` bytes.
pub struct Port<const L: usize> {
    pub uart: Uart,
    pub tx: TxQueue<L>,
}

impl<const L: usize> Port<L> {
    pub fn new(uart: Uart, baud: u32) -> Self {
        uart.enable(baud);
        Self {
            uart,
            tx: TxQueue::default(),
        }
    }

    /// Move queued bytes to the UART while it takes them.
    pub fn pump(&mut self) {
        let uart = self.uart;
        self.tx.pump(|b| uart.try_write(b));
    }
}
