//! Runs the deterministic simulation of the metadata log by hand: many seeds, or one seed again.
//!
//! ```text
//! cargo run --release -p ha --example sim -- [--seed N | --first N --seeds COUNT] [--steps S] [--liar] [--eio]
//! ```
//! Prints one line per failing seed and a summary; exits 1 if any seed failed. Faults outside
//! the model (PROTOCOL.md §2), by hand only: `--liar`, one founding node's disk answers syncs
//! without keeping anything; `--eio`, a disk in trouble fails its syncs instead of filling up.

#[path = "../tests/simulation/mod.rs"]
mod sim;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let steps = arg("--steps", 150) as usize;
    let (first, seeds) = match args.iter().any(|a| a == "--seed") {
        true => (arg("--seed", 1), 1),
        false => (arg("--first", 1), arg("--seeds", 1000)),
    };
    let scratch = std::path::Path::new("/dev/shm");
    let scratch = if scratch.is_dir() {
        scratch.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let outside = sim::OutsideModel {
        liar: args.iter().any(|a| a == "--liar"),
        eio: args.iter().any(|a| a == "--eio"),
    };
    let started = std::time::Instant::now();
    let mut failed = 0;
    let mut totals = (0, 0, 0, 0, 0, 0, 0, 0);
    let (mut power_losses, mut late, mut disks, mut stopped) = (0, 0, 0, 0);
    let (mut by_lease, mut by_round) = (0, 0);
    for seed in first..first + seeds {
        let r = sim::run_seed(seed, steps, &scratch, outside);
        if seeds == 1 {
            println!("seed {} trace {:016x}\n{r:#?}", r.seed, r.trace);
        }
        if !r.violations.is_empty() {
            failed += 1;
            println!("seed {seed}: {:?}", r.violations);
        }
        totals.0 += r.creates_acknowledged;
        totals.1 += r.creates_refused;
        totals.2 += r.creates_unknown;
        totals.3 += r.crashes;
        totals.4 += r.partitions;
        totals.5 += r.joins;
        totals.6 += r.removals;
        totals.7 += r.docs_saved;
        power_losses += r.power_losses;
        late += r.late_requests;
        disks += r.disk_failures;
        stopped += r.logs_stopped;
        by_lease += r.reads_by_lease;
        by_round += r.reads_by_round;
    }
    println!(
        "{seeds} seeds x {steps} steps in {:.1} s: {failed} failed; {} creates acknowledged, {} refused, {} unknown; {} crashes ({power_losses} with power lost), {} partitions, {late} requests delivered late, {disks} disks failing ({stopped} logs stopped on it); {} joins, {} removals; {} documents saved; {by_lease} reads in a lease, {by_round} after a round",
        started.elapsed().as_secs_f64(),
        totals.0, totals.1, totals.2, totals.3, totals.4, totals.5, totals.6, totals.7
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
