//! The dashboard's JSON API and live feed against a real `plexus broker --http` with the
//! calculator example worker, callers, a publisher and a subscriber.

mod dashboard_support;

use std::time::{Duration, Instant};

use dashboard_support::{DashBroker, WAIT, add_calls, calculator_worker, client, get, p50_p99_us};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The row of `rows` whose `key` is `value`.
fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r[key] == value))
        .unwrap_or_else(|| panic!("a row with {key} = {value} in {rows}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_connections_names_and_topics_under_traffic() {
    let broker = DashBroker::start(&[]);
    let _worker = calculator_worker(&broker);
    let caller = client(&broker.bus, "caller").await;
    let listener = client(&broker.bus, "listener").await;
    let mut events = listener.subscribe("sensor.>").await.expect("subscribe");
    let publisher = client(&broker.bus, "publisher").await;

    add_calls(&caller, 200).await;
    for _ in 0..5 {
        let refused: Result<Value, _> = caller.call("math", "add", &json!({ "a": "x" })).await;
        assert!(refused.is_err(), "the worker refuses bad params");
    }
    for i in 0..10 {
        publisher
            .publish("sensor.temp", &json!({ "c": i }))
            .await
            .expect("publish");
    }
    for _ in 0..10 {
        tokio::time::timeout(WAIT, events.next())
            .await
            .expect("events arrive")
            .expect("an event");
    }

    let conns = broker.json("/api/connections?sort=bytes_in&order=desc");
    assert_eq!(conns["sort"], "bytes_in");
    assert!(conns["total"].as_u64() >= Some(4), "{conns}");
    let first = &conns["connections"][0];
    assert_eq!(
        first["client"], "caller",
        "the busiest caller first: {conns}"
    );
    assert!(first["frames_in"].as_u64() >= Some(205), "{first}");
    assert!(first["frames_out"].as_u64() >= Some(205), "{first}");
    assert!(first["bytes_in"].as_u64() > Some(205 * 24), "{first}");
    assert_eq!(first["pid"], json!(std::process::id()));
    assert_eq!(first["dialect"], "native");
    assert_eq!(first["pending_calls"], 0);
    let worker_row = row(&conns["connections"], "client", "calculator_worker");
    assert_eq!(worker_row["names"], json!(["math"]));
    let listener_row = row(&conns["connections"], "client", "listener");
    assert_eq!(listener_row["subscriptions"], 1);
    assert_eq!(listener_row["dropped_events"], 0);

    let page = broker.json("/api/connections?sort=id&limit=1&offset=1");
    assert_eq!(page["connections"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["total"], conns["total"]);
    let (status, body) = broker.get("/api/connections?sort=colour");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("cannot sort connections by \\\"colour\\\""),
        "{body}"
    );

    let names = broker.json("/api/names");
    let math = row(&names["names"], "name", "math");
    assert_eq!(math["calls_served"], 205, "{math}");
    assert_eq!(math["replies"], 200, "{math}");
    assert_eq!(math["errors"], 5, "{math}");
    assert!(math["p50_us"].as_f64() > Some(0.0), "{math}");
    assert!(math["p99_us"].as_f64() >= math["p50_us"].as_f64(), "{math}");
    assert_eq!(math["methods"], json!(["add", "mul"]));
    assert_eq!(math["shared"], false);
    assert_eq!(math["owners"][0]["client"], "calculator_worker");
    assert_eq!(math["has_contract"], true);
    assert!(
        math.get("contract").is_none(),
        "the list leaves contracts out"
    );
    let one = broker.json("/api/names/math");
    assert!(one["contract"]["methods"]["add"].is_object(), "{one}");
    let (status, body) = broker.get("/api/names/nobody");
    assert_eq!(status, 404, "{body}");

    let topics = broker.json("/api/topics");
    let temp = row(&topics["topics"], "topic", "sensor.temp");
    assert_eq!(temp["published"], 10, "{temp}");
    assert_eq!(temp["delivered"], 10, "{temp}");
    assert_eq!(temp["dropped"], 0, "{temp}");
    assert_eq!(temp["subscriptions"], 1, "{temp}");
    assert_eq!(
        row(&topics["patterns"], "pattern", "sensor.>")["subscriptions"],
        1
    );

    let server = broker.json("/api/server");
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        server["totals"]["calls_routed"].as_u64() >= Some(205),
        "{server}"
    );
    assert_eq!(server["totals"]["connections"], conns["total"]);
    assert!(server["limits"]["max_frame"].as_u64() > Some(0), "{server}");
    assert!(server["uptime_s"].as_f64() > Some(0.0), "{server}");

    let health = broker.json("/api/health");
    assert_eq!(health["status"], "ok");

    // The sampler takes one sample a second: the calls show in the history's rates.
    let deadline = Instant::now() + WAIT;
    loop {
        let history = broker.json("/api/history");
        let samples = history["samples"].as_array().cloned().unwrap_or_default();
        let busiest = samples
            .iter()
            .filter_map(|s| s["calls_per_s"].as_f64())
            .fold(0.0, f64::max);
        if busiest > 0.0 && samples.iter().any(|s| s["p50_us"].as_f64().is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the calls show in the history: {history}"
        );
        add_calls(&caller, 10).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (status, metrics) = broker.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("plexus_calls_total{outcome=\"ok\"}"),
        "{metrics}"
    );

    let (status, body) = get(broker.http, "/api/server", "evil.example:7777");
    assert_eq!(status, 421, "a page elsewhere cannot read the API: {body}");
    let (status, page) = broker.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<title>plexus"), "{page}");
    let (status, _) = broker.get("/dashboard.js");
    assert_eq!(status, 200);
}

