//! Speed of the virtual bench, in simulated seconds per wall second (the
//! throughput criterion prints, with one element = one simulated second).
//!
//! (a) a 6-station group over 1 h of bench time with cars plugging in and
//!     out; goal at least 10,000x real time.
//! (b) 256 stations over 1 h (the scale-256 site); goal at least 500x.
//!
//! Capture goes through the rig's capture code: every new PWM is fed to it
//! as 32 periods of edges through the timer path.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use harness::runner;
use harness::scenario::Scenario;
use harness::sim::VirtualBench;

fn six_stations() -> Scenario {
    let mut text = String::from(
        "name = \"bench-6\"\nduration = \"1h\"\nseed = 1\n[[node]]\nname = \"circuit\"\nlimit = \"64A\"\nbreaker = \"80A\"\n",
    );
    for id in 1..=6 {
        text.push_str(&format!(
            "[[station]]\nid = {id}\nnode = \"circuit\"\nnameplate = \"32A\"\nfallback = \"10A\"\n{}\n[[car]]\nstation = {id}\ndelay = \"1s\"\ndelay_max = \"4s\"\n",
            if id == 1 { "leader = true" } else { "" }
        ));
    }
    text.push_str("[sharing]\nrotation = \"off\"\n");
    // Cars come and go all hour.
    let mut steps = Vec::new();
    for id in 1..=6u32 {
        let mut t = 30 * id;
        while t + 600 < 3_600 {
            steps.push((t, "arrive", id));
            steps.push((t + 420 + 37 * id, "unplug", id));
            t += 900 + 61 * id;
        }
    }
    steps.sort_unstable();
    for (t, what, id) in steps {
        text.push_str(&format!(
            "[[at]]\ntime = \"{t}s\"\ndo = \"{what}\"\nstation = {id}\n"
        ));
    }
    Scenario::parse(Path::new("bench-6.toml"), &text).expect("valid bench scenario")
}

fn scale_256_one_hour() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios/scale-256.toml");
    let mut sc = Scenario::load(&path).expect("scale-256 scenario");
    sc.duration_us = 3_600_000_000;
    sc.timeline.retain(|s| s.at_us < sc.duration_us);
    sc
}

fn run(sc: &Scenario) {
    let mut bench = VirtualBench::new(sc, sc.seed).expect("bench");
    let r = runner::run(sc, &mut bench, sc.seed);
    assert!(r.trace.incomplete.is_none());
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("virtual bench");
    let six = six_stations();
    g.throughput(Throughput::Elements(six.duration_us / 1_000_000));
    g.bench_function("6 stations, 1 h (simulated s)", |b| b.iter(|| run(&six)));
    let big = scale_256_one_hour();
    g.sample_size(10);
    g.throughput(Throughput::Elements(big.duration_us / 1_000_000));
    g.bench_function("256 stations, 1 h (simulated s)", |b| b.iter(|| run(&big)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
