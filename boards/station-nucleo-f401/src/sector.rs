//! Flash sector 7 of the STM32F401RE (0x0806_0000, 128 KiB) as the
//! station's configuration store ([`station_common::config_store`]).
//!
//! Owns the flash controller. `memory.x` ends the image's flash before this
//! sector, so the image never erases itself.

use station_common::config_store::{FlashFailed, SectorFlash};
use stm32f4xx_hal::flash::{FlashExt, LockedFlash};
use stm32f4xx_hal::pac::FLASH;

/// The sector number and its offset and length from the flash's start.
const SECTOR: u8 = 7;
const OFFSET: usize = 0x6_0000;
const LEN: usize = 128 * 1024;

pub struct ConfigSector {
    flash: LockedFlash,
}

impl ConfigSector {
    pub fn new(flash: FLASH) -> Self {
        Self {
            flash: LockedFlash::new(flash),
        }
    }
}

impl SectorFlash for ConfigSector {
    fn contents(&self) -> &[u8] {
        self.flash.read().get(OFFSET..OFFSET + LEN).unwrap_or(&[])
    }

    fn erase(&mut self) -> Result<(), FlashFailed> {
        self.flash.unlocked().erase(SECTOR).map_err(|_| FlashFailed)
    }

    fn program(&mut self, offset: usize, bytes: &[u8]) -> Result<(), FlashFailed> {
        if offset.checked_add(bytes.len()).is_none_or(|end| end > LEN) {
            return Err(FlashFailed);
        }
        self.flash
            .unlocked()
            .program(OFFSET + offset, bytes.iter())
            .map_err(|_| FlashFailed)
    }
}
