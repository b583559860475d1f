//! `[render]`: limits on rendered messages, the language of unsuffixed templates, and the
//! Korean advertising label.

use serde::{Deserialize, Serialize};

/// `[render]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderSettings {
    /// Most SMS segments one message may take; `check` refuses a template over it (each segment
    /// is billed, and long texts arrive split on older phones).
    pub sms_max_segments: usize,
    /// The language of template files without a locale suffix (`sms.hbs`): dates and money in
    /// them read this way when a customer's own language has no file.
    pub default_locale: crate::domain::Locale,
    /// Sender name an advertising SMS to a Korean phone carries after `(광고)`, unless the text
    /// already names it (the shipped templates start with `[슈즈샵]`).
    pub korean_ad_sender: String,
    /// The free opt-out line that ends an advertising SMS to a Korean phone; set your 080
    /// number: the default is a placeholder.
    pub korean_ad_opt_out: String,
}

impl RenderSettings {
    /// The Korean advertising label these settings describe.
    pub fn korean_ad_label(&self) -> super::KoreanAdLabel {
        super::KoreanAdLabel {
            sender: self.korean_ad_sender.clone(),
            opt_out: self.korean_ad_opt_out.clone(),
        }
    }
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            sms_max_segments: 3,
            default_locale: crate::domain::Locale::parse("en-US").expect("a valid language tag"),
            korean_ad_sender: String::new(),
            korean_ad_opt_out: "무료거부 080-000-0000".into(),
        }
    }
}
