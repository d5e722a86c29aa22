//! Integration tests: the real broker on real sockets, driven with raw frames.

mod calls;
mod errors;
mod events;
mod ipc_broker;
mod lifecycle;
mod limits;
mod ndjson;
mod procbridge;
mod router_limits;
mod trust;
