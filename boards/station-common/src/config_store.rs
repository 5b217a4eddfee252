//! The accepted commissioning kept across reboots in one flash sector, with
//! a boot counter.
//!
//! Owns the record format and the sector's layout, behind [`SectorFlash`]
//! (NOR flash: erase sets every bit, programming only clears bits), so it
//! is tested on the host with a fake flash. Does not own what the plan
//! means: the plan bytes are the commissioning message exactly as accepted
//! (`firmware::commission`), and the board feeds them to a new `Receiver`
//! at boot, so the MAC and every check run again.
//!
//! Layout (little-endian), from the sector's start:
//!
//! ```text
//! 0   magic       u32  0x5243_4253 ("SBCR")
//! 4   version     u16  1
//! 6   length      u16  plan bytes
//! 8   boots_base  u32  boots counted before this record was written
//! 12  crc         u32  CRC-32/ISO-HDLC of bytes 0..12 and the plan
//! 16  plan        length bytes, then 0xFF up to a 4-byte boundary
//! ..  boot slots  u32 each: 0xFFFF_FFFF free, anything else used
//! ```
//!
//! A boot programs the next free slot (no erase), so the count is
//! `boots_base` plus the used slots; when the slots run out the sector is
//! rewritten with the total in `boots_base`. An erased sector, a torn
//! write (power lost while the record was programmed) or a bad CRC all read
//! as "no configuration": the station starts uncommissioned, never on a
//! plan it cannot verify. Nothing here panics; offsets are checked.

use crc::{Crc, CRC_32_ISO_HDLC};

pub const MAGIC: u32 = 0x5243_4253;
pub const VERSION: u16 = 1;
/// Bytes before the plan.
pub const HEADER_LEN: usize = 16;
const ERASED_WORD: u32 = 0xFFFF_FFFF;
const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// One flash sector as the store sees it.
pub trait SectorFlash {
    /// The sector's current contents.
    fn contents(&self) -> &[u8];
    /// Set every byte to 0xFF.
    fn erase(&mut self) -> Result<(), FlashFailed>;
    /// Program `bytes` at `offset` (only clears bits).
    fn program(&mut self, offset: usize, bytes: &[u8]) -> Result<(), FlashFailed>;
}

/// The flash controller reported an error, or an offset was out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashFailed;

/// Why a sector holds no usable record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Never written (or erased): no configuration, not a fault.
    Erased,
    BadMagic,
    /// Written by a newer image.
    UnknownVersion(u16),
    /// The length does not fit the sector.
    BadLength(u16),
    /// Torn or corrupted.
    BadCrc,
}

/// What the sector holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub plan: &'a [u8],
    pub boots_base: u32,
    /// Where the boot slots start.
    slots_at: usize,
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)?
        .try_into()
        .ok()
        .map(u32::from_le_bytes)
}

fn slots_start(plan_len: usize) -> usize {
    (HEADER_LEN + plan_len).next_multiple_of(4)
}

/// Read the record at the start of `sector`.
pub fn decode(sector: &[u8]) -> Result<Record<'_>, RecordError> {
    let magic = word(sector, 0).ok_or(RecordError::Erased)?;
    if magic == ERASED_WORD {
        return Err(RecordError::Erased);
    }
    if magic != MAGIC {
        return Err(RecordError::BadMagic);
    }
    let head = sector.get(..HEADER_LEN).ok_or(RecordError::BadCrc)?;
    let version = u16::from_le_bytes([head[4], head[5]]);
    let len = u16::from_le_bytes([head[6], head[7]]);
    if version != VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    let plan = sector
        .get(HEADER_LEN..HEADER_LEN + usize::from(len))
        .filter(|_| slots_start(usize::from(len)) <= sector.len())
        .ok_or(RecordError::BadLength(len))?;
    let boots_base = word(head, 8).ok_or(RecordError::BadCrc)?;
    let crc = word(head, 12).ok_or(RecordError::BadCrc)?;
    let mut digest = CRC32.digest();
    digest.update(&head[..12]);
    digest.update(plan);
    if digest.finalize() != crc {
        return Err(RecordError::BadCrc);
    }
    Ok(Record {
        plan,
        boots_base,
        slots_at: slots_start(plan.len()),
    })
}

/// The header and plan bytes of a record (what [`decode`] reads back).
/// `None` if the plan is longer than a `u16` can say.
pub fn encode_header(plan: &[u8], boots_base: u32) -> Option<[u8; HEADER_LEN]> {
    let len = u16::try_from(plan.len()).ok()?;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&boots_base.to_le_bytes());
    let mut digest = CRC32.digest();
    digest.update(&h[..12]);
    digest.update(plan);
    h[12..16].copy_from_slice(&digest.finalize().to_le_bytes());
    Some(h)
}

