//! Every input a fuzzer found a crash with, kept: the files in
//! `tests/fuzz-regressions/TARGET/` run through the same entry point the
//! fuzz target `TARGET` calls (`release_guardian::fuzz`), which checks the
//! target's properties. Each must come back without a panic and as a clean
//! error (a non-empty message), except files named `accepted-*`: inputs
//! that crashed a parser but are valid, which must now be accepted. And the
//! fuzz targets' seeds (`fuzz/seeds/`) must keep reaching the parsers: a
//! correctly signed delivery of each tool, a release body, a rule pack,
//! the example config and a target's exposition are accepted.

use release_guardian::fuzz;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The entry point of fuzz target `target`.
fn run(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "release" => fuzz::release(data),
        "rule_pack" => fuzz::rule_pack(data),
        "config" => fuzz::config(data),
        "exposition" => fuzz::exposition(data),
        _ => match target.strip_prefix("webhook_") {
            Some(tool) if fuzz::WEBHOOKS.contains(&tool) => fuzz::webhook(tool, data),
            _ => panic!("tests/fuzz-regressions/{target}: no such fuzz target"),
        },
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_crash_found_by_fuzzing_is_now_a_clean_answer() {
    let mut failures = Vec::new();
    let mut count = 0;
    for dir in files(&root().join("tests/fuzz-regressions")) {
        if !dir.is_dir() {
            continue; // README.md
        }
        let target = dir.file_name().unwrap().to_str().unwrap().to_string();
        for file in files(&dir) {
            count += 1;
            let data = std::fs::read(&file).unwrap();
            let name = file.file_name().unwrap().to_str().unwrap();
            let accepted = name.starts_with("accepted-");
            match catch_unwind(AssertUnwindSafe(|| run(&target, &data))) {
                Err(_) => failures.push(format!("{}: panicked", file.display())),
                Ok(Err(m)) if accepted => {
                    failures.push(format!("{}: refused: {m}", file.display()))
                }
                Ok(Err(m)) if m.trim().is_empty() => {
                    failures.push(format!("{}: an empty error", file.display()))
                }
                Ok(Ok(())) if !accepted => failures.push(format!(
                    "{}: accepted (name it accepted-* if it should be)",
                    file.display()
                )),
                Ok(_) => {}
            }
        }
    }
    assert!(count > 0, "no regression inputs found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_fuzz_seeds_reach_the_parsers() {
    let seeds = root().join("fuzz/seeds");
    for target in [
        "webhook_github",
        "webhook_gitlab",
        "webhook_argocd",
        "webhook_flux",
    ] {
        let data = std::fs::read(seeds.join(target).join("seed-0")).unwrap();
        assert_eq!(run(target, &data), Ok(()), "{target}");
        // Unsigned, the same delivery is refused before it is parsed.
        let mut unsigned = data.clone();
        unsigned[0] = 0;
        assert!(run(target, &unsigned).is_err(), "{target} unsigned");
    }
    for (target, file) in [
        ("release", "seed-0"),
        ("release", "seed-1"),
        ("rule_pack", "checklist.yaml"),
        ("rule_pack", "health-probes.yaml"),
        ("config", "guardian.example.toml"),
        ("exposition", "seed-0"),
        ("exposition", "seed-1"),
        ("exposition", "seed-2"),
    ] {
        let data = std::fs::read(seeds.join(target).join(file)).unwrap();
        assert_eq!(run(target, &data), Ok(()), "{target}/{file}");
    }
    assert!(run("release", b"[]").is_err());
    assert!(run("config", b"[server]\nlisten = 5").is_err());
    assert!(run("exposition", b"up{job=\"a\" 1").is_err());
}
