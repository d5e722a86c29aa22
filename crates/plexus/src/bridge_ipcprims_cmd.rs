//! `plexus bridge ipcprims`: serves a name on the bus by forwarding each call on it to an existing
//! ipcprims listener as a JSON-RPC 2.0 request on COMMAND, one request in flight at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use clap::Args;
use plexus_client::{CallContext, Error, ErrorCode, Object};
use plexus_proto::dialect::ipcprims::{
    COMMAND, CONTROL, ControlMessage, ERROR, HandshakeRequest, HandshakeResponse, PROTOCOL,
    RpcAnswer, VERSION, parse_answer, put_frame, request, take_frame,
};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::bridge_cmd::Bridged;
use crate::bus::{Global, ReconnectArgs};
use crate::exit::{self, Failure};

/// How long the listener has to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame read from the listener (ipcprims' own default payload limit).
const MAX_FRAME: u32 = 16 * 1024 * 1024 + 8;

/// `plexus bridge ipcprims`.
#[derive(Args, Debug)]
pub struct IpcPrimsArgs {
    /// The name to serve on the bus.
    #[arg(long)]
    name: String,
    /// The ipcprims listener's Unix socket.
    #[arg(long, value_name = "SOCKET")]
    connect: PathBuf,
    /// Join the name's queue group instead of owning it alone.
    #[arg(long)]
    shared: bool,
    #[command(flatten)]
    reconnect: ReconnectArgs,
}

/// The connection to the listener, opened again when it is lost.
struct Link {
    stream: Option<UnixStream>,
    buf: BytesMut,
    next_id: u64,
    /// A request whose caller gave up before its answer came; the next request waits for that
    /// answer, so the listener never has two requests at once.
    stale: Option<u64>,
}

impl Link {
    /// The connection, opened and shaken hands with if there is none.
    async fn stream(&mut self, path: &Path) -> Result<&mut UnixStream, String> {
        if self.stream.is_none() {
            let (stream, buf) = handshake(path).await?;
            self.buf = buf;
            self.stream = Some(stream);
        }
        self.stream
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    /// Writes the request for `method(params)`; returns its id. Not raced against the caller
    /// giving up, so a frame is never half written.
    async fn send(&mut self, path: &Path, method: &str, params: &RawValue) -> Result<u64, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut frame = BytesMut::new();
        put_frame(&mut frame, COMMAND, &request(id, method, params));
        let stream = self.stream(path).await?;
        if let Err(e) = stream.write_all(&frame).await {
            self.stream = None;
            return Err(format!("cannot send the request: {e}"));
        }
        Ok(id)
    }

    /// Reads until the answer to request `id`: its JSON-RPC response (or any other payload) on
    /// COMMAND, or a frame on ERROR. Answers pings; a shutdown request ends the connection.
    /// Cancel safe: bytes read stay in the buffer.
    async fn answer(&mut self, id: u64) -> Result<RpcAnswer, String> {
        loop {
            while let Some((channel, payload)) =
                take_frame(&mut self.buf, MAX_FRAME).map_err(|e| e.to_string())?
            {
                match channel {
                    COMMAND => match parse_answer(&payload, id) {
                        RpcAnswer::Other => {}
                        answer => return Ok(answer),
                    },
                    ERROR => {
                        let text = String::from_utf8_lossy(&payload).into_owned();
                        return Ok(RpcAnswer::Error(ErrorCode::Internal, text, None));
                    }
                    CONTROL => self.control(&payload).await?,
                    _ => {}
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err("the connection was closed".to_owned());
            };
            match stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    self.stream = None;
                    return Err("the listener closed the connection without answering".to_owned());
                }
                Ok(_) => {}
            }
        }
    }

    /// Answers the listener's CONTROL messages: `ping` with `pong`, `shutdown_request` with
    /// `shutdown_ack` and closing.
    async fn control(&mut self, payload: &[u8]) -> Result<(), String> {
        let Ok(msg) = serde_json::from_slice::<ControlMessage<'_>>(payload) else {
            return Ok(());
        };
        let reply = match &*msg.kind {
            "ping" => "pong",
            "shutdown_request" => "shutdown_ack",
            "shutdown_force" => {
                self.stream = None;
                return Err("the listener forced a shutdown".to_owned());
            }
            _ => return Ok(()),
        };
        let mut frame = BytesMut::new();
        put_frame(&mut frame, CONTROL, &ControlMessage::json(reply));
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.write_all(&frame).await;
        }
        if reply == "shutdown_ack" {
            self.stream = None;
            return Err("the listener is shutting down".to_owned());
        }
        Ok(())
    }
}

