//! Why an event is refused: each reason is a dead-letter subject (`forewarn.dlq.<reason>`).

use std::fmt;

use super::{DataError, EnvelopeError};

/// The dead-letter reasons of SPEC §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The body is not JSON.
    NotJson,
    /// JSON, but not a CloudEvents 1.0 event.
    NotCloudEvent,
    /// A type outside the catalogue.
    UnknownType,
    /// `data` misses a required field or has one of the wrong type.
    InvalidData,
    /// `data.customer_id` names a customer forewarn has never seen, and no inline object came.
    UnknownCustomer,
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::NotJson,
        RejectReason::NotCloudEvent,
        RejectReason::UnknownType,
        RejectReason::InvalidData,
        RejectReason::UnknownCustomer,
    ];

    /// The subject token and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NotJson => "not_json",
            RejectReason::NotCloudEvent => "not_cloudevent",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::InvalidData => "invalid_data",
            RejectReason::UnknownCustomer => "unknown_customer",
        }
    }
}

/// A refused event's reason and a human-readable explanation that names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason.
    pub reason: RejectReason,
    /// For people: what is wrong, naming the field.
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl From<EnvelopeError> for Rejection {
    fn from(e: EnvelopeError) -> Self {
        let reason = match e {
            EnvelopeError::NotJson(_) => RejectReason::NotJson,
            EnvelopeError::NotCloudEvent(_) => RejectReason::NotCloudEvent,
            EnvelopeError::UnknownType(_) => RejectReason::UnknownType,
        };
        Rejection {
            reason,
            detail: e.to_string(),
        }
    }
}

impl From<DataError> for Rejection {
    fn from(e: DataError) -> Self {
        Rejection {
            reason: RejectReason::InvalidData,
            detail: e.to_string(),
        }
    }
}
