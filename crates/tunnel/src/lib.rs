//! The TCP tunnel protocol of the `langsmith` SDK's `sb.tunnel()`, shared by
//! the gateway (`sandpit serve`) and `sandpit tunnel`: a WebSocket whose
//! binary messages carry a yamux session; one yamux stream per TCP
//! connection, opened by the client with a 3-byte [`ConnectHeader`] and
//! answered by one [`Status`] byte.
#![forbid(unsafe_code)]

mod pump;

pub use pump::{pump, Codec, Frame};

/// Version of the connect header this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes buffered between a WebSocket and its yamux session.
pub const PIPE: usize = 256 << 10;

/// The first bytes of every tunnelled stream: `version: u8`, `port: u16`
/// big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectHeader {
    pub version: u8,
    pub port: u16,
}

impl ConnectHeader {
    pub const LEN: usize = 3;

    /// A header of this crate's protocol version.
    pub fn new(port: u16) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            port,
        }
    }

    pub fn encode(self) -> [u8; Self::LEN] {
        let [hi, lo] = self.port.to_be_bytes();
        [self.version, hi, lo]
    }

    pub fn decode(bytes: [u8; Self::LEN]) -> Self {
        Self {
            version: bytes[0],
            port: u16::from_be_bytes([bytes[1], bytes[2]]),
        }
    }
}

/// The server's answer to a connect header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    PortNotAllowed = 1,
    DialFailed = 2,
    UnsupportedVersion = 3,
}

impl Status {
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// `None` for a byte this version does not know.
    pub fn from_byte(byte: u8) -> Option<Self> {
        [
            Self::Ok,
            Self::PortNotAllowed,
            Self::DialFailed,
            Self::UnsupportedVersion,
        ]
        .into_iter()
        .find(|s| s.byte() == byte)
    }

    /// What a refusal means, for a person.
    pub fn describe(self, port: u16) -> String {
        match self {
            Self::Ok => format!("connected to port {port}"),
            Self::PortNotAllowed => format!("port {port} is not allowed"),
            Self::DialFailed => {
                format!("nothing is listening on port {port} inside the sandbox")
            }
            Self::UnsupportedVersion => {
                format!("the server does not speak tunnel protocol version {PROTOCOL_VERSION}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_big_endian() {
        let header = ConnectHeader::new(0x1f90);
        assert_eq!(header.encode(), [1, 0x1f, 0x90]);
        assert_eq!(ConnectHeader::decode(header.encode()), header);
    }

    #[test]
    fn statuses_are_the_sdks_bytes() {
        // The byte values the langsmith SDK's `_tunnel.py` expects.
        assert_eq!(Status::Ok.byte(), 0);
        assert_eq!(Status::PortNotAllowed.byte(), 1);
        assert_eq!(Status::DialFailed.byte(), 2);
        assert_eq!(Status::UnsupportedVersion.byte(), 3);
        for byte in 0..=3 {
            assert_eq!(Status::from_byte(byte).map(Status::byte), Some(byte));
        }
        assert_eq!(Status::from_byte(4), None);
    }
}
