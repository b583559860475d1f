//! Korean particles (josa) that depend on the word before them: `러닝화를` but `양말을`.
//!
//! The choice follows the last syllable's final consonant (batchim), read from the Unicode
//! syllable block (`(code − 0xAC00) % 28`); a final digit is read as a Korean numeral (`272`
//! ends in 이: 를; a final 0 is 영, 십, 백 or 천, all with a final consonant: 을). A word ending in anything else (Latin letters, symbols) gets both forms,
//! `을(를)`, the way Korean writing hedges. Written here rather than taken from a crate: the
//! Rust josa crates we found are unmaintained single releases that do not read digits, and the
//! rule is a few lines of Unicode arithmetic.

/// The particle forms after a word with a final consonant, and after one without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Particle {
    with_batchim: &'static str,
    without: &'static str,
    /// `으로/로` also takes `로` after a final ㄹ.
    rieul_takes_without: bool,
}

impl Particle {
    /// `"을/를"`, `"이/가"`, `"은/는"`, `"과/와"`, `"으로/로"`, `"이에요/예요"`, `"아/야"` (either
    /// order).
    pub fn parse(pair: &str) -> Option<Self> {
        const PAIRS: [(&str, &str, bool); 7] = [
            ("을", "를", false),
            ("이", "가", false),
            ("은", "는", false),
            ("과", "와", false),
            ("으로", "로", true),
            ("이에요", "예요", false),
            ("아", "야", false),
        ];
        let (a, b) = pair.split_once('/')?;
        PAIRS.iter().find_map(|&(with, without, rieul)| {
            ((a, b) == (with, without) || (a, b) == (without, with)).then_some(Particle {
                with_batchim: with,
                without,
                rieul_takes_without: rieul,
            })
        })
    }

    /// The form that follows `word`.
    pub fn after(self, word: &str) -> String {
        match final_consonant(word) {
            Some(Final::None) => self.without.to_owned(),
            Some(Final::Rieul) if self.rieul_takes_without => self.without.to_owned(),
            Some(_) => self.with_batchim.to_owned(),
            None => format!("{}({})", self.with_batchim, self.without),
        }
    }
}

/// The final consonant of a word's last sound, as far as particles care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Final {
    None,
    Rieul,
    Other,
}

fn final_consonant(word: &str) -> Option<Final> {
    let last = word.trim_end().chars().last()?;
    let code = u32::from(last);
    if (0xAC00..=0xD7A3).contains(&code) {
        return Some(match (code - 0xAC00) % 28 {
            0 => Final::None,
            8 => Final::Rieul,
            _ => Final::Other,
        });
    }
    // Digits as Korean numerals: 영 일 이 삼 사 오 육 칠 팔 구.
    Some(match last {
        '2' | '4' | '5' | '9' => Final::None,
        '1' | '7' | '8' => Final::Rieul,
        '0' | '3' | '6' => Final::Other,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(word: &str, pair: &str) -> String {
        Particle::parse(pair).unwrap().after(word)
    }

    #[test]
    fn the_particle_follows_the_last_syllable() {
        assert_eq!(after("러닝화", "을/를"), "를");
        assert_eq!(after("러닝 양말", "을/를"), "을");
        assert_eq!(after("김지수", "이/가"), "가");
        assert_eq!(after("박민준", "은/는"), "은");
        assert_eq!(after("강남점", "과/와"), "과");
        assert_eq!(after("해운대점", "으로/로"), "으로");
        assert_eq!(after("서울", "으로/로"), "로");
        assert_eq!(after("부산", "으로/로"), "으로");
        assert_eq!(after("학교", "으로/로"), "로");
    }

    #[test]
    fn digits_are_read_as_korean_numerals_and_anything_else_gets_both_forms() {
        assert_eq!(after("러닝화 270", "을/를"), "을");
        assert_eq!(after("Trail 990", "을/를"), "을"); // 구백구십
        assert_eq!(after("Trail 992", "을/를"), "를");
        assert_eq!(after("Trail 991", "으로/로"), "로");
        assert_eq!(after("Wind jacket", "을/를"), "을(를)");
        assert_eq!(after("", "이/가"), "이(가)");
    }

    #[test]
    fn pairs_are_read_in_either_order_and_unknown_ones_refused() {
        assert_eq!(Particle::parse("를/을"), Particle::parse("을/를"));
        assert_eq!(Particle::parse("의/의"), None);
        assert_eq!(Particle::parse("을"), None);
    }
}
