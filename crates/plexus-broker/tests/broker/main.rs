//! Integration tests: the real broker on real sockets, driven with raw frames.

mod backpressure;
mod calls;
mod contracts;
mod errors;
mod events;
mod ipc_broker;
mod ipc_server;
mod ipcprims;
mod lifecycle;
mod limits;
mod metrics_http;
mod ndjson;
mod procbridge;
mod publish_stall;
mod router_limits;
mod slowloris;
mod socket_dir;
mod trust;
