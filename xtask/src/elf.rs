//! Flash and RAM use of an image, from its ELF section headers.
//!
//! Owns reading the few fields of an ELF32 little-endian file that say how
//! big its loaded sections are; nothing else of the format. Read by hand
//! rather than with the `object` crate: it is not in Cargo.lock, and the
//! section header table is five fields.
//!
//! Flash is every allocated section with contents (vectors, code, read-only
//! data, and `.data`'s initial values); RAM is every allocated writable
//! section (`.data`, `.bss`, `.uninit`). The stack is not a section and is
//! not counted.

use std::fmt;

const SHF_WRITE: u32 = 0x1;
const SHF_ALLOC: u32 = 0x2;
const SHT_NOBITS: u32 = 8;
const SECTION_HEADER_LEN: usize = 40;

/// Loaded sizes of one image, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sizes {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
}

/// Why an ELF could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Not `\x7fELF`, or not 32-bit little-endian (thumb images are).
    NotElf32Le,
    /// A header or table points past the end of the file.
    Truncated { what: &'static str, at: usize },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf32Le => f.write_str("not a 32-bit little-endian ELF file"),
            Self::Truncated { what, at } => {
                write!(f, "truncated ELF: the {what} at byte {at} is past the end")
            }
        }
    }
}

impl std::error::Error for ElfError {}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, ElfError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(ElfError::Truncated { what, at })
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, ElfError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(ElfError::Truncated { what, at })
}

/// Sum the loaded sections of an ELF32 little-endian image.
pub fn sizes(elf: &[u8]) -> Result<Sizes, ElfError> {
    if elf.get(..6) != Some(b"\x7fELF\x01\x01".as_slice()) {
        return Err(ElfError::NotElf32Le);
    }
    let shoff = u32_at(elf, 0x20, "section header offset")? as usize;
    let shentsize = usize::from(u16_at(elf, 0x2E, "section header size")?);
    let shnum = usize::from(u16_at(elf, 0x30, "section count")?);
    let entsize = shentsize.max(SECTION_HEADER_LEN);
    let mut s = Sizes::default();
    for i in 0..shnum {
        let at = shoff.saturating_add(i.saturating_mul(entsize));
        let kind = u32_at(elf, at.saturating_add(4), "section header")?;
        let flags = u32_at(elf, at.saturating_add(8), "section header")?;
        let size = u64::from(u32_at(elf, at.saturating_add(20), "section header")?);
        if flags & SHF_ALLOC == 0 {
            continue;
        }
        if kind != SHT_NOBITS {
            s.flash_bytes = s.flash_bytes.saturating_add(size);
        }
        if flags & SHF_WRITE != 0 {
            s.ram_bytes = s.ram_bytes.saturating_add(size);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF32 LE header followed by these (type, flags, size) sections.
    fn elf(sections: &[(u32, u32, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 52];
        b[..6].copy_from_slice(b"\x7fELF\x01\x01");
        b[0x20..0x24].copy_from_slice(&52u32.to_le_bytes());
        b[0x2E..0x30].copy_from_slice(&40u16.to_le_bytes());
        b[0x30..0x32].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        for &(kind, flags, size) in sections {
            let mut h = [0u8; 40];
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..12].copy_from_slice(&flags.to_le_bytes());
            h[20..24].copy_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&h);
        }
        b
    }

    #[test]
    fn code_and_data_are_flash_data_and_bss_are_ram() {
        const PROGBITS: u32 = 1;
        let b = elf(&[
            (0, 0, 0),                                  // the null section
            (PROGBITS, SHF_ALLOC | 0x4, 1000),          // .text
            (PROGBITS, SHF_ALLOC, 200),                 // .rodata
            (PROGBITS, SHF_ALLOC | SHF_WRITE, 30),      // .data
            (SHT_NOBITS, SHF_ALLOC | SHF_WRITE, 4_000), // .bss
            (PROGBITS, 0, 99_999),                      // .debug_info
        ]);
        assert_eq!(
            sizes(&b),
            Ok(Sizes {
                flash_bytes: 1_230,
                ram_bytes: 4_030
            })
        );
    }

    #[test]
    fn a_truncated_or_foreign_file_is_an_error() {
        let mut b = elf(&[(1, SHF_ALLOC, 10)]);
        b.truncate(70);
        assert_eq!(
            sizes(&b),
            Err(ElfError::Truncated {
                what: "section header",
                at: 72
            })
        );
        assert_eq!(sizes(b"#!/bin/sh\n"), Err(ElfError::NotElf32Le));
        assert_eq!(sizes(b""), Err(ElfError::NotElf32Le));
    }
}
