//! The fuzz targets in every CI run: each gets every saved regression input, its seeds, and
//! a fixed-seed sample of random and mutated inputs (proptest, deterministic), so a decoder
//! that panics on anything the long runs once found, or on a simple mutation of a valid
//! input, fails the build. The long runs are `cargo fuzz` (see BENCHMARKS.md).

use std::path::Path;

use ferrymq_fuzz::TARGETS;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Random inputs per target and strategy (a few seconds in all in a debug build).
const CASES: u32 = 4000;

fn dir(kind: &str, target: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

/// The files under `dir`, in name order (missing directory: none).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn runner(target: &str) -> TestRunner {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    // One fixed seed per target: the same inputs in every run.
    let mut seed = [0u8; 32];
    for (i, b) in target.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

/// Byte-level mutations of a seed: flips, truncation, insertion, duplication.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(seeds),
        proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 1..8),
    )
        .prop_map(|(mut s, edits)| {
            for (at, byte, kind) in edits {
                let at = if s.is_empty() {
                    0
                } else {
                    at as usize % s.len()
                };
                match kind {
                    0 if !s.is_empty() => s[at] = byte,
                    1 => s.truncate(at),
                    2 => s.insert(at.min(s.len()), byte),
                    _ => {
                        let tail = s[at.min(s.len())..].to_vec();
                        s.extend_from_slice(&tail);
                    }
                }
            }
            s
        })
}

#[test]
fn regressions_and_seeds_never_panic() {
    for (name, target) in TARGETS {
        for kind in ["regressions", "seeds"] {
            for (file, bytes) in files(&dir(kind, name)) {
                let r = std::panic::catch_unwind(|| target(&bytes));
                assert!(r.is_ok(), "{name}: {kind}/{file} panics");
            }
        }
    }
}

#[test]
fn random_inputs_never_panic() {
    for (name, target) in TARGETS {
        runner(name)
            .run(&proptest::collection::vec(any::<u8>(), 0..512), |data| {
                target(&data);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn mutated_seeds_never_panic() {
    for (name, target) in TARGETS {
        let seeds: Vec<Vec<u8>> = files(&dir("seeds", name))
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert!(!seeds.is_empty(), "{name} has no seeds");
        runner(name)
            .run(&mutated(seeds), |data| {
                target(&data);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