/// Opens the live feed with a small receive buffer and reads its response head.
async fn open_live(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("the head in time")
            .expect("read");
        assert_eq!(n, 1, "the feed closed: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    stream
}

/// Reads `stream` until `text` appears; everything read.
async fn read_until(stream: &mut tokio::net::TcpStream, text: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{text:?} in time"))
            .expect("read");
        assert!(n > 0, "the feed closed before {text:?}");
        seen.extend_from_slice(&buf[..n]);
        // Keep what is needed to find `text` and what follows it.
        if let Some(at) = String::from_utf8_lossy(&seen).find(text) {
            let mut rest = String::from_utf8_lossy(&seen[at..]).into_owned();
            if !rest.contains("\n\n") {
                let n = stream.read(&mut buf).await.expect("read");
                rest.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            return rest;
        }
        if seen.len() > 1024 * 1024 {
            seen.drain(..seen.len() - 4096);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_viewer_is_told_it_lagged_and_calls_go_on() {
    let broker = DashBroker::start(&[]);
    let _worker = calculator_worker(&broker);
    let callers = [
        client(&broker.bus, "caller-1").await,
        client(&broker.bus, "caller-2").await,
        client(&broker.bus, "caller-3").await,
        client(&broker.bus, "caller-4").await,
    ];
    let mut before = load(&callers, 300).await;
    let mut live = open_live(broker.http).await;
    assert_eq!(broker.json("/api/server")["live_viewers"], 1);
    // A viewer that reads its first records sees the calls.
    add_calls(&callers[0], 1).await;
    let first = read_until(&mut live, "event: record").await;
    assert!(first.contains("\"kind\":\"call\""), "{first}");

    // The viewer stops reading while 4 callers make 5000 calls each: far more records than
    // the feed keeps for it and the socket buffers hold.
    let started = Instant::now();
    let mut during = load(&callers, 5000).await;
    let took = started.elapsed();
    let (b50, b99) = p50_p99_us(&mut before);
    let (d50, d99) = p50_p99_us(&mut during);
    eprintln!(
        "math.add latency without a viewer: p50 {b50} us, p99 {b99} us; with a stalled viewer: p50 {d50} us, p99 {d99} us ({} calls in {took:?})",
        during.len()
    );
    assert_eq!(during.len(), 20_000, "every call completed");

    // Reading again, it is told how many records it lost.
    let lagged = read_until(&mut live, "event: lagged").await;
    let data = lagged
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let missed: Value = serde_json::from_str(data).expect("lagged JSON");
    assert!(missed["missed"].as_u64() > Some(0), "{lagged}");
    eprintln!(
        "the stalled viewer was told it missed {} records",
        missed["missed"]
    );

    // A viewer that leaves stops counting.
    drop(live);
    let deadline = Instant::now() + WAIT;
    while broker.json("/api/server")["live_viewers"] != 0 {
        assert!(Instant::now() < deadline, "the viewer is let go");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes `n` `math.add` calls on each of `callers` at once; the duration of every call.
async fn load(callers: &[plexus_client::Client], n: usize) -> Vec<Duration> {
    let mut tasks = tokio::task::JoinSet::new();
    for caller in callers {
        let caller = caller.clone();
        tasks.spawn(async move { add_calls(&caller, n).await });
    }
    let mut all = Vec::new();
    while let Some(took) = tasks.join_next().await {
        all.extend(took.expect("a caller task"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_past_the_limit_are_refused() {
    let broker = DashBroker::start(&[]);
    let mut viewers = Vec::new();
    for _ in 0..16 {
        viewers.push(open_live(broker.http).await);
    }
    let (status, body) = broker.get("/api/live");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("16 viewers already watch"), "{body}");
    drop(viewers);
}
