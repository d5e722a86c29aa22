//! Whom the client talks to: on a Unix socket it checks the broker's user before it sends
//! anything.

use plexus_client::{Client, Error};
use plexus_test_support::TestBroker;
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;

#[tokio::test]
async fn a_broker_running_as_the_clients_own_user_is_trusted() {
    let broker = TestBroker::start().await;
    let own = rustix::process::geteuid().as_raw();
    for builder in [Client::builder(), Client::builder().trust_broker_uid(own)] {
        let client = builder
            .address(broker.addr())
            .connect()
            .await
            .expect("connect");
        let pong: serde_json::Value = client.call("plexus", "ping", &()).await.expect("ping");
        assert_eq!(pong["pong"], true);
    }
}

#[tokio::test]
async fn a_broker_running_as_another_user_than_the_expected_one_is_refused_before_anything_is_sent()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bus.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let received = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.expect("read");
        got
    });
    let connected = Client::builder()
        .address(format!("unix:{}", path.display()))
        .trust_broker_uid(4242)
        .connect()
        .await;
    let Err(err) = connected else {
        panic!("a broker running as uid 4242 was expected")
    };
    let own = rustix::process::geteuid().as_raw();
    assert!(
        matches!(err, Error::UntrustedBroker { broker_uid, expected: Some(4242), .. } if broker_uid == own),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("uid {own}")) && text.contains("uid 4242"),
        "names both users: {text}"
    );
    let sent = tokio::time::timeout(plexus_test_support::WAIT, received)
        .await
        .expect("the client closes in time")
        .expect("listener task");
    assert!(sent.is_empty(), "nothing was sent: {sent:?}");
}
