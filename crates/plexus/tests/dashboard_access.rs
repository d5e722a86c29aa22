//! Who may look at the dashboard: beyond loopback only with `--allow-remote` and the broker's
//! token (Bearer header or the page's cookie), and under a policy a viewer sees only what its
//! identity (the token, or anonymous) may see: `list_details` for who is behind connections and
//! names, `monitor` for the live feed.

mod dashboard_support;

use std::process::Command;

use dashboard_support::{
    DashBroker, add_calls, calculator_worker, client, get_with, status_line, token_file,
};
use serde_json::Value;

const TOKEN: &str = "dash-token-0123456789";

fn plexus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
}

#[test]
fn beyond_loopback_every_request_needs_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(dir.path(), TOKEN);
    let token_arg = token.display().to_string();

    for (flags, says) in [
        (vec!["--allow-remote"], "needs a token"),
        (vec!["--token-file", &token_arg], "--allow-remote"),
    ] {
        let out = plexus()
            .args(["broker", "--socket"])
            .arg(dir.path().join("refused.sock"))
            .args(["--http", "0.0.0.0:7777"])
            .args(&flags)
            .output()
            .expect("run plexus broker");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }

    let broker = DashBroker::start_on("0.0.0.0", &["--allow-remote", "--token-file", &token_arg]);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let cookie = format!("Cookie: theme=dark; plexus_token={TOKEN}");
    let host = "dashboard.example:7777";
    let (status, body) = get_with(broker.http, "/api/server", host, &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("needs the broker's token"), "{body}");
    let (status, body) = get_with(
        broker.http,
        "/api/server",
        host,
        &["Authorization: Bearer dash-token-0123456780"],
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not the broker's"), "{body}");
    let (status, body) = get_with(broker.http, "/api/server", host, &[&bearer]);
    assert_eq!(
        status, 200,
        "a remote viewer by any host name, with the token: {body}"
    );
    let (status, body) = get_with(broker.http, "/api/connections", host, &[&cookie]);
    assert_eq!(status, 200, "the page's cookie: {body}");
    let (status, _) = get_with(broker.http, "/metrics", host, &[]);
    assert_eq!(status, 401, "metrics too");
    let (status, body) = get_with(broker.http, "/metrics", host, &[&bearer]);
    assert_eq!(status, 200, "{body}");
    let (status, page) = get_with(broker.http, "/", host, &[]);
    assert_eq!(
        status, 200,
        "the page itself holds nothing; it asks for the token"
    );
    assert!(page.contains("id=\"token-form\""), "{page}");
    assert_eq!(
        status_line(broker.http, "/api/live", &[]),
        "HTTP/1.1 401 Unauthorized"
    );
    assert_eq!(
        status_line(broker.http, "/api/live", &[&bearer]),
        "HTTP/1.1 200 OK"
    );

    let top = |token: Option<&str>| {
        let mut cmd = plexus();
        cmd.args(["top", "--once", "--http", &broker.http.to_string()])
            .env_remove("PLEXUS_TOKEN");
        if let Some(path) = token {
            cmd.args(["--token-file", path]);
        }
        cmd.output().expect("run plexus top")
    };
    let out = top(None);
    assert_eq!(out.status.code(), Some(50), "no token: permission denied");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = top(Some(&token_arg));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("connections (sorted by bytes_out"));
}

/// Root (the test) may do everything; a viewer with the token may see details and watch; an
/// anonymous viewer may only look at the tables without who is behind them.
const POLICY: &str = r#"
[[allow]]
who = ["uid:0"]
own = [">"]
join = [">"]
call = [">"]
publish = [">"]
subscribe = [">"]
monitor = true
list_details = true

[[allow]]
who = ["token"]
monitor = true
list_details = true

[[allow]]
who = ["anonymous"]
call = ["math.add"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_only_what_its_identity_may_see() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(dir.path(), TOKEN);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy");
    let broker = DashBroker::start(&[
        "--token-file",
        &token.display().to_string(),
        "--policy",
        &policy.display().to_string(),
    ]);
    let _worker = calculator_worker(&broker);
    let caller = client(&broker.bus, "caller").await;
    add_calls(&caller, 5).await;

    let json = |path: &str, headers: &[&str]| -> Value {
        let (status, body) = get_with(broker.http, path, "127.0.0.1", headers);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    };
    let bearer = format!("Authorization: Bearer {TOKEN}");

    let seen = json("/api/connections?sort=id", &[&bearer]);
    let worker = &seen["connections"][0];
    assert_eq!(worker["client"], "calculator_worker", "{seen}");
    assert!(worker["pid"].is_u64(), "{seen}");
    let names = json("/api/names", &[&bearer]);
    assert_eq!(
        names["names"][0]["owners"][0]["client"],
        "calculator_worker"
    );
    assert_eq!(
        status_line(broker.http, "/api/live", &[&bearer]),
        "HTTP/1.1 200 OK"
    );

    let hidden = json("/api/connections?sort=id", &[]);
    assert_eq!(
        hidden["total"], seen["total"],
        "the anonymous viewer sees the connections"
    );
    for row in hidden["connections"].as_array().into_iter().flatten() {
        assert_eq!(row["client"], "", "{row}");
        assert!(
            row["pid"].is_null() && row["uid"].is_null() && row["exe"].is_null(),
            "{row}"
        );
        assert!(
            row["frames_in"].as_u64() > Some(0),
            "but not its counters: {row}"
        );
    }
    let names = json("/api/names", &[]);
    let owner = &names["names"][0]["owners"][0];
    assert_eq!(owner["client"], "", "{owner}");
    assert!(owner["pid"].is_null(), "{owner}");
    assert_eq!(names["names"][0]["calls_served"], 5);
    let (status, body) = get_with(broker.http, "/api/live", "127.0.0.1", &[]);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("monitor"),
        "the refusal names the right: {body}"
    );
    let (status, body) = get_with(
        broker.http,
        "/api/server",
        "127.0.0.1",
        &["Authorization: Bearer wrong-token-0123456789"],
    );
    assert_eq!(status, 401, "{body}");
}

#[test]
fn with_a_token_and_no_rules_for_anonymous_viewers_they_are_asked_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(dir.path(), TOKEN);
    let broker = DashBroker::start(&["--token-file", &token.display().to_string()]);
    let (status, body) = get_with(broker.http, "/api/server", "127.0.0.1", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("sent none"), "{body}");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (status, body) = get_with(broker.http, "/api/server", "127.0.0.1", &[&bearer]);
    assert_eq!(status, 200, "{body}");
}
