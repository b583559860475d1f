//! Replies: what a customer texts back. A single keyword changes what they receive — the
//! words carriers and Twilio's own opt-out handling agree on, plus the Korean ones a Korean
//! customer types — and anything else is kept for CX to read.

use chrono::{DateTime, Utc};

use crate::domain::Channel;

/// What a reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// No more messages on this channel (opt-out, scope all).
    Stop,
    /// Messages again (the opt-out is lifted).
    Start,
    /// Who is this and how do I stop it: answered from the `sms-help` template.
    Help,
    /// Anything else: kept on the customer's timeline.
    Other,
}

impl Keyword {
    /// The stored name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Stop => "stop",
            Keyword::Start => "start",
            Keyword::Help => "help",
            Keyword::Other => "other",
        }
    }

    /// Reads a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [Keyword::Stop, Keyword::Start, Keyword::Help, Keyword::Other]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }

    /// The keyword `body` is, if it is one word of the lists (case and spaces ignored, as
    /// carriers read them: ` Stop ` and `S T O P` both stop).
    pub fn of(body: &str) -> Keyword {
        let word: String = body
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_uppercase)
            .collect();
        match word.trim_end_matches(['.', '!']) {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "END" | "QUIT" | "CANCEL" | "REVOKE"
            | "OPTOUT" | "수신거부" | "거부" => Keyword::Stop,
            "START" | "YES" | "UNSTOP" => Keyword::Start,
            "HELP" | "INFO" => Keyword::Help,
            _ => Keyword::Other,
        }
    }
}

/// A message a customer sent, verified and read.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundReply {
    /// Who carried it (`twilio`).
    pub provider: &'static str,
    /// The provider's id of the message: a repeat of it changes nothing.
    pub message_id: String,
    /// The channel it came on.
    pub channel: Channel,
    /// The sender's address (an E.164 number for SMS).
    pub from: String,
    /// What they wrote.
    pub body: String,
    /// When forewarn received it.
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_replies_are_read_whatever_their_case_and_spacing() {
        for stop in [
            "STOP",
            " stop ",
            "Stop.",
            "S T O P",
            "stopall",
            "Unsubscribe",
            "end",
            "quit",
            "CANCEL",
            "revoke",
            "OptOut",
            "수신거부",
            " 거부 ",
        ] {
            assert_eq!(Keyword::of(stop), Keyword::Stop, "{stop:?}");
        }
        for start in ["START", "yes", "Unstop"] {
            assert_eq!(Keyword::of(start), Keyword::Start, "{start:?}");
        }
        for help in ["HELP", "info", "Help!"] {
            assert_eq!(Keyword::of(help), Keyword::Help, "{help:?}");
        }
        for other in ["please stop texting me", "where is my parcel?", "", "STOPP"] {
            assert_eq!(Keyword::of(other), Keyword::Other, "{other:?}");
        }
    }
}
