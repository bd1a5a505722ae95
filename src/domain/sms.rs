//! SMS encoding choice and segment counting.
//!
//! Decides whether a message body can travel in the GSM 03.38 7-bit default
//! alphabet (with its single-shift extension table) or must fall back to
//! UCS-2, and counts how many concatenated parts an operator will bill for.
//! Part counting packs characters the way a sending SMSC does: an
//! escape-plus-character pair (GSM-7) or a surrogate pair (UCS-2) is never
//! split across two parts.

/// The character set an SMS body is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 03.38 default alphabet, 7 bits per septet.
    Gsm7,
    /// UCS-2 (UTF-16 code units on the wire), 16 bits per unit.
    Ucs2,
}

impl Encoding {
    /// The conventional name of the encoding: `"GSM-7"` or `"UCS-2"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// The SMPP / GSM 03.38 `data_coding` value: 0 for the GSM-7 default
    /// alphabet, 8 for UCS-2.
    pub fn data_coding(&self) -> u8 {
        match self {
            Encoding::Gsm7 => 0,
            Encoding::Ucs2 => 8,
        }
    }
}

/// The result of [`analyze`]: how a text will be encoded and billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsInfo {
    /// The encoding the text needs.
    pub encoding: Encoding,
    /// Septets for GSM-7 (extension characters count 2), UTF-16 code units
    /// for UCS-2.
    pub units: usize,
    /// How many SMS parts the text occupies (at least 1).
    pub segments: usize,
}

/// Septets that fit in a single, unconcatenated GSM-7 message.
const GSM7_SINGLE: usize = 160;
/// Septets per part of a concatenated GSM-7 message (the UDH takes 7).
const GSM7_PART: usize = 153;
/// UTF-16 units that fit in a single, unconcatenated UCS-2 message.
const UCS2_SINGLE: usize = 70;
/// UTF-16 units per part of a concatenated UCS-2 message (the UDH takes 3).
const UCS2_PART: usize = 67;

/// How many septets `c` takes in GSM-7: 1 for the default alphabet, 2 for
/// the extension table (escape + character), `None` if it cannot be
/// represented at all.
pub fn gsm7_septets(c: char) -> Option<usize> {
    match c {
        // The 128 positions of the default alphabet, minus the escape (0x1B).
        '@' | '£' | '$' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | '\n' | 'Ø' | 'ø' | '\r'
        | 'Å' | 'å' => Some(1),
        'Δ' | '_' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' => {
            Some(1)
        }
        ' ' | '!' | '"' | '#' | '¤' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-'
        | '.' | '/' => Some(1),
        '0'..='9' | ':' | ';' | '<' | '=' | '>' | '?' => Some(1),
        '¡' | 'A'..='Z' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' => Some(1),
        '¿' | 'a'..='z' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        // The single-shift extension table.
        '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

/// True when every character of `text` is in the GSM 03.38 default alphabet
/// or its extension table. The empty text is GSM-7.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm7_septets(c).is_some())
}

/// Chooses the encoding for `text` and counts its units and parts.
///
/// The empty text is 0 units in 1 segment.
pub fn analyze(text: &str) -> SmsInfo {
    if is_gsm7(text) {
        let widths = text.chars().map(|c| gsm7_septets(c).unwrap_or(1));
        let (units, segments) = count(widths, GSM7_SINGLE, GSM7_PART);
        SmsInfo {
            encoding: Encoding::Gsm7,
            units,
            segments,
        }
    } else {
        let (units, segments) = count(text.chars().map(char::len_utf16), UCS2_SINGLE, UCS2_PART);
        SmsInfo {
            encoding: Encoding::Ucs2,
            units,
            segments,
        }
    }
}

/// Sums `widths` and counts parts: one when the total fits in `single`,
/// otherwise the number of `part`-sized parts needed when each character is
/// placed whole (a character that would straddle a boundary starts the next
/// part).
fn count(
    widths: impl Iterator<Item = usize> + Clone,
    single: usize,
    part: usize,
) -> (usize, usize) {
    let units: usize = widths.clone().sum();
    if units <= single {
        return (units, 1);
    }
    let mut parts = 1;
    let mut used = 0;
    for w in widths {
        if used + w > part {
            parts += 1;
            used = 0;
        }
        used += w;
    }
    (units, parts)
}

