#![no_std]
pub const NO_STD_MARKER: u8 = 0;
