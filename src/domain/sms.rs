//! interim
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}
impl Encoding {
    pub fn as_str(&self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsInfo {
    pub encoding: Encoding,
    pub units: usize,
    pub segments: usize,
}
pub fn analyze(text: &str) -> SmsInfo {
    SmsInfo {
        encoding: Encoding::Gsm7,
        units: text.len(),
        segments: 1,
    }
}
