//! The dashboard page in a real browser (Debian's headless Chromium, driven over the DevTools
//! protocol) against a broker running the calculator example under load: the tables, the
//! charts and the live sequence diagram fill in, a name shows its contract, the traffic view
//! filters and pauses. The screenshot is kept as `target/dashboard.png`.

mod dashboard_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashboard_support::cdp::Browser;
use dashboard_support::{DashBroker, add_calls, calculator_worker, client};

#[test]
fn the_page_shows_the_calculator_s_calls_live() {
    let broker = DashBroker::start(&[]);
    let _worker = calculator_worker(&broker);
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let load = {
        let (bus, stop) = (broker.bus.clone(), stop.clone());
        runtime.spawn(async move {
            let caller = client(&bus, "calculator_client").await;
            let mut calls = 0;
            while !stop.load(Ordering::Relaxed) {
                calls += add_calls(&caller, 20).await.len();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            calls
        })
    };

    let mut page = Browser::open(&format!("http://{}/", broker.http));
    page.wait_for(
        "the names table lists math",
        "[...document.querySelectorAll('#names td.name')].some(td => td.textContent === 'math')",
    );
    page.wait_for(
        "the connections table lists the worker and the caller",
        "['calculator_worker', 'calculator_client'].every(c => [...document.querySelectorAll('#connections td')].some(td => td.textContent === c))",
    );
    page.wait_for(
        "the sequence diagram shows math.add calls and their replies",
        "document.querySelectorAll('#sequence g.entry[data-kind=call][data-label=\"math.add\"]').length > 3 && document.querySelectorAll('#sequence g.entry[data-kind=reply][data-label=\"math.add\"]').length > 3",
    );
    page.wait_for(
        "replies are drawn as arcs labelled with their duration",
        "[...document.querySelectorAll('#sequence text.arc-label')].some(t => /µs|ms/.test(t.textContent))",
    );
    page.wait_for(
        "one lane per process: the worker's and the caller's",
        "[...document.querySelectorAll('#sequence-heads text.lane-head')].filter(t => /calculator_(worker|client) \\(pid \\d+\\)/.test(t.textContent)).length === 2",
    );
    page.wait_for(
        "the call rate chart has a line",
        "document.querySelector('#chart-calls polyline') !== null && /\\d+ calls\\/s/.test(document.getElementById('now-calls').textContent) && state.samples.some(s => s.calls_per_s > 0)",
    );
    page.eval("document.querySelector('#names td.name').click(); true");
    page.wait_for(
        "clicking math shows its methods and contract",
        "document.getElementById('detail-methods').textContent === 'methods: add, mul' && document.getElementById('detail-contract').textContent.includes('\"add\"')",
    );
    // Filtering by a topic nobody publishes hides every call; by math.add shows them again.
    page.eval("const f = document.getElementById('filter'); f.value = 'no.such.topic'; f.dispatchEvent(new Event('input')); true");
    page.wait_for(
        "a filter hides what does not match",
        "document.querySelectorAll('#sequence g.entry').length === 0",
    );
    page.eval("const g = document.getElementById('filter'); g.value = 'math.add'; g.dispatchEvent(new Event('input')); true");
    page.wait_for(
        "the filter shows math.add again",
        "document.querySelectorAll('#sequence g.entry').length > 0 && visibleRecords().every(r => r.object === 'math' || r.kind === 'event')",
    );
    page.eval("document.getElementById('pause').click(); true");
    let shown = page.eval("state.records.length");
    page.wait_for(
        "while paused, new records are counted, not shown",
        "state.notShown > 0 && /paused, \\d+ not shown/.test(document.getElementById('traffic-status').textContent)",
    );
    assert_eq!(
        page.eval("state.records.length"),
        shown,
        "paused: nothing added"
    );
    let exported = page.eval("JSON.parse(JSON.stringify(visibleRecords())).length");
    assert!(
        exported.as_u64() > Some(0),
        "the export holds the shown records"
    );
    page.eval("document.getElementById('pause').click(); true");

    let png = page.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let target = Path::new(env!("CARGO_BIN_EXE_plexus"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    std::fs::write(target.join("dashboard.png"), &png).expect("write the screenshot");
    eprintln!("screenshot: {}", target.join("dashboard.png").display());

    stop.store(true, Ordering::Relaxed);
    let calls = runtime.block_on(load).expect("the load task");
    assert!(calls > 0);
}
