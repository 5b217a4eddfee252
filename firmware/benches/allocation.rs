//! Allocation for a 4-level tree of 10,000 stations (service, panels,
//! circuits, stations), every station asking. Target: at most 1 ms per
//! allocation on one core.

use criterion::{criterion_group, criterion_main, Criterion};
use firmware::sharing::alloc::{allocate, Demand, NodeSlot, Scratch, StationSlot};

/// 1 service, `panels` panels, 50 circuits per panel, 10 stations per
/// circuit (20 panels: 10,000 stations): a mix of 3-phase and rotated
/// single-phase stations.
fn site(panels: u16, circuits: u16) -> (Vec<NodeSlot>, Vec<StationSlot>) {
    let mut nodes = vec![NodeSlot::new(None, [u32::from(panels) * 2_000; 3])];
    let mut stations = Vec::new();
    for panel in 0..panels {
        nodes.push(NodeSlot::new(Some(0), [4_000; 3]));
        let panel_idx = nodes.len() as u16 - 1;
        for _ in 0..circuits {
            nodes.push(NodeSlot::new(Some(panel_idx), [800; 3]));
            let circuit = nodes.len() as u16 - 1;
            for s in 0..10u16 {
                let phases = match (s + panel) % 4 {
                    0 => [true, true, true],
                    1 => [true, false, false],
                    2 => [false, true, false],
                    _ => [false, false, true],
                };
                let n = stations.len() as u32;
                stations.push(StationSlot::new(Demand {
                    node: circuit,
                    phases,
                    cap_da: 160 + (n % 7) as u16 * 40,
                    weight: 1,
                    priority: u8::from(n.is_multiple_of(50)),
                    rank: n.wrapping_mul(2_654_435_761),
                    start_da: 60,
                    fixed_da: 0,
                }));
            }
        }
    }
    (nodes, stations)
}

fn bench(c: &mut Criterion) {
    let (mut nodes, mut stations) = site(20, 50);
    let (mut a, mut o) = (vec![[0; 3]; stations.len()], vec![[0; 3]; nodes.len()]);
    c.bench_function("allocate 10k stations, 4-level tree", |b| {
        b.iter(|| {
            allocate(
                &mut nodes,
                &mut stations,
                Scratch {
                    per_station: &mut a,
                    per_node: &mut o,
                },
            )
            .expect("valid tree")
        })
    });
    // A full group (one leader and 255 followers): what a leader does every cycle.
    let (mut nodes, mut stations) = site(2, 13);
    stations.truncate(256);
    let (mut a, mut o) = (vec![[0; 3]; stations.len()], vec![[0; 3]; nodes.len()]);
    c.bench_function("allocate 256 stations (a full group)", |b| {
        b.iter(|| {
            allocate(
                &mut nodes,
                &mut stations,
                Scratch {
                    per_station: &mut a,
                    per_node: &mut o,
                },
            )
            .expect("valid tree")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
