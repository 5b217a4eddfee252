//! Where the image's site plan comes from.
//!
//! A stand-in for `firmware::commission` (issue 11 §2, being written), with
//! its interface: [`Receiver::handle_rx`] takes the debug channel's bytes
//! and returns a finished commissioning message. Until that module lands,
//! this one hands out a built-in plan at boot (one station that leads
//! itself on a 16 A circuit), so an image runs and answers
//! `T config accepted 1 1`. The swap is the one `use` line in each board's
//! `main.rs`.

use firmware::sharing::config::{GroupConfig, NodeConfig, Phase, StationConfig, Timing};
use firmware::telemetry::Refusal;

/// A validated commissioning message: this station's id and its group.
pub struct Commission<const S: usize, const N: usize> {
    pub id: u8,
    pub group: GroupConfig<S, N>,
}

/// Hands out the built-in plan once, at the first call.
pub struct Receiver<const S: usize, const N: usize> {
    given: bool,
}

impl<const S: usize, const N: usize> Receiver<S, N> {
    pub fn new(_bench_key: [u8; 32]) -> Self {
        Self { given: false }
    }

    pub fn handle_rx(&mut self, _bytes: &[u8]) -> Option<Result<Commission<S, N>, Refusal>> {
        if core::mem::replace(&mut self.given, true) {
            return None;
        }
        Some(built_in().ok_or(Refusal::TooLarge))
    }
}

/// One station (id 1) leading itself: a 32 A nameplate on a 16 A circuit.
fn built_in<const S: usize, const N: usize>() -> Option<Commission<S, N>> {
    let mut nodes = heapless::Vec::new();
    nodes
        .push(NodeConfig {
            parent: None,
            limit_da: 160,
            breaker_da: None,
        })
        .ok()?;
    let mut stations = heapless::Vec::new();
    stations
        .push(StationConfig {
            id: 1,
            node: 0,
            nameplate_da: 320,
            breaker_da: None,
            phases: 1,
            rotation: Phase::L1,
            fallback_da: 0,
            priority: 0,
            weight: 1,
        })
        .ok()?;
    Some(Commission {
        id: 1,
        group: GroupConfig {
            group: 1,
            key: *b"sharebench qemu built-in plan 01",
            enabled: true,
            leader: 1,
            nodes,
            stations,
            timing: Timing::default(),
            dynamic: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware::station::Station;
    use firmware::time::us;

    #[test]
    fn the_built_in_plan_comes_once_and_starts_a_leader() {
        let mut r = Receiver::<6, 4>::new([0; 32]);
        let Some(Ok(c)) = r.handle_rx(&[]) else {
            panic!("the plan at the first call");
        };
        assert!(r.handle_rx(b"anything").is_none(), "and only once");
        let s = Station::new(c.group, c.id, 1, us(0)).expect("a valid plan");
        assert!(s.leader().is_some());
    }

    #[test]
    fn an_image_too_small_for_the_plan_refuses_it() {
        let mut r = Receiver::<0, 0>::new([0; 32]);
        assert!(matches!(r.handle_rx(&[]), Some(Err(Refusal::TooLarge))));
    }
}
