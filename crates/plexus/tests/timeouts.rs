//! The connection timeouts from the command line and the config file reach the broker.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use plexus_proto::{ErrorCode, Frame, Kind, decode};

mod cli_support;

const WAIT: Duration = Duration::from_secs(10);

/// Frames until the broker closes the connection.
fn frames_until_closed(mut stream: UnixStream) -> Vec<Frame> {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("the broker closes in time");
    let mut buf = BytesMut::from(&bytes[..]);
    std::iter::from_fn(|| decode(&mut buf, u32::MAX).expect("valid frames")).collect()
}

#[test]
fn handshake_and_partial_frame_timeouts_come_from_the_config_file_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let config = dir.path().join("plexus.toml");
    std::fs::write(&config, "handshake_timeout_ms = 150\n").expect("write config");
    let mut broker = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["broker", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .args(["--partial-frame-timeout-ms", "250"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn broker");
    cli_support::wait_listening(&socket, WAIT, "the broker listens in time");

    let silent = UnixStream::connect(&socket).expect("connect");
    let told = frames_until_closed(silent);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].error_code(), ErrorCode::BadFrame);
    assert!(
        told[0].string(0).contains("handshake timeout (150 ms)"),
        "{told:?}"
    );

    let mut half = UnixStream::connect(&socket).expect("connect");
    half.write_all(&Frame::hello("half").to_bytes())
        .expect("hello");
    let ping = Frame::ping(1, b"never finished").to_bytes();
    half.write_all(&ping[..ping.len() - 1])
        .expect("part of a ping");
    let told = frames_until_closed(half);
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[0].kind(), Kind::Welcome);
    assert!(
        told[1].string(0).contains("partial_frame_timeout (250 ms)"),
        "{told:?}"
    );
    let _ = broker.kill();
    let _ = broker.wait();
}
