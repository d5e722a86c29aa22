//! ipc-server and ipcprims as processes: `plexus broker --ipc-server-compat` and
//! `plexus bridge ipcprims` in front of a small ipcprims echo listener written here.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

mod cli_support;

use cli_support::{Guard, Lines, WAIT, ndjson_request, plexus};

/// One ipcprims frame: `IP`, u32 LE length, u16 LE channel, payload.
fn write_frame(stream: &mut UnixStream, channel: u16, payload: &Value) {
    let body = payload.to_string();
    let mut frame = b"IP".to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&channel.to_le_bytes());
    frame.extend_from_slice(body.as_bytes());
    stream.write_all(&frame).expect("write frame");
}

/// The listener's side of a connection, with the bytes read ahead.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    fn fill(&mut self, want: usize) -> Option<()> {
        while self.buf.len() < want {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    }

    fn read_frame(&mut self) -> Option<(u16, Value)> {
        self.fill(8)?;
        assert_eq!(&self.buf[..2], b"IP");
        let len = u32::from_le_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]) as usize;
        let channel = u16::from_le_bytes([self.buf[6], self.buf[7]]);
        self.fill(8 + len)?;
        let frame: Vec<u8> = self.buf.drain(..8 + len).collect();
        Some((
            channel,
            serde_json::from_slice(&frame[8..]).expect("JSON payload"),
        ))
    }

    /// Whether a request has arrived beyond the frames taken so far: any bytes past the whole
    /// CONTROL frames waiting (a `pong` may come at any time, also while a request is being
    /// answered, and is no request; anything else, even a frame only begun, counts as one).
    fn request_waiting(&mut self) -> bool {
        self.stream.set_nonblocking(true).expect("nonblocking");
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = self.stream.read(&mut chunk) {
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.stream.set_nonblocking(false).expect("blocking");
        let mut rest = &self.buf[..];
        while rest.len() >= 8 {
            let len = u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
            let channel = u16::from_le_bytes([rest[6], rest[7]]);
            if channel != 0 || rest.len() < 8 + len {
                return true;
            }
            rest = &rest[8 + len..];
        }
        !rest.is_empty()
    }
}

/// An ipcprims listener: shakes hands, pings its peer once, and answers JSON-RPC requests on
/// COMMAND (`echo` returns the params, `fail` a JSON-RPC error, `slow` sleeps 300 ms first).
/// `overlap` is set if a request ever arrives while another is being answered (CONTROL frames,
/// such as the `pong` to its ping, may come at any time).
fn echo_listener(path: &Path, overlap: Arc<AtomicBool>) {
    let listener = UnixListener::bind(path).expect("bind the ipcprims listener");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let overlap = overlap.clone();
            let mut conn = Conn {
                stream,
                buf: Vec::new(),
            };
            std::thread::spawn(move || serve_peer(&mut conn, &overlap));
        }
    });
}

fn serve_peer(conn: &mut Conn, overlap: &AtomicBool) {
    let Some((0, hello)) = conn.read_frame() else {
        return;
    };
    assert_eq!(hello["protocol"], "ipcprims");
    let channels: Vec<u16> = serde_json::from_value(hello["channels"].clone()).expect("channels");
    write_frame(
        &mut conn.stream,
        0,
        &json!({"protocol":"ipcprims","version":"1.0","channels":channels,"peer_id":"bridge"}),
    );
    write_frame(&mut conn.stream, 0, &json!({"type":"ping"}));
    let mut pinged = false;
    while let Some((channel, msg)) = conn.read_frame() {
        if channel == 0 {
            assert_eq!(msg, json!({"type":"pong"}));
            pinged = true;
            continue;
        }
        assert_eq!(channel, 1, "requests come on COMMAND");
        let id = msg["id"].clone();
        let answer = match msg["method"].as_str() {
            Some("echo") => json!({"jsonrpc":"2.0","id":id,"result":msg["params"]}),
            Some("fail") => {
                json!({"jsonrpc":"2.0","id":id,"error":{"code":2,"message":"no such thing"}})
            }
            Some("slow") => {
                std::thread::sleep(Duration::from_millis(300));
                json!({"jsonrpc":"2.0","id":id,"result":"slept"})
            }
            Some("pinged") => json!({"jsonrpc":"2.0","id":id,"result":pinged}),
            _ => json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"unknown"}}),
        };
        if conn.request_waiting() {
            overlap.store(true, Ordering::SeqCst);
        }
        write_frame(&mut conn.stream, 1, &answer);
    }
}

