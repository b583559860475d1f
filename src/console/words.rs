//! The console's words in English and Korean (`words/en.toml`, `words/ko.toml`, embedded), and
//! which of them a visitor reads: the language they chose (a cookie set by the switch on every
//! page), else the first of their browser's languages the console speaks, else English.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap};
use serde_json::Value;

/// The cookie that keeps a visitor's chosen language.
pub(super) const LANG_COOKIE: &str = "forewarn_lang";

/// A language the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Korean.
    Ko,
}

impl Lang {
    /// Its tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }

    /// The language the switch offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ko,
            Lang::Ko => Lang::En,
        }
    }

    /// The language of a tag (`ko-KR` is Korean), if the console speaks it.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "ko" => Some(Lang::Ko),
            _ => None,
        }
    }
}

static EN: LazyLock<Value> = LazyLock::new(|| table(include_str!("words/en.toml")));
static KO: LazyLock<Value> = LazyLock::new(|| table(include_str!("words/ko.toml")));

fn table(text: &str) -> Value {
    let parsed: toml::Table = toml::from_str(text).expect("the console's words are valid TOML");
    serde_json::to_value(parsed).expect("words are strings")
}

/// Every word of `lang`, by key, for the pages.
pub(super) fn words(lang: Lang) -> &'static Value {
    match lang {
        Lang::En => &EN,
        Lang::Ko => &KO,
    }
}

/// One word of `lang` (its key, if the table lacks it: a test checks none does).
pub(super) fn word(lang: Lang, key: &'static str) -> &'static str {
    words(lang)[key].as_str().unwrap_or(key)
}

/// The word for a channel or consent (`sms`, `email`, `push`; anything else is marketing).
pub(super) fn channel_word(lang: Lang, channel: &str) -> &'static str {
    word(
        lang,
        match channel {
            "sms" => "channel_sms",
            "email" => "channel_email",
            "push" => "channel_push",
            _ => "marketing",
        },
    )
}

/// The visitor's language.
pub(super) fn choose(headers: &HeaderMap) -> Lang {
    if let Some(lang) = super::session::cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
        return lang;
    }
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // In the order given; weights below 1 are as good as their order for two languages.
    accepted
        .split(',')
        .filter_map(|item| item.split(';').next().and_then(Lang::parse))
        .next()
        .unwrap_or(Lang::En)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_word_and_nothing_empty() {
        let en = words(Lang::En).as_object().unwrap();
        let ko = words(Lang::Ko).as_object().unwrap();
        let missing_in_ko: Vec<_> = en.keys().filter(|k| !ko.contains_key(*k)).collect();
        let missing_in_en: Vec<_> = ko.keys().filter(|k| !en.contains_key(*k)).collect();
        assert!(
            missing_in_ko.is_empty(),
            "not in ko.toml: {missing_in_ko:?}"
        );
        assert!(
            missing_in_en.is_empty(),
            "not in en.toml: {missing_in_en:?}"
        );
        for (key, value) in en.iter().chain(ko.iter()) {
            assert!(
                value.as_str().is_some_and(|v| !v.trim().is_empty()),
                "{key}"
            );
        }
    }

    #[test]
    fn the_browsers_language_is_chosen_unless_the_visitor_chose() {
        let mut headers = HeaderMap::new();
        assert_eq!(choose(&headers), Lang::En);
        headers.insert(
            header::ACCEPT_LANGUAGE,
            "fr-FR, ko-KR;q=0.8, en;q=0.5".parse().unwrap(),
        );
        assert_eq!(choose(&headers), Lang::Ko);
        headers.insert(header::COOKIE, "forewarn_lang=en".parse().unwrap());
        assert_eq!(choose(&headers), Lang::En);
    }
}
