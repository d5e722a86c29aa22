//! Outside tools some tests need (a Python with a package): found, or the test is skipped
//! locally with the reason and fails in CI.

/// Whether this run is CI, where a missing tool fails a test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a tool a test needs and cannot find: fails in CI, skips (with the reason) locally.
pub fn missing(what: &str) {
    assert!(!in_ci(), "{what} (needed in CI)");
    eprintln!("skipped: {what}");
}

/// A Python that can import `module`: `PLEXUS_PYTHON` (required in CI), else locally the
/// workspace's `.venv` or `python3`. `None` (after a printed reason) to skip.
pub fn python_with(module: &str) -> Option<String> {
    let imports = |python: &str| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Ok(python) = std::env::var("PLEXUS_PYTHON") {
        assert!(
            imports(&python),
            "PLEXUS_PYTHON={python} cannot import {module}"
        );
        return Some(python);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    if !in_ci() {
        for python in [venv, "python3"] {
            if imports(python) {
                return Some(python.to_owned());
            }
        }
    }
    missing(&format!(
        "no Python with the `{module}` package: set PLEXUS_PYTHON (`python3 -m venv .venv && .venv/bin/pip install {module}`)"
    ));
    None
}
