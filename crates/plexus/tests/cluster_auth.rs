//! Brokers joining a NATS system that asks who they are (issue 16): a token, TLS with a CA and
//! client certificates, and a credentials file of NATS decentralized authentication (operator,
//! account and user JWTs made in the test). Real `nats-server` (one per test), real `plexus`
//! brokers, real clients. A broker NATS refuses says why, in `plexus stats` and its log, and
//! keeps serving its own processes. `docs/scaling.md` says what each test proves.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use plexus_client::Client;
use plexus_proto::ErrorCode;
use serde_json::{Value, json};
use support::WAIT;
use support::nats::{
    Certs, Decentralized, Nats, await_cluster, await_joined, bus_client, cluster_broker,
};
use support::process::BrokerProc;

/// Serves `name` on `broker` (the client must be kept), answering every call with the node.
async fn serve(broker: &BrokerProc, name: &str, node: &'static str) -> Client {
    let c = bus_client(&broker.addr(), "worker").await;
    c.serve_fn(name, move |_method, params, _ctx| async move {
        Ok(json!({ "node": node, "params": params }))
    })
    .await
    .expect("register");
    c
}

/// Calls `object` from `broker` until it is found on the other broker; the answer.
async fn call_across(broker: &BrokerProc, object: &str) -> Value {
    let c = bus_client(&broker.addr(), "caller").await;
    let deadline = Instant::now() + WAIT;
    loop {
        match c.call::<_, Value>(object, "hello", &json!(7)).await {
            Ok(v) => return v,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::NoSuchObject, "{e}");
                assert!(Instant::now() < deadline, "{object} never found: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A broker NATS refused: `plexus stats` says why (`nats_error` names each of `why`), the log
/// too, and local calls (to a name not exported) still work.
async fn refused_but_serving_locally(broker: &BrokerProc, why: &[&str]) {
    let s = await_cluster(broker, |s| s["nats_error"].is_string()).await;
    assert_ne!(s["nats"], "connected", "{s}");
    let error = s["nats_error"].as_str().unwrap_or_default();
    for word in why {
        assert!(error.contains(word), "nats_error names {word}: {s}");
    }
    let log = broker.log();
    assert!(
        log.contains("cannot connect to the cluster's NATS") && log.contains(why[0]),
        "the log names it:\n{log}"
    );
    let _worker = serve(broker, "local.svc", "local").await;
    let c = bus_client(&broker.addr(), "local-caller").await;
    let v: Value = c
        .call("local.svc", "hello", &json!(1))
        .await
        .expect("local calls work without NATS");
    assert_eq!(v["node"], "local");
}

/// Config lines for broker `node`: `extra`, and only `public.>` names exported (so that a
/// broker NATS refuses can still register local names).
fn config(extra: &str) -> String {
    format!("cluster_export_names = [\"public.>\"]\n{extra}")
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lets_brokers_in_and_a_wrong_one_is_named() {
    let nats = Nats::start_configured("authorization {\n  token: \"s3cret-nats-token\"\n}\n");
    let right = config("cluster_token = \"s3cret-nats-token\"\n");
    let a = cluster_broker(&nats.url(0), "A", &right, &[]);
    let b = cluster_broker(&nats.url(0), "B", &right, &[]);
    await_joined(&a).await;
    await_joined(&b).await;
    let _worker = serve(&b, "public.svc", "B").await;
    let v = call_across(&a, "public.svc").await;
    assert_eq!(v, json!({ "node": "B", "params": 7 }));

    let wrong = cluster_broker(
        &nats.url(0),
        "C",
        &config("cluster_token = \"not-the-token\"\n"),
        &[],
    );
    refused_but_serving_locally(&wrong, &["authorization violation", "cluster_token"]).await;
    let none = cluster_broker(&nats.url(0), "D", &config(""), &[]);
    refused_but_serving_locally(&none, &["authorization violation"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_and_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(dir.path());
    let nats = Nats::start_configured(&format!(
        "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: true\n  timeout: 5\n}}\n",
        quoted(&certs.server.0),
        quoted(&certs.server.1),
        quoted(&certs.ca),
    ));
    let ca = format!("cluster_tls_ca = {}\n", quoted(&certs.ca));
    let client_cert = format!(
        "cluster_tls_cert = {}\ncluster_tls_key = {}\n",
        quoted(&certs.client.0),
        quoted(&certs.client.1)
    );
    let full = config(&format!("{ca}{client_cert}cluster_tls_required = true\n"));
    let a = cluster_broker(&nats.url(0), "A", &full, &[]);
    let b = cluster_broker(&nats.url(0), "B", &full, &[]);
    await_joined(&a).await;
    await_joined(&b).await;
    let _worker = serve(&b, "public.svc", "B").await;
    let v = call_across(&a, "public.svc").await;
    assert_eq!(v, json!({ "node": "B", "params": 7 }));

    // Without the CA the server's certificate is not trusted.
    let no_ca = cluster_broker(&nats.url(0), "C", &config(&client_cert), &[]);
    refused_but_serving_locally(&no_ca, &["UnknownIssuer", "cluster_tls_ca"]).await;
    // Without a client certificate the server (verify: true) does not let the broker in.
    let no_cert = cluster_broker(&nats.url(0), "D", &config(&ca), &[]);
    let s = await_cluster(&no_cert, |s| s["nats_error"].is_string()).await;
    assert_ne!(s["nats"], "connected", "{s}");
    assert!(
        nats.log(0).contains("TLS handshake error"),
        "the server refused the client without a certificate:\n{}",
        nats.log(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_file_of_an_account_with_jetstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut auth = Decentralized::new(dir.path());
    let with_js = auth.account("PLEXUS", true);
    let without_js = auth.account("NOJS", false);
    let nats = Nats::start_configured(&auth.server_conf());
    let creds = config(&format!("cluster_credentials = {}\n", quoted(&with_js)));
    let a = cluster_broker(&nats.url(0), "A", &creds, &[]);
    let b = cluster_broker(&nats.url(0), "B", &creds, &[]);
    await_joined(&a).await;
    await_joined(&b).await;
    let _worker = serve(&b, "public.svc", "B").await;
    let v = call_across(&a, "public.svc").await;
    assert_eq!(v, json!({ "node": "B", "params": 7 }));

    // An account without JetStream: the broker connects, but without a name store it refuses
    // exported exclusive names rather than risk two owners.
    let c = cluster_broker(
        &nats.url(0),
        "C",
        &config(&format!("cluster_credentials = {}\n", quoted(&without_js))),
        &[],
    );
    await_cluster(&c, |s| s["nats"] == "connected").await;
    let on_c = bus_client(&c.addr(), "contender").await;
    let err = on_c
        .serve_fn("public.other", |_, _, _| async { Ok(Value::Null) })
        .await
        .expect_err("no exported name without the name store");
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    assert!(err.to_string().contains("name store"), "{err}");
    let s = await_cluster(&c, |s| s["nats"] == "connected").await;
    assert_eq!(s["name_store"], "unavailable", "{s}");
}