/// The GSM 03.38 default alphabet in code order; position 0x1B is the escape
/// to the extension table and holds no character of its own.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The escape septet that announces a character of the extension table.
pub const GSM7_ESCAPE: u8 = 0x1B;

/// The septets of `c` in GSM-7, one per byte (unpacked, as SMPP carries them):
/// one septet for the default alphabet, escape + code for the extension table,
/// `None` outside both. Agrees with [`gsm7_septets`] on every character.
pub fn gsm7_code(c: char) -> Option<(u8, Option<u8>)> {
    let ext = match c {
        '\u{000C}' => Some(0x0A),
        '^' => Some(0x14),
        '{' => Some(0x28),
        '}' => Some(0x29),
        '\\' => Some(0x2F),
        '[' => Some(0x3C),
        '~' => Some(0x3D),
        ']' => Some(0x3E),
        '|' => Some(0x40),
        '€' => Some(0x65),
        _ => None,
    };
    if let Some(code) = ext {
        return Some((GSM7_ESCAPE, Some(code)));
    }
    if c == '\u{1B}' {
        return None;
    }
    GSM7_BASIC
        .iter()
        .position(|&b| b == c)
        .and_then(|i| u8::try_from(i).ok())
        .map(|code| (code, None))
}

/// A text cut into the parts an SMSC is given, each part's payload already
/// encoded (without any user data header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub encoding: Encoding,
    /// One entry per part; a single part means no concatenation.
    pub parts: Vec<Vec<u8>>,
}

/// The 6-octet concatenation user data header (IEI 0x00, 8-bit reference):
/// `05 00 03 ref total seq`, `seq` counting from 1.
pub fn concat_udh(reference: u8, total: u8, seq: u8) -> [u8; 6] {
    [0x05, 0x00, 0x03, reference, total, seq]
}

/// Encodes `text` for an SMSC and cuts it into parts exactly as [`analyze`]
/// counts them: GSM-7 as unpacked septets (one per byte, `0x1B` before an
/// extension character), 160 septets alone or 153 per concatenated part; UCS-2
/// as UTF-16BE, 70 units alone or 67 per part. An escape pair or a surrogate
/// pair never straddles two parts.
pub fn encode_parts(text: &str) -> Encoded {
    if let Some(chars) = text
        .chars()
        .map(|c| {
            gsm7_code(c).map(|(a, b)| match b {
                Some(b) => vec![a, b],
                None => vec![a],
            })
        })
        .collect::<Option<Vec<Vec<u8>>>>()
    {
        Encoded {
            encoding: Encoding::Gsm7,
            parts: pack(chars, GSM7_SINGLE, GSM7_PART, 1),
        }
    } else {
        let chars = text
            .chars()
            .map(|c| {
                let mut units = [0u16; 2];
                c.encode_utf16(&mut units)
                    .iter()
                    .flat_map(|u| u.to_be_bytes())
                    .collect::<Vec<u8>>()
            })
            .collect();
        Encoded {
            encoding: Encoding::Ucs2,
            parts: pack(chars, UCS2_SINGLE, UCS2_PART, 2),
        }
    }
}

