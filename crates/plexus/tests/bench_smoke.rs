//! `plexus bench --json` with a tiny duration: every scenario `--list` names prints its objects,
//! each a JSON object with `scenario` and numeric figures. No timing is asserted.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

fn plexus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
}

/// The scenario names `plexus bench --list` prints.
fn scenarios() -> BTreeSet<String> {
    let out = plexus()
        .args(["bench", "--list"])
        .output()
        .expect("plexus bench --list runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn every_scenario_prints_its_json_object() {
    let mut names = scenarios();
    // Cluster: listed, but run only with `plexus bench --cluster` (it needs nats-server).
    assert!(names.remove("cluster"), "--list lacks cluster: {names:?}");
    for expected in [
        "floor",
        "rpc-latency",
        "rpc-throughput",
        "rpc-validated",
        "fanout",
        "payload",
        "memory",
        "tcp",
    ] {
        assert!(
            names.contains(expected),
            "--list lacks {expected}: {names:?}"
        );
    }
    let out = plexus()
        .args(["bench", "--json", "--duration", "50ms"])
        .output()
        .expect("plexus bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plexus bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = BTreeSet::new();
    let mut payload_sizes = Vec::new();
    for line in stdout.lines() {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let map = object
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        let scenario = map["scenario"]
            .as_str()
            .expect("scenario is a string")
            .to_owned();
        let numbers = map.values().filter(|v| v.is_number()).count();
        assert!(numbers >= 2, "{scenario} printed no figures: {line}");
        if ["rpc-latency", "payload"].contains(&scenario.as_str()) {
            assert!(
                map["floor_ratio"].as_f64().is_some_and(|r| r > 0.0),
                "{line}"
            );
        }
        if scenario == "payload" {
            payload_sizes.push(map["bytes"].as_u64().expect("bytes"));
        }
        if scenario == "rpc-validated" {
            assert!(
                map["unchecked_p50_us"].is_number() && map["params_bytes"].is_u64(),
                "{line}"
            );
        }
        if scenario == "fanout" {
            assert!(
                map["lost"].is_u64() && map["deliveries_per_s"].is_number(),
                "{line}"
            );
        }
        seen.insert(scenario);
    }
    assert_eq!(seen, names, "scenarios printed vs listed:\n{stdout}");
    assert_eq!(
        payload_sizes,
        [64, 64 << 10, 1 << 20, 16 << 20, 64 << 20],
        "{stdout}"
    );
}

#[test]
fn an_unknown_scenario_is_refused_with_the_known_ones() {
    let out = plexus()
        .args(["bench", "no-such"])
        .output()
        .expect("plexus bench runs");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such") && stderr.contains("rpc-latency"),
        "{stderr}"
    );
}
