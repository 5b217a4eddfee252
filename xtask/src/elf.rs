//! Flash and RAM use of an image, from its ELF section headers.
//!
//! Owns reading the few fields of an ELF32 little-endian file that say how
//! big its loaded sections are, and where its loaded segments go in flash
//! ([`flash_image`], for the UF2 of a board whose boot ROM takes one);
//! nothing else of the format. Read by hand
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

const PT_LOAD: u32 = 1;
const PROGRAM_HEADER_LEN: usize = 32;

/// Why an ELF's segments do not make a flash image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashError {
    Elf(ElfError),
    /// A loaded segment's load address is outside `[base, base + len)`.
    OutsideFlash {
        paddr: u32,
        size: u32,
    },
    /// Nothing to load.
    Empty,
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(e) => e.fmt(f),
            Self::OutsideFlash { paddr, size } => write!(
                f,
                "a loaded segment of {size} bytes at 0x{paddr:08x} is outside the flash"
            ),
            Self::Empty => f.write_str("no loaded segment with contents"),
        }
    }
}

impl std::error::Error for FlashError {}

/// The bytes flash must hold from `base` (length `len`): every `PT_LOAD`
/// segment's file contents at its load (physical) address, gaps zero.
pub fn flash_image(elf: &[u8], base: u32, len: u32) -> Result<Vec<u8>, FlashError> {
    if elf.get(..6) != Some(b"\x7fELF\x01\x01".as_slice()) {
        return Err(FlashError::Elf(ElfError::NotElf32Le));
    }
    let phoff = u32_at(elf, 0x1C, "program header offset").map_err(FlashError::Elf)? as usize;
    let phentsize = usize::from(u16_at(elf, 0x2A, "program header size").map_err(FlashError::Elf)?);
    let phnum = usize::from(u16_at(elf, 0x2C, "program header count").map_err(FlashError::Elf)?);
    let entsize = phentsize.max(PROGRAM_HEADER_LEN);
    let mut image: Vec<u8> = Vec::new();
    for i in 0..phnum {
        let at = phoff.saturating_add(i.saturating_mul(entsize));
        let field = |k: usize| u32_at(elf, at.saturating_add(4 * k), "program header");
        let kind = field(0).map_err(FlashError::Elf)?;
        let offset = field(1).map_err(FlashError::Elf)? as usize;
        let paddr = field(3).map_err(FlashError::Elf)?;
        let size = field(4).map_err(FlashError::Elf)?;
        if kind != PT_LOAD || size == 0 {
            continue;
        }
        let end = u64::from(paddr) + u64::from(size);
        if paddr < base || end > u64::from(base) + u64::from(len) {
            return Err(FlashError::OutsideFlash { paddr, size });
        }
        let bytes = elf
            .get(offset..offset.saturating_add(size as usize))
            .ok_or(FlashError::Elf(ElfError::Truncated {
                what: "segment",
                at: offset,
            }))?;
        let from = (paddr - base) as usize;
        if image.len() < from + bytes.len() {
            image.resize(from + bytes.len(), 0);
        }
        image[from..from + bytes.len()].copy_from_slice(bytes);
    }
    if image.is_empty() {
        return Err(FlashError::Empty);
    }
    Ok(image)
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

    /// An ELF32 LE header followed by these (type, offset, paddr, filesz)
    /// program headers, then `data`.
    fn elf_segments(segments: &[(u32, u32, u32, u32)], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 52];
        b[..6].copy_from_slice(b"\x7fELF\x01\x01");
        b[0x1C..0x20].copy_from_slice(&52u32.to_le_bytes());
        b[0x2A..0x2C].copy_from_slice(&32u16.to_le_bytes());
        b[0x2C..0x2E].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for &(kind, offset, paddr, size) in segments {
            let mut h = [0u8; 32];
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            h[4..8].copy_from_slice(&offset.to_le_bytes());
            h[8..12].copy_from_slice(&0xdead_0000u32.to_le_bytes()); // vaddr: not used
            h[12..16].copy_from_slice(&paddr.to_le_bytes());
            h[16..20].copy_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&h);
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn segments_land_at_their_load_addresses_with_zero_gaps() {
        let data_at = 52 + 3 * 32;
        let b = elf_segments(
            &[
                (PT_LOAD, data_at, 0x1000_0000, 4),     // boot2
                (6, 0, 0, 0),                           // PT_PHDR: skipped
                (PT_LOAD, data_at + 4, 0x1000_0008, 2), // .data's initial values
            ],
            &[1, 2, 3, 4, 5, 6],
        );
        assert_eq!(
            flash_image(&b, 0x1000_0000, 0x20_0000),
            Ok(vec![1, 2, 3, 4, 0, 0, 0, 0, 5, 6])
        );
    }

    #[test]
    fn a_segment_outside_the_flash_or_past_the_file_is_an_error() {
        let b = elf_segments(&[(PT_LOAD, 84, 0x2000_0000, 4)], &[0; 4]);
        assert_eq!(
            flash_image(&b, 0x1000_0000, 0x20_0000),
            Err(FlashError::OutsideFlash {
                paddr: 0x2000_0000,
                size: 4
            })
        );
        let b = elf_segments(&[(PT_LOAD, 84, 0x1000_0000, 400)], &[0; 4]);
        assert!(matches!(
            flash_image(&b, 0x1000_0000, 0x20_0000),
            Err(FlashError::Elf(ElfError::Truncated {
                what: "segment",
                ..
            }))
        ));
        let b = elf_segments(&[], &[]);
        assert_eq!(flash_image(&b, 0, 1), Err(FlashError::Empty));
    }
}
