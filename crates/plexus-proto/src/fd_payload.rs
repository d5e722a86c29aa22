//! A payload that travels as a sealed memfd passed beside its frame (SCM_RIGHTS) instead of
//! inline bytes: the descriptor and the payload's length.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// A frame's payload held in a sealed memfd: all of the memfd's bytes are the payload.
///
/// Cloning shares the descriptor (a frame delivered to many peers sends the same memfd to each);
/// it is closed when the last clone is dropped. Two `FdPayload`s are equal when they share it.
#[derive(Clone)]
pub struct FdPayload {
    inner: Arc<Held>,
}

struct Held {
    fd: OwnedFd,
    len: u64,
}

impl FdPayload {
    /// The payload in `fd`, which holds `len` bytes (its size, sealed so it cannot change).
    pub fn new(fd: OwnedFd, len: u64) -> FdPayload {
        FdPayload {
            inner: Arc::new(Held { fd, len }),
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        self.inner.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }
}

impl AsFd for FdPayload {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl std::fmt::Debug for FdPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdPayload")
            .field("fd", &self.inner.fd)
            .field("len", &self.inner.len)
            .finish()
    }
}

impl PartialEq for FdPayload {
    fn eq(&self, other: &FdPayload) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for FdPayload {}
