//! interim
pub fn mcc_for_region(region: &str) -> Option<u16> {
    match region {
        "US" => Some(310),
        "IN" => Some(404),
        "GB" => Some(234),
        _ => None,
    }
}
