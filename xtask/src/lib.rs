//! `cargo xtask images`: builds every board image and reports its size.
//!
//! Owns the image list, the cross build and the toolchain check; the boards
//! themselves live in `boards/` (their own workspace, so host builds never
//! see them). The thumb targets are built with Debian's `rustc` (packages
//! `rustc-web`, `rust-web-src`) and `lld`, not rustup:
//!
//! ```text
//! RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 cargo build -Zbuild-std=core \
//!     --target <triple> --release      (linker ld.lld: boards/.cargo/config.toml)
//! ```
//!
//! into `target/cross`, so host builds are not clobbered. Each ELF is copied
//! to `target/images/<image>.elf`; an image for a board whose boot ROM
//! takes UF2 (the Pico) also gets `target/images/<image>.uf2`, written by
//! the `uf2` crate from the ELF's loaded segments. Exit codes: 0 built, 1 a build failed or an
//! image is over its budget, 2 the toolchain is missing (the apt command is
//! printed), 64 bad usage.

pub mod elf;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Debian's thumb toolchain.
const RUSTC: &str = "/usr/bin/rustc";
const RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const LINKER: &str = "ld.lld";
/// The one command that installs what is missing.
pub const APT_INSTALL: &str = "apt-get install -y rustc-web rust-web-src lld";

/// One image to build.
#[derive(Debug, Clone, Copy)]
pub struct Image {
    /// The file name under `target/images/`, without `.elf`.
    pub name: &'static str,
    /// The board crate (a package of the `boards/` workspace).
    pub package: &'static str,
    pub target: &'static str,
    /// Cargo features of the board crate (the group size).
    pub features: &'static str,
    /// Stations and nodes the image holds (the leader is in every station
    /// image: the role is commissioned).
    pub group: (usize, usize),
    /// Flash and RAM the image must fit, if it has a budget.
    pub budget: Option<elf::Sizes>,
    /// Also write a UF2 for this flash.
    pub uf2: Option<Uf2Flash>,
}

/// Where a UF2's blocks go, and which chip family they are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uf2Flash {
    pub family_id: u32,
    pub base: u32,
    pub len: u32,
}

/// The RP2040's XIP flash on a Pico (2 MiB), UF2 family `RP2040`.
pub const RP2040_FLASH: Uf2Flash = Uf2Flash {
    family_id: 0xe48b_ff56,
    base: 0x1000_0000,
    len: 2 * 1024 * 1024,
};

/// The UF2 file for an ELF image.
pub fn uf2_of(elf_bytes: &[u8], flash: &Uf2Flash) -> Result<Vec<u8>, String> {
    let bin = elf::flash_image(elf_bytes, flash.base, flash.len).map_err(|e| e.to_string())?;
    uf2::bin_to_uf2(&bin, flash.family_id, flash.base).map_err(|e| format!("writing UF2: {e}"))
}

/// Every image `cargo xtask images` builds.
pub const IMAGES: &[Image] = &[
    Image {
        name: "station-qemu",
        package: "station-qemu",
        target: "thumbv7em-none-eabihf",
        features: "",
        group: (6, 4),
        // Issue 11: a 6-station image fits 256 KB of flash and 64 KB of RAM.
        budget: Some(elf::Sizes {
            flash_bytes: 256 * 1024,
            ram_bytes: 64 * 1024,
        }),
        uf2: None,
    },
    Image {
        name: "station-nucleo-f401",
        package: "station-nucleo-f401",
        target: "thumbv7em-none-eabihf",
        features: "",
        group: (6, 4),
        // The issue's budget for a 6-station image (the F401RE has 512 KiB
        // of flash and 96 KiB of RAM).
        budget: Some(elf::Sizes {
            flash_bytes: 256 * 1024,
            ram_bytes: 64 * 1024,
        }),
        uf2: None,
    },
    Image {
        name: "station-qemu-g64",
        package: "station-qemu",
        target: "thumbv7em-none-eabihf",
        features: "group-64",
        group: (64, 32),
        budget: None,
        uf2: None,
    },
    Image {
        name: "station-qemu-g256",
        package: "station-qemu",
        target: "thumbv7em-none-eabihf",
        features: "group-256",
        group: (256, 128),
        budget: None,
        uf2: None,
    },
    Image {
        name: "fixture-rp2040",
        package: "fixture-rp2040",
        target: "thumbv6m-none-eabi",
        features: "",
        // Not a station: no group.
        group: (0, 0),
        // The Pico: 2 MiB of flash less the boot loader's 256 bytes, 256
        // KiB of striped SRAM (the image's memory.x).
        budget: Some(elf::Sizes {
            flash_bytes: 2 * 1024 * 1024 - 256,
            ram_bytes: 256 * 1024,
        }),
        uf2: Some(RP2040_FLASH),
    },
];