/// Connects to the listener and shakes hands for COMMAND and ERROR; returns the connection and
/// the bytes read past the handshake response.
async fn handshake(path: &Path) -> Result<(UnixStream, BytesMut), String> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let hello = HandshakeRequest {
        protocol: PROTOCOL.to_owned(),
        version: VERSION.to_owned(),
        channels: vec![COMMAND, ERROR],
        auth_token: None,
    };
    let json = serde_json::to_vec(&hello).map_err(|e| e.to_string())?;
    let mut frame = BytesMut::new();
    put_frame(&mut frame, CONTROL, &json);
    stream
        .write_all(&frame)
        .await
        .map_err(|e| format!("cannot send the handshake: {e}"))?;
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            if let Some((channel, payload)) =
                take_frame(&mut buf, MAX_FRAME).map_err(|e| e.to_string())?
            {
                if channel != CONTROL {
                    return Err(format!("the handshake was answered on channel {channel}"));
                }
                return serde_json::from_slice::<HandshakeResponse>(&payload)
                    .map_err(|e| format!("bad handshake response: {e}"));
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("the listener refused the handshake".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("cannot read the handshake: {e}")),
            }
        }
    };
    let response = tokio::time::timeout(HANDSHAKE_TIMEOUT, read)
        .await
        .map_err(|_| "no handshake response in time".to_owned())??;
    if !response.channels.contains(&COMMAND) {
        return Err("the listener does not serve COMMAND".to_owned());
    }
    Ok((stream, buf))
}

/// The bus object: each call is one JSON-RPC request.
struct IpcPrimsObject {
    path: PathBuf,
    link: Mutex<Link>,
}

impl IpcPrimsObject {
    /// Waits for its turn (callers queue in order, and behind the answer to a request given up
    /// on), sends the request and reads its answer; a caller that gives up meanwhile leaves the
    /// queue, or leaves its answer to be skipped by the next request.
    async fn forward(
        &self,
        method: &str,
        params: &RawValue,
        ctx: &CallContext,
    ) -> Result<RpcAnswer, String> {
        let gave_up = || "the caller gave up".to_owned();
        let mut link = tokio::select! {
            link = self.link.lock() => link,
            () = ctx.cancelled() => return Err(gave_up()),
        };
        if ctx.is_cancelled() {
            return Err(gave_up());
        }
        if let Some(stale) = link.stale {
            tokio::select! {
                _ = link.answer(stale) => link.stale = None,
                () = ctx.cancelled() => return Err(gave_up()),
            }
        }
        let id = link.send(&self.path, method, params).await?;
        tokio::select! {
            answer = link.answer(id) => answer,
            () = ctx.cancelled() => {
                link.stale = Some(id);
                Err(gave_up())
            }
        }
    }
}

impl Object for IpcPrimsObject {
    async fn call(
        &self,
        method: &str,
        params: &RawValue,
        ctx: &CallContext,
    ) -> Result<Value, Error> {
        match self.forward(method, params, ctx).await {
            Ok(RpcAnswer::Result(result)) => Ok(serde_json::from_str(result.get())?),
            Ok(RpcAnswer::Error(code, message, _)) => Err(Error::remote(code, message)),
            Ok(RpcAnswer::Other) => Err(Error::remote(ErrorCode::Internal, "no answer")),
            Err(why) => Err(Error::remote(
                ErrorCode::Internal,
                format!("ipcprims listener {}: {why}", self.path.display()),
            )),
        }
    }
}

/// Runs `plexus bridge ipcprims` until SIGINT or SIGTERM.
pub async fn ipcprims(args: IpcPrimsArgs, g: Global) -> Result<u8, Failure> {
    let (stream, buf) = handshake(&args.connect).await.map_err(|why| {
        Failure::new(
            exit::TRANSPORT,
            format!("ipcprims listener {}: {why}", args.connect.display()),
        )
    })?;
    let (client, mut watch) = g.connect_long("bridge", &args.reconnect).await?;
    let object = IpcPrimsObject {
        path: args.connect.clone(),
        link: Mutex::new(Link {
            stream: Some(stream),
            buf,
            next_id: 0,
            stale: None,
        }),
    };
    let bridged = Bridged {
        name: &args.name,
        shared: args.shared,
        dialect: "ipcprims",
        target: args.connect.display().to_string(),
        described: format!("the ipcprims listener {}", args.connect.display()),
    };
    bridged.serve(&client, &mut watch, &g, object).await
}
