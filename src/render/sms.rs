//! SMS encoding and segment count: what a message costs and whether it splits.
//!
//! Carriers send GSM-7 (the GSM 03.38 default alphabet, 7 bits a character) when every
//! character is in it, and UCS-2 (UTF-16 code units) otherwise — one Hangul syllable or emoji
//! switches the whole message. A single message holds 160 GSM-7 characters or 70 UCS-2 units;
//! a longer one is split into segments of 153 or 67, the rest of each segment carrying the
//! concatenation header (3GPP TS 23.040).

use std::fmt;

/// How an SMS is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsEncoding {
    /// GSM 03.38 default alphabet.
    Gsm7,
    /// UTF-16, two bytes a unit.
    Ucs2,
}

impl fmt::Display for SmsEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmsEncoding::Gsm7 => "GSM-7",
            SmsEncoding::Ucs2 => "UCS-2",
        })
    }
}

/// The size of one SMS text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsSize {
    /// The encoding carriers will use.
    pub encoding: SmsEncoding,
    /// Length in that encoding's units (GSM-7 septets, counting extension characters twice;
    /// UTF-16 code units).
    pub units: usize,
    /// Messages the customer receives (and the shop pays for).
    pub segments: usize,
}

/// Units in a single, unsplit message.
const GSM7_SINGLE: usize = 160;
/// Units per segment of a split message.
const GSM7_MULTI: usize = 153;
/// Units in a single UCS-2 message.
const UCS2_SINGLE: usize = 70;
/// Units per segment of a split UCS-2 message.
const UCS2_MULTI: usize = 67;

/// The GSM 03.38 default alphabet (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table, reached through an escape septet (two septets each).
const GSM7_EXTENDED: &str = "\u{000C}^{}\\[~]|€";

/// Measures `text` as carriers will.
pub fn measure(text: &str) -> SmsSize {
    let mut septets = 0;
    let mut gsm7 = true;
    for c in text.chars() {
        if GSM7_BASIC.contains(c) {
            septets += 1;
        } else if GSM7_EXTENDED.contains(c) {
            septets += 2;
        } else {
            gsm7 = false;
            break;
        }
    }
    let (encoding, units, single, multi) = if gsm7 {
        (SmsEncoding::Gsm7, septets, GSM7_SINGLE, GSM7_MULTI)
    } else {
        let units = text.encode_utf16().count();
        (SmsEncoding::Ucs2, units, UCS2_SINGLE, UCS2_MULTI)
    };
    let segments = match units {
        0 => 0,
        n if n <= single => 1,
        n => n.div_ceil(multi),
    };
    SmsSize {
        encoding,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_latin_text_is_gsm7_and_splits_after_160() {
        assert_eq!(
            measure("Your order is late."),
            SmsSize {
                encoding: SmsEncoding::Gsm7,
                units: 19,
                segments: 1
            }
        );
        assert_eq!(measure(&"a".repeat(160)).segments, 1);
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(measure(&"a".repeat(306)).segments, 2);
        assert_eq!(measure(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn extension_characters_take_two_septets() {
        let size = measure("Price: 10€ [sale]");
        assert_eq!(size.encoding, SmsEncoding::Gsm7);
        assert_eq!(size.units, 17 + 3);
    }

    #[test]
    fn hangul_forces_ucs2_with_70_then_67_per_segment() {
        assert_eq!(
            measure("배송이 늦어지고 있어요").encoding,
            SmsEncoding::Ucs2
        );
        assert_eq!(measure(&"가".repeat(70)).segments, 1);
        assert_eq!(measure(&"가".repeat(71)).segments, 2);
        assert_eq!(measure(&"가".repeat(134)).segments, 2);
        assert_eq!(measure(&"가".repeat(135)).segments, 3);
    }

    #[test]
    fn one_character_outside_gsm7_switches_the_whole_message() {
        let size = measure(&format!("{}`", "a".repeat(100)));
        assert_eq!(size.encoding, SmsEncoding::Ucs2);
        assert_eq!(size.segments, 2);
    }

    #[test]
    fn an_emoji_counts_as_two_utf16_units() {
        assert_eq!(measure("😀").units, 2);
    }

    #[test]
    fn an_empty_text_is_no_message() {
        assert_eq!(measure("").segments, 0);
    }
}