/// What of the toolchain is missing, one sentence each.
pub fn missing_toolchain(targets: &[&str]) -> Vec<String> {
    missing_from(RUSTC, RUST_SRC, LINKER, targets)
}

/// [`missing_toolchain`] with the paths as parameters (for its tests).
fn missing_from(rustc: &str, rust_src: &str, linker: &str, targets: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    match Command::new(rustc)
        .args(["--print", "target-list"])
        .output()
    {
        Err(e) => missing.push(format!("{rustc} cannot run ({e})")),
        Ok(out) if !out.status.success() => {
            missing.push(format!("{rustc} --print target-list failed"));
        }
        Ok(out) => {
            let list = String::from_utf8_lossy(&out.stdout);
            for t in targets {
                if !list.lines().any(|l| l.trim() == *t) {
                    missing.push(format!("{rustc} has no target {t}"));
                }
            }
        }
    }
    if !Path::new(rust_src).is_dir() {
        missing.push(format!("no standard library source at {rust_src}"));
    }
    if Command::new(linker).arg("--version").output().is_err() {
        missing.push(format!("no {linker} on PATH"));
    }
    missing
}

/// The repository root (the parent of `xtask/`).
fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map_or(here.clone(), Path::to_path_buf)
}

/// The host target dir (`CARGO_TARGET_DIR`, else `target/`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Build one image into `cross`; the ELF's path.
fn build(root: &Path, cross: &Path, image: &Image) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("boards"))
        .args(["build", "--locked", "--release", "-Zbuild-std=core"])
        .args(["--target", image.target, "--package", image.package])
        .env("RUSTC", RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", cross)
        // The linker and link script come from boards/.cargo/config.toml,
        // which RUSTFLAGS from the environment would replace.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    if !image.features.is_empty() {
        cmd.args(["--features", image.features]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("failed to run cargo for {}: {e}", image.name))?;
    if !status.success() {
        return Err(format!("building {} failed ({status})", image.name));
    }
    Ok(cross.join(image.target).join("release").join(image.package))
}

fn kib(bytes: u64) -> String {
    format!("{}.{} KiB", bytes / 1024, (bytes % 1024) * 10 / 1024)
}

