//! `plexus bridge procbridge`: serves a name on the bus by forwarding each call on it to an
//! existing ProcBridge server, so that server becomes a bus object.

use std::fmt;
use std::path::PathBuf;

use bytes::BytesMut;
use clap::{Args, Subcommand};
use plexus_client::{CallContext, Error, ErrorCode, Object};
use plexus_proto::dialect::parse_coded_message;
use plexus_proto::dialect::procbridge::{
    Response, Status, parse_response, put_packet, request_body, take_packet,
};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::bus::{Global, ReconnectArgs, stop_signal};
use crate::exit::{self, Failure};

/// `plexus bridge KIND ...`: make a server of another protocol a bus object.
#[derive(Args, Debug)]
pub struct BridgeArgs {
    #[command(subcommand)]
    kind: BridgeKind,
}

#[derive(Subcommand, Debug)]
enum BridgeKind {
    /// Register NAME and forward each call on it to a ProcBridge server (the ProcBridge method is
    /// the called method, the payload is the params).
    Procbridge(ProcBridgeArgs),
    /// Register NAME and forward each call on it to an ipcprims listener as a JSON-RPC request on
    /// COMMAND (one at a time).
    Ipcprims(crate::bridge_ipcprims_cmd::IpcPrimsArgs),
}

#[derive(Args, Debug)]
struct ProcBridgeArgs {
    /// The name to serve on the bus.
    #[arg(long)]
    name: String,
    /// The ProcBridge server: HOST:PORT, or unix:PATH.
    #[arg(long, value_name = "HOST:PORT|unix:PATH")]
    connect: String,
    /// Join the name's queue group instead of owning it alone.
    #[arg(long)]
    shared: bool,
    #[command(flatten)]
    reconnect: ReconnectArgs,
}

/// Where the ProcBridge server listens.
#[derive(Debug, Clone)]
enum Server {
    Tcp(String),
    Unix(PathBuf),
}

impl Server {
    fn parse(text: &str) -> Result<Server, Failure> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(Server::Unix(PathBuf::from(path)));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Server::Tcp(text.to_owned()))
            }
            _ => Err(Failure::new(
                exit::INVALID_ARGS,
                format!("--connect {text:?} is neither HOST:PORT nor unix:PATH"),
            )),
        }
    }

    /// Sends one request on a fresh connection (ProcBridge servers answer one request per
    /// connection) and reads the response.
    async fn request(&self, body: &[u8]) -> Result<Response, String> {
        match self {
            Server::Tcp(addr) => {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?;
                exchange(stream, body).await
            }
            Server::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?;
                exchange(stream, body).await
            }
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Server::Tcp(addr) => write!(f, "{addr}"),
            Server::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    body: &[u8],
) -> Result<Response, String> {
    let mut out = BytesMut::new();
    put_packet(&mut out, Status::Request, body);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = BytesMut::new();
    loop {
        if let Some(packet) = take_packet(&mut buf, plexus_proto::DEFAULT_MAX_FRAME)
            .map_err(|e| format!("bad response: {e}"))?
        {
            return parse_response(&packet);
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("cannot read the response: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection without answering".to_owned());
        }
    }
}

/// The bus object: each call is one ProcBridge request.
struct ProcBridgeObject {
    server: Server,
}

impl Object for ProcBridgeObject {
    async fn call(
        &self,
        method: &str,
        params: &RawValue,
        ctx: &CallContext,
    ) -> Result<Value, Error> {
        let body = request_body(method, Some(params));
        let response = tokio::select! {
            r = self.server.request(&body) => r,
            () = ctx.cancelled() => Err("the caller gave up".to_owned()),
        };
        match response {
            Ok(Response::Good(payload)) => Ok(serde_json::from_str(payload.get())?),
            Ok(Response::Bad(message)) => {
                let (code, text) = parse_coded_message(&message);
                Err(Error::remote(code, text))
            }
            Err(why) => Err(Error::remote(
                ErrorCode::Internal,
                format!("ProcBridge server {}: {why}", self.server),
            )),
        }
    }
}

async fn procbridge(args: ProcBridgeArgs, g: Global) -> Result<u8, Failure> {
    let server = Server::parse(&args.connect)?;
    let (client, mut watch) = g.connect_long("bridge", &args.reconnect).await?;
    let object = ProcBridgeObject {
        server: server.clone(),
    };
    let bridged = Bridged {
        name: &args.name,
        shared: args.shared,
        dialect: "procbridge",
        target: server.to_string(),
        described: format!("the ProcBridge server {server}"),
    };
    bridged.serve(&client, &mut watch, &g, object).await
}

/// Runs `plexus bridge` until SIGINT or SIGTERM.
pub async fn bridge(args: BridgeArgs, g: Global) -> Result<u8, Failure> {
    match args.kind {
        BridgeKind::Procbridge(args) => procbridge(args, g).await,
        BridgeKind::Ipcprims(args) => crate::bridge_ipcprims_cmd::ipcprims(args, g).await,
    }
}

/// What a bridge puts on the bus, and where its calls go.
pub struct Bridged<'a> {
    /// The bus name.
    pub name: &'a str,
    /// Join the name as a queue group member.
    pub shared: bool,
    /// The dialect, as the key of `--json` output.
    pub dialect: &'static str,
    /// Where calls go, as `--json` shows it.
    pub target: String,
    /// Where calls go, in words.
    pub described: String,
}

impl Bridged<'_> {
    /// Serves `object` under the name, says what is bridged, and runs until a stop signal or
    /// until the connection to the bus fails for good.
    pub async fn serve<O: Object>(
        self,
        client: &plexus_client::Client,
        watch: &mut crate::watch::Watch,
        g: &Global,
        object: O,
    ) -> Result<u8, Failure> {
        if self.shared {
            client.serve_shared(self.name, object).await?;
        } else {
            client.serve(self.name, object).await?;
        }
        if g.json {
            let mut line =
                serde_json::json!({ "bridging": self.name, "bus": client.address().to_string() });
            line[self.dialect] = serde_json::Value::String(self.target);
            println!("{line}");
        } else {
            println!(
                "bridging {} on {} to {}",
                self.name,
                client.address(),
                self.described
            );
        }
        tokio::select! {
            () = stop_signal() => Ok(exit::OK),
            failure = watch.failure() => Err(failure),
        }
    }
}
