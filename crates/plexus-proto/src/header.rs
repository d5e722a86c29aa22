//! The fixed 24-byte frame header.

use crate::decode_error::DecodeError;
use crate::kind::Kind;

/// The two bytes every native frame starts with: `PX`.
pub const MAGIC: [u8; 2] = *b"PX";
/// The protocol's major version; a peer with another major version is refused.
pub const VERSION: u8 = 1;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;
/// Most strings a frame may carry.
pub const MAX_STRINGS: usize = 4;

/// The fixed part of a frame: everything a router needs except the strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol major version of the sender.
    pub version: u8,
    /// What the frame is.
    pub kind: Kind,
    /// Kind-specific flag bits (see [`crate::flags`]).
    pub flags: u8,
    /// Number of length-prefixed strings at the start of the body.
    pub nstr: u8,
    /// Bytes after the header: the strings and the payload.
    pub body_len: u32,
    /// Kind-specific number: timeout in ms, error code, dropped events, max frame size.
    pub aux: u32,
    /// Request, call, or subscription id.
    pub id: u64,
}

impl Header {
    /// A version-1 header for `kind` with everything else zero.
    pub fn new(kind: Kind) -> Self {
        Header {
            version: VERSION,
            kind,
            flags: 0,
            nstr: 0,
            body_len: 0,
            aux: 0,
            id: 0,
        }
    }

    /// The header as it goes on the wire.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = self.version;
        out[3] = self.kind as u8;
        out[4] = self.flags;
        out[5] = self.nstr;
        out[8..12].copy_from_slice(&self.body_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.aux.to_le_bytes());
        out[16..24].copy_from_slice(&self.id.to_le_bytes());
        out
    }

    /// Parses a header, checking magic, version, kind, string count and reserved bytes.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, DecodeError> {
        if bytes[0..2] != MAGIC {
            return Err(DecodeError::BadMagic([bytes[0], bytes[1]]));
        }
        if bytes[2] != VERSION {
            return Err(DecodeError::UnsupportedVersion(bytes[2]));
        }
        let kind = Kind::from_u8(bytes[3]).ok_or(DecodeError::UnknownKind(bytes[3]))?;
        let nstr = bytes[5];
        if usize::from(nstr) > MAX_STRINGS {
            return Err(DecodeError::TooManyStrings(nstr));
        }
        if bytes[6] != 0 || bytes[7] != 0 {
            return Err(DecodeError::ReservedNotZero);
        }
        Ok(Header {
            version: bytes[2],
            kind,
            flags: bytes[4],
            nstr,
            body_len: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            aux: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            id: u64::from_le_bytes([
                bytes[16], bytes[17], bytes[18], bytes[19], bytes[20], bytes[21], bytes[22],
                bytes[23],
            ]),
        })
    }
}