/// `cargo xtask images`.
pub fn images() -> ExitCode {
    let mut targets: Vec<&str> = IMAGES.iter().map(|i| i.target).collect();
    targets.dedup();
    let missing = missing_toolchain(&targets);
    if !missing.is_empty() {
        for m in &missing {
            eprintln!("error: {m}");
        }
        eprintln!("the board images need Debian's thumb toolchain; install it with:");
        eprintln!("    {APT_INSTALL}");
        return ExitCode::from(2);
    }
    let root = root();
    let target = target_dir(&root);
    let (cross, out) = (target.join("cross"), target.join("images"));
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: failed to create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for image in IMAGES {
        let elf = match build(&root, &cross, image) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        let dest = out.join(format!("{}.elf", image.name));
        let sizes = std::fs::copy(&elf, &dest)
            .map_err(|e| {
                format!(
                    "failed to copy {} to {}: {e}",
                    elf.display(),
                    dest.display()
                )
            })
            .and_then(|_| {
                std::fs::read(&dest).map_err(|e| format!("failed to read {}: {e}", dest.display()))
            })
            .and_then(|b| elf::sizes(&b).map_err(|e| format!("{}: {e}", dest.display())));
        if let (Some(flash), Ok(_)) = (image.uf2, &sizes) {
            let uf2_path = out.join(format!("{}.uf2", image.name));
            let written = std::fs::read(&dest)
                .map_err(|e| format!("failed to read {}: {e}", dest.display()))
                .and_then(|b| uf2_of(&b, &flash).map_err(|e| format!("{}: {e}", dest.display())))
                .and_then(|u| {
                    std::fs::write(&uf2_path, u)
                        .map_err(|e| format!("failed to write {}: {e}", uf2_path.display()))
                });
            match written {
                Ok(()) => println!("wrote {}", uf2_path.display()),
                Err(e) => {
                    eprintln!("error: {e}");
                    failed = true;
                }
            }
        }
        match sizes {
            Ok(s) => rows.push((image, dest, s)),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    println!();
    println!(
        "{:<44} {:>16} {:>12} {:>12}  budget",
        "image", "group (st/nodes)", "flash", "RAM (static)"
    );
    for (image, dest, s) in &rows {
        let verdict = match image.budget {
            None => "-".to_string(),
            Some(b) if s.flash_bytes <= b.flash_bytes && s.ram_bytes <= b.ram_bytes => {
                format!(
                    "fits {} flash / {} RAM",
                    kib(b.flash_bytes),
                    kib(b.ram_bytes)
                )
            }
            Some(b) => {
                failed = true;
                format!(
                    "OVER {} flash / {} RAM",
                    kib(b.flash_bytes),
                    kib(b.ram_bytes)
                )
            }
        };
        println!(
            "{:<44} {:>16} {:>12} {:>12}  {verdict}",
            dest.strip_prefix(&root).unwrap_or(dest).display(),
            if image.group == (0, 0) {
                "-".to_string()
            } else {
                format!("{} / {}", image.group.0, image.group.1)
            },
            kib(s.flash_bytes),
            kib(s.ram_bytes),
        );
    }
    println!("(RAM is .data + .bss; the stack comes on top)");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

const USAGE: &str = "usage: cargo xtask images\n\n  images    build every board image to target/images/<image>.elf and print its flash and RAM use";

/// The command line.
pub fn run(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("images") if args.len() == 1 => images(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_has_a_unique_name() {
        let mut names: Vec<_> = IMAGES.iter().map(|i| i.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), IMAGES.len());
    }

    #[test]
    fn the_fixture_image_gets_a_uf2_for_the_pico() {
        let fixture = IMAGES.iter().find(|i| i.name == "fixture-rp2040").unwrap();
        assert_eq!(fixture.target, "thumbv6m-none-eabi");
        assert_eq!(fixture.uf2, Some(RP2040_FLASH));
        assert!(IMAGES.iter().filter(|i| i.uf2.is_some()).count() == 1);
    }

    /// A one-segment ELF32 LE: `data` loaded at `paddr`.
    fn elf_with(paddr: u32, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 52];
        b[..6].copy_from_slice(b"\x7fELF\x01\x01");
        b[0x1C..0x20].copy_from_slice(&52u32.to_le_bytes());
        b[0x2A..0x2C].copy_from_slice(&32u16.to_le_bytes());
        b[0x2C..0x2E].copy_from_slice(&1u16.to_le_bytes());
        let mut h = [0u8; 32];
        h[0..4].copy_from_slice(&1u32.to_le_bytes());
        h[4..8].copy_from_slice(&84u32.to_le_bytes());
        h[12..16].copy_from_slice(&paddr.to_le_bytes());
        h[16..20].copy_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&h);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn the_uf2_has_a_block_per_256_bytes_at_the_flash_addresses() {
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let u = uf2_of(&elf_with(0x1000_0000, &data), &RP2040_FLASH).unwrap();
        assert_eq!(u.len(), 2 * 512);
        let word = |blk: usize, k: usize| {
            u32::from_le_bytes(
                u[blk * 512 + 4 * k..blk * 512 + 4 * k + 4]
                    .try_into()
                    .unwrap(),
            )
        };
        for blk in 0..2 {
            // UF2: magic, magic, flags (family ID present), address, 256
            // bytes, block number, block count, family; end magic.
            assert_eq!(word(blk, 0), 0x0A32_4655);
            assert_eq!(word(blk, 1), 0x9E5D_5157);
            assert_eq!(word(blk, 2), 0x2000);
            assert_eq!(word(blk, 3), 0x1000_0000 + 256 * blk as u32);
            assert_eq!(word(blk, 4), 256);
            assert_eq!((word(blk, 5), word(blk, 6)), (blk as u32, 2));
            assert_eq!(word(blk, 7), 0xe48b_ff56);
            assert_eq!(word(blk, 127), 0x0AB1_6F30);
        }
        assert_eq!(&u[32..32 + 256], &data[..256]);
        assert_eq!(&u[512 + 32..512 + 32 + 44], &data[256..]);
        // An image linked for RAM is refused, not written.
        let err = uf2_of(&elf_with(0x2000_0000, &data), &RP2040_FLASH).unwrap_err();
        assert!(err.contains("outside the flash"), "{err}");
    }

    #[test]
    fn each_missing_part_is_named() {
        let missing = missing_from(
            "/nonexistent/rustc",
            "/nonexistent/library",
            "/nonexistent/ld.lld",
            &["thumbv7em-none-eabihf"],
        );
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing[0].contains("/nonexistent/rustc cannot run"));
        assert!(missing[1].contains("/nonexistent/library"));
        assert!(missing[2].contains("/nonexistent/ld.lld"));
    }

    #[test]
    fn a_target_rustc_lacks_is_named() {
        let missing = missing_toolchain(&["no-such-target-none-eabi"]);
        assert!(
            missing
                .iter()
                .any(|m| m.contains("no-such-target-none-eabi") || m.contains("cannot run")),
            "{missing:?}"
        );
    }
}
