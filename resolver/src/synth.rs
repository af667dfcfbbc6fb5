//! The answer every record-making plugin (`kubernetes`, `file`, `hosts`) returns: an rcode and the
//! three sections, which the server assembles into a message. A leaf module, so the plugins and
//! the configuration that loads zones do not depend on one another through it.

use hickory_proto::rr::Record;

/// A synthesised answer: rcode and sections, assembled into a message by the server.
#[derive(Debug, Clone, Default)]
pub struct Synth {
    pub rcode: u8,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}