/// Used boot slots from `at` on: up to the first free one.
fn used_slots(sector: &[u8], at: usize) -> usize {
    let mut n = 0;
    while let Some(w) = word(sector, at + 4 * n) {
        if w == ERASED_WORD {
            break;
        }
        n += 1;
    }
    n
}

/// The sector's store.
pub struct ConfigStore<F> {
    flash: F,
}

/// What a boot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// Boots counted, this one included (0 when nothing could be counted:
    /// no record, or the flash refused).
    pub boots: u32,
    /// Why there is no plan, if there is none.
    pub no_plan: Option<RecordError>,
}

impl<F: SectorFlash> ConfigStore<F> {
    pub fn new(flash: F) -> Self {
        Self { flash }
    }

    /// The stored plan, if the record is whole.
    pub fn plan(&self) -> Result<&[u8], RecordError> {
        decode(self.flash.contents()).map(|r| r.plan)
    }

    /// Boots counted so far (0 without a record).
    pub fn boots(&self) -> u32 {
        let s = self.flash.contents();
        decode(s).map_or(0, |r| {
            let used = u32::try_from(used_slots(s, r.slots_at)).unwrap_or(u32::MAX);
            r.boots_base.saturating_add(used)
        })
    }

    /// Count this boot: programs the next slot, or rewrites the record
    /// with the total when the slots are used up. Without a record there is
    /// nothing to count on: the count starts with the first saved plan.
    pub fn count_boot(&mut self) -> Boot {
        let record = decode(self.flash.contents()).map(|r| (r.slots_at, r.boots_base));
        let (slots_at, base) = match record {
            Ok(r) => r,
            Err(e) => {
                return Boot {
                    boots: 0,
                    no_plan: Some(e),
                }
            }
        };
        let used = used_slots(self.flash.contents(), slots_at);
        let at = slots_at + 4 * used;
        let total = base
            .saturating_add(u32::try_from(used).unwrap_or(u32::MAX))
            .saturating_add(1);
        let counted = if at + 4 <= self.flash.contents().len() {
            self.flash.program(at, &0u32.to_le_bytes()).is_ok()
        } else {
            self.rewrite(total).is_ok()
        };
        Boot {
            boots: if counted { total } else { 0 },
            no_plan: None,
        }
    }

    fn rewrite(&mut self, boots_base: u32) -> Result<(), FlashFailed> {
        let mut plan = heapless::Vec::<u8, MAX_PLAN>::new();
        let p = self.plan().map_err(|_| FlashFailed)?;
        plan.extend_from_slice(p).map_err(|_| FlashFailed)?;
        self.write(&plan, boots_base)
    }

    /// Keep an accepted plan: erase, then the plan, then the header (magic
    /// last, so a record is only ever seen whole or not at all). The boot
    /// count carries over.
    pub fn save(&mut self, plan: &[u8]) -> Result<(), FlashFailed> {
        let boots = self.boots();
        self.write(plan, boots)
    }

    fn write(&mut self, plan: &[u8], boots_base: u32) -> Result<(), FlashFailed> {
        let header = encode_header(plan, boots_base).ok_or(FlashFailed)?;
        if slots_start(plan.len()) > self.flash.contents().len() {
            return Err(FlashFailed);
        }
        self.flash.erase()?;
        self.flash.program(HEADER_LEN, plan)?;
        self.flash.program(4, &header[4..])?;
        self.flash.program(0, &header[..4])
    }
}

/// The longest plan a rewrite carries over (a 6-station commissioning
/// message is about 2.5 KiB).
pub const MAX_PLAN: usize = 8 * 1024;

/// Collects the commissioning message's bytes from the debug channel, so
/// the accepted one can be saved as it was received: from a line starting
/// `C begin ` to the line that completes it. Lines before a `C begin` are
/// not kept; a message longer than `L` is not kept (and is not saved).
pub struct PlanRecorder<const L: usize> {
    line: heapless::Vec<u8, 192>,
    plan: heapless::Vec<u8, L>,
    recording: bool,
}

impl<const L: usize> Default for PlanRecorder<L> {
    fn default() -> Self {
        Self {
            line: heapless::Vec::new(),
            plan: heapless::Vec::new(),
            recording: false,
        }
    }
}