/// Reads one ipc-server message the way its client does: one read (more while reads fill 4 KiB).
fn ipc_server_request(stream: &mut std::net::TcpStream, msg: Value) -> Value {
    stream.write_all(msg.to_string().as_bytes()).expect("write");
    let mut data = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("read");
        data.extend_from_slice(&chunk[..n]);
        if n < chunk.len() {
            break;
        }
    }
    serde_json::from_slice(&data).expect("one message per read")
}

#[test]
fn the_broker_serves_ipc_server_programs_and_bridges_an_ipcprims_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let ip_socket = dir.path().join("echo.sock");
    let overlap = Arc::new(AtomicBool::new(false));
    echo_listener(&ip_socket, overlap.clone());

    let mut broker = plexus()
        .args(["broker", "--socket"])
        .arg(&socket)
        .args(["--ipc-server-compat", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plexus broker");
    let broker_err = Lines::read(
        broker.stderr.take().expect("stderr"),
        "broker stderr".into(),
    );
    let mut broker = Guard(broker);
    let line = broker_err.until("for ipc-server programs on tcp://");
    let addr = line.rsplit("tcp://").next().expect("an address").to_owned();

    let mut bridge = plexus()
        .args(["bridge", "ipcprims", "--name", "echo.box", "--connect"])
        .arg(&ip_socket)
        .arg("--bus")
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn plexus bridge ipcprims");
    let out = Lines::read(
        bridge.stdout.take().expect("stdout"),
        "bridge stdout".into(),
    );
    out.until("bridging echo.box");
    let mut bridge = Guard(bridge);

    let echoed = ndjson_request(
        &socket,
        json!({"jsonrpc":"2.0","id":1,"method":"echo.box.echo","params":{"a":[1,"x",null]}}),
    );
    assert_eq!(
        echoed,
        json!({"jsonrpc":"2.0","id":1,"result":{"a":[1,"x",null]}})
    );
    let failed = ndjson_request(
        &socket,
        json!({"jsonrpc":"2.0","id":2,"method":"echo.box.fail"}),
    );
    assert_eq!(
        failed["error"]["code"], -32601,
        "JSON-RPC's method not found: {failed}"
    );
    assert_eq!(
        failed["error"]["data"]["plexus_code"], 2,
        "no_such_method: {failed}"
    );
    assert_eq!(failed["error"]["message"], "no such thing");
    let pinged = ndjson_request(
        &socket,
        json!({"jsonrpc":"2.0","id":3,"method":"echo.box.pinged"}),
    );
    assert_eq!(
        pinged["result"], true,
        "the bridge answered the listener's ping"
    );

    // A call that times out while in flight does not confuse the next one.
    let late = ndjson_request(
        &socket,
        json!({"jsonrpc":"2.0","id":4,"method":"echo.box.slow","timeout_ms":100}),
    );
    assert_eq!(
        late["error"]["code"], -32003,
        "JSON-RPC server error -32000 - 3: {late}"
    );
    assert_eq!(late["error"]["data"]["plexus_code"], 3, "timeout: {late}");
    let next = ndjson_request(
        &socket,
        json!({"jsonrpc":"2.0","id":5,"method":"echo.box.echo","params":5}),
    );
    assert_eq!(next["result"], 5, "{next}");

    // Concurrent calls go to the listener one at a time.
    let callers: Vec<_> = (0..3)
        .map(|n| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                ndjson_request(
                    &socket,
                    json!({"jsonrpc":"2.0","id":n,"method":"echo.box.slow"}),
                )
            })
        })
        .collect();
    for caller in callers {
        let answer = caller.join().expect("caller thread");
        assert_eq!(answer["result"], "slept", "{answer}");
    }
    assert!(
        !overlap.load(Ordering::SeqCst),
        "no request came while another was answered"
    );

    // ipc-server programs reach the bridged object through the same broker.
    let mut ipc = std::net::TcpStream::connect(&addr).expect("connect to the ipc-server port");
    ipc.set_read_timeout(Some(WAIT)).expect("timeout");
    assert_eq!(
        ipc_server_request(&mut ipc, json!({"list":["echo.box"]})),
        json!({"list":["echo.box"]})
    );
    assert_eq!(
        ipc_server_request(
            &mut ipc,
            json!({"object":"echo.box","method":"echo","param":{"k":"v"}})
        ),
        json!({"response":{"k":"v"}})
    );

    assert_eq!(
        bridge.terminate().code(),
        Some(0),
        "the bridge stops cleanly"
    );
    assert_eq!(
        broker.terminate().code(),
        Some(0),
        "the broker stops cleanly"
    );
}
