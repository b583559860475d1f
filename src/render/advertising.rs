//! The label Korean law requires on an advertising text message (정보통신망법 제50조 ④):
//! `(광고)` and the sender's name at the start, and a free way to refuse at the end. Forewarn
//! treats every message that carries a discount as advertising.

use serde::{Deserialize, Serialize};

/// `[render]` `korean_ad_sender` and `korean_ad_opt_out`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KoreanAdLabel {
    /// The sender's name, added after `(광고)` unless the text already names it.
    pub sender: String,
    /// The free opt-out line, e.g. `무료수신거부 080-123-4567`.
    pub opt_out: String,
}

impl KoreanAdLabel {
    /// `(광고)` first (with the sender unless the text names it), the opt-out line last.
    pub fn apply(&self, body: &str) -> String {
        let sender = self.sender.trim();
        let head = if sender.is_empty() || body.contains(sender) {
            "(광고)".to_owned()
        } else {
            format!("(광고){sender} ")
        };
        format!("{head}{body}\n{}", self.opt_out.trim())
    }

    /// The law is about messages to Korean phones.
    pub fn applies_to(phone: &str) -> bool {
        phone.starts_with("+82")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(sender: &str) -> KoreanAdLabel {
        KoreanAdLabel {
            sender: sender.into(),
            opt_out: "무료수신거부 080-123-4567".into(),
        }
    }

    #[test]
    fn the_label_leads_and_the_free_opt_out_ends_the_message() {
        assert_eq!(
            label("슈즈샵").apply("[슈즈샵] 10% 할인 코드를 드려요."),
            "(광고)[슈즈샵] 10% 할인 코드를 드려요.\n무료수신거부 080-123-4567"
        );
        assert_eq!(
            label("슈즈샵").apply("할인 코드를 드려요."),
            "(광고)슈즈샵 할인 코드를 드려요.\n무료수신거부 080-123-4567"
        );
        assert!(KoreanAdLabel::applies_to("+821012345678"));
        assert!(!KoreanAdLabel::applies_to("+12125550142"));
    }
}
