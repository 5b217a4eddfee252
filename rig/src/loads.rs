//! Other site loads on the mains: appliances (an oven, a dryer) switching on
//! and off, and generation (PV, as a negative load). Owns their sum per
//! phase; does not schedule them (the harness's timeline does).

use heapless::{String, Vec};

/// Most named loads at once.
pub const MAX_LOADS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Load {
    name: String<16>,
    /// Bit 0 = L1, bit 1 = L2, bit 2 = L3.
    phases: u8,
    da: i32,
    on: bool,
}

/// The set of site loads.
#[derive(Debug, Clone, Default)]
pub struct SiteLoads {
    loads: Vec<Load, MAX_LOADS>,
}

/// Too many distinct loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyLoads;

impl core::fmt::Display for TooManyLoads {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "more than {MAX_LOADS} site loads")
    }
}

impl SiteLoads {
    /// Set (or add) a load. `da` is per phase; negative for generation.
    pub fn set(&mut self, name: &str, phases: u8, da: i32, on: bool) -> Result<(), TooManyLoads> {
        if let Some(l) = self.loads.iter_mut().find(|l| l.name == name) {
            l.phases = phases;
            l.da = da;
            l.on = on;
            return Ok(());
        }
        let mut n = String::new();
        let _ = n.push_str(&name[..name.len().min(16)]);
        self.loads
            .push(Load {
                name: n,
                phases,
                da,
                on,
            })
            .map_err(|_| TooManyLoads)
    }

    pub fn clear(&mut self) {
        self.loads.clear();
    }

    /// Sum per phase of what is on, deciamps (import positive).
    #[must_use]
    pub fn total_da(&self) -> [i32; 3] {
        let mut t = [0i32; 3];
        for l in self.loads.iter().filter(|l| l.on) {
            for (ph, sum) in t.iter_mut().enumerate() {
                if l.phases & (1 << ph) != 0 {
                    *sum = sum.saturating_add(l.da);
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appliances_add_up_per_phase() {
        let mut s = SiteLoads::default();
        s.set("oven", 7, 130, true).unwrap();
        s.set("dryer", 2, 100, true).unwrap();
        s.set("pv", 1, -60, true).unwrap();
        assert_eq!(s.total_da(), [70, 230, 130]);
        s.set("oven", 7, 130, false).unwrap();
        assert_eq!(s.total_da(), [-60, 100, 0]);
    }
}
