//! An event that passed the catalogue: its envelope and its typed `data`.

use super::{CloudEvent, Payload};

/// An event whose envelope and `data` passed the catalogue.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The envelope, with `data` kept whole.
    pub event: CloudEvent,
    /// `data`, typed.
    pub payload: Payload,
}
