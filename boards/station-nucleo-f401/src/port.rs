//! A USART with a transmit queue and, for RS-485, a driver-enable pin.
//!
//! Owns the USART and its DE pin: DE goes high before the first queued byte
//! and low once the last one has left the shift register (TC), so the
//! transceiver never drives the bus longer than the frame. Never blocks.
//! Receive errors (overrun, framing, noise) drop the byte: the link's and
//! Modbus's CRCs catch the damaged frame.

use embedded_hal_nb::serial::{Read, Write};
use station_common::TxQueue;
use stm32f4xx_hal::gpio::{ErasedPin, Output, PushPull};
use stm32f4xx_hal::serial::{Flag, Instance, Serial};
use stm32f4xx_hal::ReadFlags;

pub struct Port<U: Instance, const L: usize> {
    serial: Serial<U>,
    de: Option<ErasedPin<Output<PushPull>>>,
    pub tx: TxQueue<L>,
    /// Bytes dropped on a receive error.
    pub rx_errors: u32,
}

impl<U: Instance, const L: usize> Port<U, L> {
    pub fn new(serial: Serial<U>, mut de: Option<ErasedPin<Output<PushPull>>>) -> Self {
        if let Some(de) = de.as_mut() {
            de.set_low();
        }
        Self {
            serial,
            de,
            tx: TxQueue::default(),
            rx_errors: 0,
        }
    }

    /// The next received byte, if any.
    pub fn read(&mut self) -> Option<u8> {
        loop {
            match self.serial.read() {
                Ok(b) => return Some(b),
                Err(nb::Error::WouldBlock) => return None,
                Err(nb::Error::Other(_)) => {
                    self.rx_errors = self.rx_errors.saturating_add(1);
                }
            }
        }
    }

    /// Move queued bytes to the USART while it takes them; release the bus
    /// when the last byte is out.
    pub fn pump(&mut self) {
        if self.tx.is_empty() {
            if let Some(de) = self.de.as_mut() {
                if self.serial.flags().contains(Flag::TransmissionComplete) {
                    de.set_low();
                }
            }
            return;
        }
        if let Some(de) = self.de.as_mut() {
            de.set_high();
        }
        let serial = &mut self.serial;
        self.tx.pump(|b| serial.write(b).is_ok());
    }
}