/// Places whole encoded characters into parts (see [`count`]); `unit` is the
/// number of bytes one counted unit takes.
fn pack(chars: Vec<Vec<u8>>, single: usize, part: usize, unit: usize) -> Vec<Vec<u8>> {
    let total: usize = chars.iter().map(|c| c.len() / unit).sum();
    if total <= single {
        return vec![chars.concat()];
    }
    let mut parts = vec![Vec::new()];
    let mut used = 0;
    for c in chars {
        let w = c.len() / unit;
        if used + w > part {
            parts.push(Vec::new());
            used = 0;
        }
        used += w;
        if let Some(last) = parts.last_mut() {
            last.extend_from_slice(&c);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(encoding: Encoding, units: usize, segments: usize) -> SmsInfo {
        SmsInfo {
            encoding,
            units,
            segments,
        }
    }

    #[test]
    fn empty_text_is_one_empty_gsm_segment() {
        assert_eq!(analyze(""), info(Encoding::Gsm7, 0, 1));
        assert!(is_gsm7(""));
    }

    #[test]
    fn encoding_names_and_data_coding() {
        assert_eq!(Encoding::Gsm7.as_str(), "GSM-7");
        assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
        assert_eq!(Encoding::Gsm7.data_coding(), 0);
        assert_eq!(Encoding::Ucs2.data_coding(), 8);
    }

    #[test]
    fn typical_otp_message() {
        let text = "Your verification code is 482913. It expires in 5 minutes.";
        assert_eq!(analyze(text), info(Encoding::Gsm7, text.chars().count(), 1));
    }

    #[test]
    fn plain_gsm_single_part_limit() {
        assert_eq!(analyze("a"), info(Encoding::Gsm7, 1, 1));
        assert_eq!(analyze(&"a".repeat(160)), info(Encoding::Gsm7, 160, 1));
        assert_eq!(analyze(&"a".repeat(161)), info(Encoding::Gsm7, 161, 2));
    }

    #[test]
    fn plain_gsm_multipart_boundaries() {
        // 153 septets per part once concatenated.
        assert_eq!(analyze(&"x".repeat(306)), info(Encoding::Gsm7, 306, 2));
        assert_eq!(analyze(&"x".repeat(307)), info(Encoding::Gsm7, 307, 3));
        assert_eq!(analyze(&"x".repeat(459)), info(Encoding::Gsm7, 459, 3));
        assert_eq!(analyze(&"x".repeat(460)), info(Encoding::Gsm7, 460, 4));
    }

    #[test]
    fn every_extension_char_counts_two() {
        for c in ['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{000C}'] {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
            let text = c.to_string();
            assert_eq!(analyze(&text), info(Encoding::Gsm7, 2, 1), "{c:?}");
        }
        assert_eq!(analyze("a[b]c"), info(Encoding::Gsm7, 7, 1));
    }

    #[test]
    fn eighty_euro_signs_fill_one_part() {
        // 80 × 2 = 160 septets: exactly one unconcatenated message.
        assert_eq!(analyze(&"€".repeat(80)), info(Encoding::Gsm7, 160, 1));
    }

    #[test]
    fn eighty_one_euro_signs_need_two_parts() {
        // 81 × 2 = 162 septets > 160, so concatenate in 153-septet parts.
        // Part 1 holds 76 '€' (152 septets); a 77th would need septets 153
        // and 154, straddling the boundary, so it starts part 2.
        // Part 2 holds the remaining 5 '€' (10 septets). Total: 2 parts.
        assert_eq!(analyze(&"€".repeat(81)), info(Encoding::Gsm7, 162, 2));
    }

    #[test]
    fn euro_signs_pack_76_per_part() {
        // 153 '€' = 306 septets. Naive ceil(306 / 153) = 2, but each part
        // can only hold 76 whole pairs (152 septets): 76 + 76 + 1 = 3 parts.
        assert_eq!(analyze(&"€".repeat(153)), info(Encoding::Gsm7, 306, 3));
        // 152 '€' = 304 septets: 76 + 76 = exactly 2 parts.
        assert_eq!(analyze(&"€".repeat(152)), info(Encoding::Gsm7, 304, 2));
    }

    #[test]
    fn extension_pair_never_straddles_a_part_boundary() {
        // 152 plain septets, then '€' would occupy septets 153 and 154: it
        // moves whole to part 2, leaving septet 153 of part 1 empty.
        // Part 1: 152 'a' (152). Part 2: '€' + 151 'b' (153). Part 3: 1 'b'.
        // Naive ceil(306 / 153) would say 2.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(152));
        assert_eq!(analyze(&text), info(Encoding::Gsm7, 306, 3));

        // Same length, but the pair sits at septets 152-153 and fits:
        // Part 1: 151 'a' + '€' (153). Part 2: 153 'b'. Exactly 2 parts.
        let text = format!("{}€{}", "a".repeat(151), "b".repeat(153));
        assert_eq!(analyze(&text), info(Encoding::Gsm7, 306, 2));

        // Short tail: 152 'a' + '€' + 7 'b' = 161 septets, 2 parts either way
        // (part 2 starts with the whole '€').
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(7));
        assert_eq!(analyze(&text), info(Encoding::Gsm7, 161, 2));
    }

    #[test]
    fn whole_basic_table_is_gsm7() {
        let basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
        // 128 positions minus the escape code.
        assert_eq!(basic.chars().count(), 127);
        for c in basic.chars() {
            assert_eq!(gsm7_septets(c), Some(1), "{c:?}");
        }
        assert!(is_gsm7(basic));
        assert_eq!(analyze(basic), info(Encoding::Gsm7, 127, 1));
    }

    #[test]
    fn greek_capitals_are_gsm7() {
        let text = "ΔΦΓΛΩΠΨΣΘΞ";
        assert!(is_gsm7(text));
        assert_eq!(analyze(text), info(Encoding::Gsm7, 10, 1));
        // Greek capitals that only look like Latin letters are not in the
        // table, nor are Greek lower-case letters.
        assert_eq!(gsm7_septets('Α'), None); // U+0391 GREEK CAPITAL ALPHA
        assert_eq!(gsm7_septets('α'), None);
        assert_eq!(gsm7_septets('δ'), None);
    }

    #[test]
    fn characters_outside_the_alphabet() {
        for c in [
            'ç', '`', 'á', 'í', 'ó', 'ú', 'â', 'ê', 'õ', 'œ', '\t', '\0', '\u{1B}', '\u{A0}',
        ] {
            assert_eq!(gsm7_septets(c), None, "{c:?}");
        }
        assert_eq!(gsm7_septets('Ç'), Some(1));
        assert_eq!(gsm7_septets('ç'), None);
    }

    #[test]
    fn lowercase_c_cedilla_forces_ucs2() {
        assert!(!is_gsm7("Façade"));
        assert_eq!(analyze("Façade"), info(Encoding::Ucs2, 6, 1));
        assert!(is_gsm7("FAÇADE"));
        assert_eq!(analyze("FAÇADE"), info(Encoding::Gsm7, 6, 1));
    }

    #[test]
    fn backtick_forces_ucs2() {
        assert_eq!(analyze("code `1234`"), info(Encoding::Ucs2, 11, 1));
    }

    #[test]
    fn one_foreign_char_switches_the_whole_text() {
        // 100 GSM characters plus one Cyrillic letter: every char is now a
        // UTF-16 unit, 101 > 70, so two 67-unit parts.
        let text = format!("{}Ж", "a".repeat(100));
        assert_eq!(analyze(&text), info(Encoding::Ucs2, 101, 2));
        // Extension chars count 1 unit in UCS-2, not 2.
        let text = format!("{}Ж", "€".repeat(69));
        assert_eq!(analyze(&text), info(Encoding::Ucs2, 70, 1));
    }

    #[test]
    fn cyrillic_segment_boundaries() {
        assert_eq!(analyze(&"Д".repeat(70)), info(Encoding::Ucs2, 70, 1));
        assert_eq!(analyze(&"Д".repeat(71)), info(Encoding::Ucs2, 71, 2));
        assert_eq!(analyze(&"Д".repeat(134)), info(Encoding::Ucs2, 134, 2));
        assert_eq!(analyze(&"Д".repeat(135)), info(Encoding::Ucs2, 135, 3));
        assert_eq!(analyze(&"Д".repeat(201)), info(Encoding::Ucs2, 201, 3));
        assert_eq!(analyze(&"Д".repeat(202)), info(Encoding::Ucs2, 202, 4));
    }

    #[test]
    fn emoji_is_a_surrogate_pair() {
        assert_eq!(gsm7_septets('😀'), None);
        assert_eq!(analyze("😀"), info(Encoding::Ucs2, 2, 1));
        assert_eq!(analyze("Code 1234 😀"), info(Encoding::Ucs2, 12, 1));
        // 35 emoji = 70 units: still one part; 36 = 72 units: two parts.
        assert_eq!(analyze(&"😀".repeat(35)), info(Encoding::Ucs2, 70, 1));
        assert_eq!(analyze(&"😀".repeat(36)), info(Encoding::Ucs2, 72, 2));
    }

    #[test]
    fn surrogate_pair_never_straddles_a_part_boundary() {
        // 66 units, then the emoji would occupy units 67 and 68: it moves
        // whole to part 2, leaving unit 67 of part 1 empty.
        // Part 1: 66 'a' (66). Part 2: emoji + 65 'b' (67). Part 3: 1 'b'.
        // Naive ceil(134 / 67) would say 2.
        let text = format!("{}😀{}", "a".repeat(66), "b".repeat(66));
        assert_eq!(analyze(&text), info(Encoding::Ucs2, 134, 3));

        // Same length, pair at units 66-67 fits in part 1: exactly 2 parts.
        let text = format!("{}😀{}", "a".repeat(65), "b".repeat(67));
        assert_eq!(analyze(&text), info(Encoding::Ucs2, 134, 2));

        // 66 'a' + emoji + 3 'b' = 71 units: part 2 starts with the emoji.
        let text = format!("{}😀{}", "a".repeat(66), "b".repeat(3));
        assert_eq!(analyze(&text), info(Encoding::Ucs2, 71, 2));
    }

    #[test]
    fn emoji_only_parts_hold_33_pairs() {
        // 67 emoji = 134 units. Each part fits 33 whole pairs (66 units):
        // 33 + 33 + 1 = 3 parts, although 134 / 67 is exactly 2.
        assert_eq!(analyze(&"😀".repeat(67)), info(Encoding::Ucs2, 134, 3));
    }

    #[test]
    fn chinese_text() {
        let text = "您的验证码是 123456，5分钟内有效。";
        assert!(!is_gsm7(text));
        assert_eq!(analyze(text), info(Encoding::Ucs2, 21, 1));

        // Mixed Chinese, Latin and digits, long enough to concatenate.
        let text = "【OTP网关】您的验证码是 482913，请在5分钟内完成验证。Your code is 482913. \
                    如非本人操作，请忽略本短信，切勿将验证码告知他人。";
        // 78 characters, all in the BMP: 78 units > 70, so 67 + 11 = 2 parts.
        assert_eq!(text.chars().count(), 78);
        assert_eq!(analyze(text), info(Encoding::Ucs2, 78, 2));
    }

    #[test]
    fn units_match_utf16_length_for_ucs2() {
        let text = "Привет 👋🏽 мир 🌍 — ✓";
        let a = analyze(text);
        assert_eq!(a.encoding, Encoding::Ucs2);
        assert_eq!(a.units, text.encode_utf16().count());
        assert_eq!(a.segments, 1);
    }

    #[test]
    fn gsm_line_breaks() {
        assert_eq!(analyze("a\r\nb"), info(Encoding::Gsm7, 4, 1));
        // Form feed is an extension character.
        assert_eq!(analyze("a\u{000C}b"), info(Encoding::Gsm7, 4, 1));
    }

    #[test]
    fn segments_never_zero_and_units_monotonic() {
        let mut prev = 0;
        for n in 0..500 {
            let a = analyze(&"€".repeat(n));
            assert!(a.segments >= 1);
            assert!(a.segments >= prev);
            prev = a.segments;
            assert_eq!(a.units, 2 * n);
        }
    }

    #[test]
    fn gsm7_codes_agree_with_septet_counts() {
        for cp in 0..0x3000u32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let code = gsm7_code(c);
            let len = code.map(|(_, b)| if b.is_some() { 2 } else { 1 });
            assert_eq!(len, gsm7_septets(c), "{c:?}");
        }
        assert_eq!(gsm7_code('€'), Some((0x1B, Some(0x65))));
        assert_eq!(gsm7_code('@'), Some((0x00, None)));
        assert_eq!(gsm7_code('à'), Some((0x7F, None)));
        assert_eq!(gsm7_code('A'), Some((0x41, None)));
        assert_eq!(gsm7_code('\u{1B}'), None);
    }

    #[test]
    fn short_texts_are_one_unheaded_part() {
        let e = encode_parts("Code 12 @€");
        assert_eq!(e.encoding, Encoding::Gsm7);
        assert_eq!(
            e.parts,
            vec![vec![
                0x43, 0x6F, 0x64, 0x65, 0x20, 0x31, 0x32, 0x20, 0x00, 0x1B, 0x65
            ]]
        );
        let e = encode_parts("Код 😀");
        assert_eq!(e.encoding, Encoding::Ucs2);
        assert_eq!(
            e.parts,
            vec![vec![
                0x04, 0x1A, 0x04, 0x3E, 0x04, 0x34, 0x00, 0x20, 0xD8, 0x3D, 0xDE, 0x00
            ]]
        );
        assert_eq!(encode_parts("").parts, vec![Vec::<u8>::new()]);
    }

    #[test]
    fn gsm7_escape_pair_moves_whole_to_the_next_part() {
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(152));
        let e = encode_parts(&text);
        assert_eq!(e.parts.len(), 3);
        assert_eq!(e.parts[0], vec![b'a'; 152]);
        assert_eq!(&e.parts[1][..2], &[0x1B, 0x65]);
        assert_eq!(e.parts[1].len(), 153);
        assert_eq!(e.parts[2], vec![b'b']);
    }

    #[test]
    fn ucs2_surrogate_pair_moves_whole_to_the_next_part() {
        let text = format!("{}😀{}", "Ж".repeat(66), "ж".repeat(66));
        let e = encode_parts(&text);
        assert_eq!(e.encoding, Encoding::Ucs2);
        assert_eq!(e.parts.len(), 3);
        assert_eq!(e.parts[0].len(), 132);
        assert_eq!(&e.parts[1][..4], &[0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(e.parts[1].len(), 134);
        assert_eq!(e.parts[2], vec![0x04, 0x36]);
    }

    #[test]
    fn parts_match_analyze_and_reassemble() {
        let samples = [
            "a".repeat(160),
            "a".repeat(161),
            "€".repeat(81),
            "€".repeat(153),
            format!("{}€{}", "a".repeat(151), "b".repeat(153)),
            "Д".repeat(135),
            "😀".repeat(67),
            format!("{}😀{}", "a".repeat(65), "b".repeat(67)),
            "Ваш код 123456. Никому его не сообщайте, даже сотрудникам банка! ".repeat(3),
        ];
        for text in samples.iter().map(String::as_str).chain(["", "x", "[]"]) {
            let e = encode_parts(text);
            let a = analyze(text);
            assert_eq!(e.encoding, a.encoding, "{text}");
            assert_eq!(e.parts.len(), a.segments, "{text}");
            match e.encoding {
                Encoding::Gsm7 => {
                    assert_eq!(e.parts.iter().map(Vec::len).sum::<usize>(), a.units);
                    if e.parts.len() > 1 {
                        assert!(
                            e.parts
                                .iter()
                                .all(|p| p.len() <= 153 && p.last() != Some(&0x1B))
                        );
                    }
                }
                Encoding::Ucs2 => {
                    let units: Vec<u16> = e
                        .parts
                        .concat()
                        .chunks(2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]))
                        .collect();
                    assert_eq!(String::from_utf16(&units).unwrap(), text);
                    for p in &e.parts {
                        let units: Vec<u16> = p
                            .chunks(2)
                            .map(|b| u16::from_be_bytes([b[0], b[1]]))
                            .collect();
                        assert!(String::from_utf16(&units).is_ok(), "a part splits a pair");
                        if e.parts.len() > 1 {
                            assert!(p.len() <= 134);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn concat_header_layout() {
        assert_eq!(concat_udh(7, 3, 2), [0x05, 0x00, 0x03, 7, 3, 2]);
    }
}