impl<const L: usize> PlanRecorder<L> {
    /// One byte from the debug channel (the same the receiver sees).
    pub fn handle_byte(&mut self, b: u8) {
        if self.line.push(b).is_err() {
            // Longer than any commissioning line: not part of a message.
            self.line.clear();
            self.recording = false;
            return;
        }
        if b != b'\n' {
            return;
        }
        if self.line.starts_with(b"C begin ") {
            self.plan.clear();
            self.recording = true;
        }
        // Only commissioning lines: an operator's limit sent in the middle
        // of a plan is not part of it (and must not come back at boot).
        if self.recording
            && self.line.starts_with(b"C ")
            && self.plan.extend_from_slice(&self.line).is_err()
        {
            self.plan.clear();
            self.recording = false;
        }
        self.line.clear();
    }

    /// The message's bytes, once (after the receiver accepted it).
    pub fn take(&mut self) -> Option<heapless::Vec<u8, L>> {
        let rec = core::mem::replace(&mut self.recording, false);
        let plan = core::mem::take(&mut self.plan);
        (rec && !plan.is_empty()).then_some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NOR flash: erase to 0xFF, programming ANDs; `budget` bytes may be
    /// programmed before the power fails (a torn write).
    struct FakeFlash {
        bytes: std::vec::Vec<u8>,
        budget: usize,
    }

    impl FakeFlash {
        fn erased(len: usize) -> Self {
            Self {
                bytes: vec![0xFF; len],
                budget: usize::MAX,
            }
        }
    }

    impl SectorFlash for FakeFlash {
        fn contents(&self) -> &[u8] {
            &self.bytes
        }
        fn erase(&mut self) -> Result<(), FlashFailed> {
            self.bytes.fill(0xFF);
            Ok(())
        }
        fn program(&mut self, offset: usize, bytes: &[u8]) -> Result<(), FlashFailed> {
            let dst = self
                .bytes
                .get_mut(offset..offset + bytes.len())
                .ok_or(FlashFailed)?;
            for (d, s) in dst.iter_mut().zip(bytes) {
                if self.budget == 0 {
                    return Err(FlashFailed);
                }
                self.budget -= 1;
                *d &= *s;
            }
            Ok(())
        }
    }

    const PLAN: &[u8] = b"C begin 1 2 1*ABCD\nC end 00*1234\n";

    #[test]
    fn erased_flash_holds_no_configuration_and_counts_no_boot() {
        let mut s = ConfigStore::new(FakeFlash::erased(256));
        assert_eq!(s.plan(), Err(RecordError::Erased));
        assert_eq!(
            s.count_boot(),
            Boot {
                boots: 0,
                no_plan: Some(RecordError::Erased)
            }
        );
        assert!(s.flash.bytes.iter().all(|&b| b == 0xFF), "nothing written");
    }

    #[test]
    fn a_saved_plan_comes_back_and_boots_are_counted_across_it() {
        let mut s = ConfigStore::new(FakeFlash::erased(256));
        s.save(PLAN).unwrap();
        assert_eq!(s.plan(), Ok(PLAN));
        for n in 1..=3 {
            assert_eq!(
                s.count_boot(),
                Boot {
                    boots: n,
                    no_plan: None
                }
            );
        }
        // A new plan keeps the count.
        s.save(b"C begin 2 2 1*0000\n").unwrap();
        assert_eq!(s.plan(), Ok(&b"C begin 2 2 1*0000\n"[..]));
        assert_eq!(s.boots(), 3);
        assert_eq!(s.count_boot().boots, 4);
    }

    #[test]
    fn full_slots_rewrite_the_record_with_the_total() {
        // Room for the header, the plan (padded to 36) and 3 slots.
        let len = slots_start(PLAN.len()) + 12;
        let mut s = ConfigStore::new(FakeFlash::erased(len));
        s.save(PLAN).unwrap();
        let counts: std::vec::Vec<u32> = (0..8).map(|_| s.count_boot().boots).collect();
        assert_eq!(counts, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.plan(), Ok(PLAN), "the plan survives the rewrites");
    }

    #[test]
    fn a_torn_write_reads_as_no_configuration_at_any_point() {
        // Every byte programmed is a point where the power may fail.
        for budget in 0..HEADER_LEN + PLAN.len() {
            let mut f = FakeFlash::erased(256);
            f.budget = budget;
            let mut s = ConfigStore::new(f);
            assert_eq!(s.save(PLAN), Err(FlashFailed), "budget {budget}");
            // Erased (nothing yet), a partly programmed magic, or a bad CRC:
            // never a plan.
            let p = s.plan();
            assert!(
                matches!(
                    p,
                    Err(RecordError::Erased | RecordError::BadMagic | RecordError::BadCrc)
                ),
                "budget {budget}: {p:?}"
            );
            assert_eq!(s.count_boot().boots, 0, "budget {budget}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_record_is_a_bad_crc() {
        let mut s = ConfigStore::new(FakeFlash::erased(256));
        s.save(PLAN).unwrap();
        for at in 8..HEADER_LEN + PLAN.len() {
            let mut bytes = s.flash.bytes.clone();
            bytes[at] ^= 0x10;
            assert_eq!(
                decode(&bytes).map(|r| r.plan),
                Err(RecordError::BadCrc),
                "byte {at}"
            );
        }
        let mut bytes = s.flash.bytes.clone();
        bytes[4] = 2;
        assert_eq!(decode(&bytes), Err(RecordError::UnknownVersion(2)));
        bytes[0] = 0;
        assert_eq!(decode(&bytes), Err(RecordError::BadMagic));
        // A length past the sector.
        let mut bytes = s.flash.bytes.clone();
        bytes[6..8].copy_from_slice(&1_000u16.to_le_bytes());
        assert_eq!(decode(&bytes), Err(RecordError::BadLength(1_000)));
    }

    #[test]
    fn a_plan_too_long_for_the_sector_is_refused_before_erasing() {
        let mut s = ConfigStore::new(FakeFlash::erased(64));
        s.save(b"short").unwrap();
        assert_eq!(s.save(&[b'x'; 100]), Err(FlashFailed));
        assert_eq!(s.plan(), Ok(&b"short"[..]), "the old plan is kept");
    }

    #[test]
    fn the_recorder_keeps_the_message_from_its_begin_line() {
        let mut r: PlanRecorder<256> = PlanRecorder::default();
        // An operator's limit and a log line in the middle are not kept.
        for &b in b"noise\nC end 1*00\nC begin 1 2 1*AB\nL 0 200 1 ab*12\nlog\nC group 1 1 1*CD\nC end ff*EF\n" {
            r.handle_byte(b);
        }
        assert_eq!(
            r.take().unwrap().as_slice(),
            b"C begin 1 2 1*AB\nC group 1 1 1*CD\nC end ff*EF\n"
        );
        assert!(r.take().is_none(), "once");
        // Too long for the recorder: nothing kept.
        let mut small: PlanRecorder<20> = PlanRecorder::default();
        for &b in b"C begin 1 2 1*AB\nC group 1 1 1*CD\n" {
            small.handle_byte(b);
        }
        assert!(small.take().is_none());
    }

    /// The whole path a board takes: the harness's message recorded as it
    /// arrives, accepted, saved, and at the next boot fed to a new receiver,
    /// which gives back the same plan (and refuses it under another key:
    /// the MAC runs again).
    #[test]
    fn a_recorded_saved_and_replayed_message_gives_back_the_same_plan() {
        use firmware::commission::{encode, Commission, Receiver};
        use firmware::sharing::config::{GroupConfig, NodeConfig, Phase, StationConfig, Timing};
        use firmware::telemetry::Refusal;

        let mut group: GroupConfig<6, 4> = GroupConfig {
            group: 3,
            key: [0x5A; 32],
            enabled: true,
            leader: 1,
            nodes: Default::default(),
            stations: Default::default(),
            timing: Timing::default(),
            dynamic: None,
        };
        let _ = group.nodes.push(NodeConfig {
            parent: None,
            limit_da: 640,
            breaker_da: Some(800),
        });
        for id in 1..=2 {
            let _ = group.stations.push(StationConfig {
                id,
                node: 0,
                nameplate_da: 320,
                breaker_da: None,
                phases: 3,
                rotation: Phase::L1,
                fallback_da: 60,
                priority: 0,
                weight: 1,
            });
        }
        let c = Commission { id: 2, group };
        let key = [7u8; 32];
        let mut recorder: PlanRecorder<MAX_PLAN> = PlanRecorder::default();
        let mut rx: Receiver<6, 4> = Receiver::new(key);
        let mut accepted = None;
        // Terminal noise before the message is not kept.
        let mut bytes = b"hello\n".to_vec();
        encode(&c, &key, |line| bytes.extend_from_slice(line.as_bytes()));
        for b in bytes {
            recorder.handle_byte(b);
            if let Some(r) = rx.handle_rx(&[b]) {
                accepted = Some(r);
            }
        }
        assert_eq!(accepted, Some(Ok(c.clone())));
        let mut store = ConfigStore::new(FakeFlash::erased(16 * 1024));
        store.save(&recorder.take().unwrap()).unwrap();
        assert_eq!(store.count_boot().boots, 1);
        let plan = store.plan().unwrap();
        assert!(plan.starts_with(b"C begin 2 2 1*"));
        assert_eq!(Receiver::<6, 4>::new(key).handle_rx(plan), Some(Ok(c)));
        assert_eq!(
            Receiver::<6, 4>::new([8; 32]).handle_rx(plan),
            Some(Err(Refusal::BadMac))
        );
    }
}
