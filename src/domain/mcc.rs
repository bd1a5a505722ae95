//! ISO 3166-1 alpha-2 region codes to ITU-T E.212 mobile country codes (MCC).
//!
//! Used to label a phone number's home network country for routing and
//! reporting. Each region has one primary MCC (the first one, for regions
//! holding several, e.g. US 310–316, IN 404–406, JP 440/441, GB 234/235).
//! Territories that E.212 places under another region's code (Guernsey,
//! Jersey and the Isle of Man under 234, Guam under 310, Mayotte under 647,
//! ...) map to that shared code; [`region_for_mcc`] always answers with the
//! code's primary holder.
//!
//! Besides the officially assigned ISO codes, the table includes the
//! user-assigned `XK` (Kosovo, MCC 221) and the reserved `AC` (Ascension) and
//! `TA` (Tristan da Cunha), because phone-number libraries report them.

/// Region → primary MCC, sorted by region code (checked by a test).
static REGION_MCC: &[(&str, u16)] = &[
    ("AC", 658), // Ascension Island (shares Saint Helena's code)
    ("AD", 213),
    ("AE", 424), // also 430, 431
    ("AF", 412),
    ("AG", 344),
    ("AI", 365),
    ("AL", 276),
    ("AM", 283),
    ("AO", 631),
    ("AR", 722),
    ("AS", 544),
    ("AT", 232),
    ("AU", 505),
    ("AW", 363),
    ("AX", 244), // Åland Islands (Finnish networks)
    ("AZ", 400),
    ("BA", 218),
    ("BB", 342),
    ("BD", 470),
    ("BE", 206),
    ("BF", 613),
    ("BG", 284),
    ("BH", 426),
    ("BI", 642),
    ("BJ", 616),
    ("BL", 340), // Saint Barthélemy (French Antilles)
    ("BM", 350),
    ("BN", 528),
    ("BO", 736),
    ("BQ", 362), // Bonaire, Sint Eustatius and Saba
    ("BR", 724),
    ("BS", 364),
    ("BT", 402),
    ("BW", 652),
    ("BY", 257),
    ("BZ", 702),
    ("CA", 302),
    ("CC", 505), // Cocos (Keeling) Islands (Australian networks)
    ("CD", 630),
    ("CF", 623),
    ("CG", 629),
    ("CH", 228),
    ("CI", 612),
    ("CK", 548),
    ("CL", 730),
    ("CM", 624),
    ("CN", 460), // also 461
    ("CO", 732),
    ("CR", 712),
    ("CU", 368),
    ("CV", 625),
    ("CW", 362),
    ("CX", 505), // Christmas Island (Australian networks)
    ("CY", 280),
    ("CZ", 230),
    ("DE", 262),
    ("DJ", 638),
    ("DK", 238),
    ("DM", 366),
    ("DO", 370),
    ("DZ", 603),
    ("EC", 740),
    ("EE", 248),
    ("EG", 602),
    ("EH", 604), // Western Sahara (Moroccan networks)
    ("ER", 657),
    ("ES", 214),
    ("ET", 636),
    ("FI", 244),
    ("FJ", 542),
    ("FK", 750),
    ("FM", 550),
    ("FO", 288),
    ("FR", 208),
    ("GA", 628),
    ("GB", 234), // also 235
    ("GD", 352),
    ("GE", 282),
    ("GF", 742),
    ("GG", 234), // Guernsey
    ("GH", 620),
    ("GI", 266),
    ("GL", 290),
    ("GM", 607),
    ("GN", 611),
    ("GP", 340),
    ("GQ", 627),
    ("GR", 202),
    ("GT", 704),
    ("GU", 310), // Guam
    ("GW", 632),
    ("GY", 738),
    ("HK", 454),
    ("HN", 708),
    ("HR", 219),
    ("HT", 372),
    ("HU", 216),
    ("ID", 510),
    ("IE", 272),
    ("IL", 425),
    ("IM", 234), // Isle of Man
    ("IN", 404), // also 405, 406
    ("IO", 995),
    ("IQ", 418),
    ("IR", 432),
    ("IS", 274),
    ("IT", 222),
    ("JE", 234), // Jersey
    ("JM", 338),
    ("JO", 416),
    ("JP", 440), // also 441
    ("KE", 639),
    ("KG", 437),
    ("KH", 456),
    ("KI", 545),
    ("KM", 654),
    ("KN", 356),
    ("KP", 467),
    ("KR", 450),
    ("KW", 419),
    ("KY", 346),
    ("KZ", 401),
    ("LA", 457),
    ("LB", 415),
    ("LC", 358),
    ("LI", 295),
    ("LK", 413),
    ("LR", 618),
    ("LS", 651),
    ("LT", 246),
    ("LU", 270),
    ("LV", 247),
    ("LY", 606),
    ("MA", 604),
    ("MC", 212),
    ("MD", 259),
    ("ME", 297),
    ("MF", 340), // Saint Martin (French part)
    ("MG", 646),
    ("MH", 551),
    ("MK", 294),
    ("ML", 610),
    ("MM", 414),
    ("MN", 428),
    ("MO", 455),
    ("MP", 310), // Northern Mariana Islands
    ("MQ", 340), // Martinique
    ("MR", 609),
    ("MS", 354),
    ("MT", 278),
    ("MU", 617),
    ("MV", 472),
    ("MW", 650),
    ("MX", 334),
    ("MY", 502),
    ("MZ", 643),
    ("NA", 649),
    ("NC", 546),
    ("NE", 614),
    ("NF", 505), // Norfolk Island
    ("NG", 621),
    ("NI", 710),
    ("NL", 204),
    ("NO", 242),
    ("NP", 429),
    ("NR", 536),
    ("NU", 555),
    ("NZ", 530),
    ("OM", 422),
    ("PA", 714),
    ("PE", 716),
    ("PF", 547),
    ("PG", 537),
    ("PH", 515),
    ("PK", 410),
    ("PL", 260),
    ("PM", 308),
    ("PR", 330),
    ("PS", 425), // Palestine (shares Israel's code)
    ("PT", 268),
    ("PW", 552),
    ("PY", 744),
    ("QA", 427),
    ("RE", 647),
    ("RO", 226),
    ("RS", 220),
    ("RU", 250),
    ("RW", 635),
    ("SA", 420),
    ("SB", 540),
    ("SC", 633),
    ("SD", 634),
    ("SE", 240),
    ("SG", 525),
    ("SH", 658),
    ("SI", 293),
    ("SJ", 242), // Svalbard and Jan Mayen (Norwegian networks)
    ("SK", 231),
    ("SL", 619),
    ("SM", 292),
    ("SN", 608),
    ("SO", 637),
    ("SR", 746),
    ("SS", 659),
    ("ST", 626),
    ("SV", 706),
    ("SX", 362), // Sint Maarten (Dutch part)
    ("SY", 417),
    ("SZ", 653),
    ("TA", 658), // Tristan da Cunha (shares Saint Helena's code)
    ("TC", 376),
    ("TD", 622),
    ("TG", 615),
    ("TH", 520),
    ("TJ", 436),
    ("TK", 554),
    ("TL", 514),
    ("TM", 438),
    ("TN", 605),
    ("TO", 539),
    ("TR", 286),
    ("TT", 374),
    ("TV", 553),
    ("TW", 466),
    ("TZ", 640),
    ("UA", 255),
    ("UG", 641),
    ("US", 310), // also 311-316
    ("UY", 748),
    ("UZ", 434),
    ("VA", 225),
    ("VC", 360),
    ("VE", 734),
    ("VG", 348),
    ("VI", 332),
    ("VN", 452),
    ("VU", 541),
    ("WF", 543),
    ("WS", 549),
    ("XK", 221), // Kosovo (user-assigned ISO code)
    ("YE", 421),
    ("YT", 647), // Mayotte (French Indian Ocean territories)
    ("ZA", 655),
    ("ZM", 645),
    ("ZW", 648),
];

/// Every geographic MCC → the region that primarily holds it, sorted by MCC
/// (checked by a test). Includes secondary codes such as 311 or 405.
static MCC_REGION: &[(u16, &str)] = &[
    (202, "GR"),
    (204, "NL"),
    (206, "BE"),
    (208, "FR"),
    (212, "MC"),
    (213, "AD"),
    (214, "ES"),
    (216, "HU"),
    (218, "BA"),
    (219, "HR"),
    (220, "RS"),
    (221, "XK"),
    (222, "IT"),
    (225, "VA"),
    (226, "RO"),
    (228, "CH"),
    (230, "CZ"),
    (231, "SK"),
    (232, "AT"),
    (234, "GB"),
    (235, "GB"),
    (238, "DK"),
    (240, "SE"),
    (242, "NO"),
    (244, "FI"),
    (246, "LT"),
    (247, "LV"),
    (248, "EE"),
    (250, "RU"),
    (255, "UA"),
    (257, "BY"),
    (259, "MD"),
    (260, "PL"),
    (262, "DE"),
    (266, "GI"),
    (268, "PT"),
    (270, "LU"),
    (272, "IE"),
    (274, "IS"),
    (276, "AL"),
    (278, "MT"),
    (280, "CY"),
    (282, "GE"),
    (283, "AM"),
    (284, "BG"),
    (286, "TR"),
    (288, "FO"),
    (290, "GL"),
    (292, "SM"),
    (293, "SI"),
    (294, "MK"),
    (295, "LI"),
    (297, "ME"),
    (302, "CA"),
    (308, "PM"),
    (310, "US"),
    (311, "US"),
    (312, "US"),
    (313, "US"),
    (314, "US"),
    (315, "US"),
    (316, "US"),
    (330, "PR"),
    (332, "VI"),
    (334, "MX"),
    (338, "JM"),
    (340, "GP"),
    (342, "BB"),
    (344, "AG"),
    (346, "KY"),
    (348, "VG"),
    (350, "BM"),
    (352, "GD"),
    (354, "MS"),
    (356, "KN"),
    (358, "LC"),
    (360, "VC"),
    (362, "CW"),
    (363, "AW"),
    (364, "BS"),
    (365, "AI"),
    (366, "DM"),
    (368, "CU"),
    (370, "DO"),
    (372, "HT"),
    (374, "TT"),
    (376, "TC"),
    (400, "AZ"),
    (401, "KZ"),
    (402, "BT"),
    (404, "IN"),
    (405, "IN"),
    (406, "IN"),
    (410, "PK"),
    (412, "AF"),
    (413, "LK"),
    (414, "MM"),
    (415, "LB"),
    (416, "JO"),
    (417, "SY"),
    (418, "IQ"),
    (419, "KW"),
    (420, "SA"),
    (421, "YE"),
    (422, "OM"),
    (424, "AE"),
    (425, "IL"),
    (426, "BH"),
    (427, "QA"),
    (428, "MN"),
    (429, "NP"),
    (430, "AE"),
    (431, "AE"),
    (432, "IR"),
    (434, "UZ"),
    (436, "TJ"),
    (437, "KG"),
    (438, "TM"),
    (440, "JP"),
    (441, "JP"),
    (450, "KR"),
    (452, "VN"),
    (454, "HK"),
    (455, "MO"),
    (456, "KH"),
    (457, "LA"),
    (460, "CN"),
    (461, "CN"),
    (466, "TW"),
    (467, "KP"),
    (470, "BD"),
    (472, "MV"),
    (502, "MY"),
    (505, "AU"),
    (510, "ID"),
    (514, "TL"),
    (515, "PH"),
    (520, "TH"),
    (525, "SG"),
    (528, "BN"),
    (530, "NZ"),
    (536, "NR"),
    (537, "PG"),
    (539, "TO"),
    (540, "SB"),
    (541, "VU"),
    (542, "FJ"),
    (543, "WF"),
    (544, "AS"),
    (545, "KI"),
    (546, "NC"),
    (547, "PF"),
    (548, "CK"),
    (549, "WS"),
    (550, "FM"),
    (551, "MH"),
    (552, "PW"),
    (553, "TV"),
    (554, "TK"),
    (555, "NU"),
    (602, "EG"),
    (603, "DZ"),
    (604, "MA"),
    (605, "TN"),
    (606, "LY"),
    (607, "GM"),
    (608, "SN"),
    (609, "MR"),
    (610, "ML"),
    (611, "GN"),
    (612, "CI"),
    (613, "BF"),
    (614, "NE"),
    (615, "TG"),
    (616, "BJ"),
    (617, "MU"),
    (618, "LR"),
    (619, "SL"),
    (620, "GH"),
    (621, "NG"),
    (622, "TD"),
    (623, "CF"),
    (624, "CM"),
    (625, "CV"),
    (626, "ST"),
    (627, "GQ"),
    (628, "GA"),
    (629, "CG"),
    (630, "CD"),
    (631, "AO"),
    (632, "GW"),
    (633, "SC"),
    (634, "SD"),
    (635, "RW"),
    (636, "ET"),
    (637, "SO"),
    (638, "DJ"),
    (639, "KE"),
    (640, "TZ"),
    (641, "UG"),
    (642, "BI"),
    (643, "MZ"),
    (645, "ZM"),
    (646, "MG"),
    (647, "RE"),
    (648, "ZW"),
    (649, "NA"),
    (650, "MW"),
    (651, "LS"),
    (652, "BW"),
    (653, "SZ"),
    (654, "KM"),
    (655, "ZA"),
    (657, "ER"),
    (658, "SH"),
    (659, "SS"),
    (702, "BZ"),
    (704, "GT"),
    (706, "SV"),
    (708, "HN"),
    (710, "NI"),
    (712, "CR"),
    (714, "PA"),
    (716, "PE"),
    (722, "AR"),
    (724, "BR"),
    (730, "CL"),
    (732, "CO"),
    (734, "VE"),
    (736, "BO"),
    (738, "GY"),
    (740, "EC"),
    (742, "GF"),
    (744, "PY"),
    (746, "SR"),
    (748, "UY"),
    (750, "FK"),
    (995, "IO"),
];

/// The primary MCC of an ISO 3166-1 alpha-2 region, case-insensitively
/// (`"us"` and `"US"` both give 310). `None` for anything that is not two
/// ASCII letters naming a region with a mobile country code.
pub fn mcc_for_region(region: &str) -> Option<u16> {
    let &[a, b] = region.as_bytes() else {
        return None;
    };
    let key = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    REGION_MCC
        .binary_search_by(|(r, _)| r.as_bytes().cmp(&key[..]))
        .ok()
        .map(|i| REGION_MCC[i].1)
}

/// The region that primarily holds `mcc` (e.g. 310 and 311 → `"US"`,
/// 234 → `"GB"`), or `None` for unassigned and non-geographic codes.
pub fn region_for_mcc(mcc: u16) -> Option<&'static str> {
    MCC_REGION
        .binary_search_by_key(&mcc, |&(m, _)| m)
        .ok()
        .map(|i| MCC_REGION[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_table_is_sorted_and_unique() {
        for pair in REGION_MCC.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} !< {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn mcc_table_is_sorted_and_unique() {
        for pair in MCC_REGION.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} !< {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn region_codes_are_two_uppercase_letters() {
        for (region, _) in REGION_MCC {
            assert_eq!(region.len(), 2, "{region}");
            assert!(region.bytes().all(|b| b.is_ascii_uppercase()), "{region}");
        }
    }

    #[test]
    fn mccs_are_geographic_three_digit_codes() {
        for &(_, mcc) in REGION_MCC {
            assert!((200..=799).contains(&mcc) || mcc == 995, "{mcc}");
        }
    }

    #[test]
    fn table_covers_the_world() {
        assert!(REGION_MCC.len() >= 240, "{}", REGION_MCC.len());
        assert!(MCC_REGION.len() >= 230, "{}", MCC_REGION.len());
    }

    #[test]
    fn tables_agree() {
        // Every region's MCC has a primary holder, which is itself a region
        // in the table.
        for &(region, mcc) in REGION_MCC {
            let owner = region_for_mcc(mcc);
            assert!(owner.is_some(), "{region} -> {mcc} has no owner");
            assert!(owner.and_then(mcc_for_region).is_some(), "{region}");
        }
        // Every MCC holder maps back to that MCC, or to a lower one when the
        // MCC is one of its secondary codes (e.g. 311 for US, 405 for IN).
        for &(mcc, region) in MCC_REGION {
            let primary = mcc_for_region(region);
            assert!(primary.is_some(), "{mcc} -> {region} unknown");
            assert!(primary.is_some_and(|p| p <= mcc), "{mcc} -> {region}");
            if primary == Some(mcc) {
                assert_eq!(region_for_mcc(mcc), Some(region));
            }
        }
    }

    #[test]
    fn brief_examples() {
        assert_eq!(mcc_for_region("US"), Some(310));
        assert_eq!(mcc_for_region("GB"), Some(234));
        assert_eq!(mcc_for_region("IN"), Some(404));
        assert_eq!(mcc_for_region("CN"), Some(460));
        assert_eq!(mcc_for_region("SA"), Some(420));
        assert_eq!(mcc_for_region("NL"), Some(204));
        assert_eq!(mcc_for_region("DE"), Some(262));
        assert_eq!(mcc_for_region("FR"), Some(208));
        assert_eq!(mcc_for_region("NG"), Some(621));
        assert_eq!(mcc_for_region("BR"), Some(724));
        assert_eq!(mcc_for_region("ID"), Some(510));
        assert_eq!(mcc_for_region("RU"), Some(250));
        assert_eq!(mcc_for_region("ZA"), Some(655));
    }

    #[test]
    fn spot_checks_across_continents() {
        let cases = [
            // Europe
            ("ES", 214),
            ("IT", 222),
            ("CH", 228),
            ("SE", 240),
            ("NO", 242),
            ("PL", 260),
            ("UA", 255),
            ("TR", 286),
            ("IE", 272),
            ("PT", 268),
            // North America and Caribbean
            ("CA", 302),
            ("MX", 334),
            ("JM", 338),
            ("PR", 330),
            ("CU", 368),
            // Asia and Middle East
            ("JP", 440),
            ("KR", 450),
            ("HK", 454),
            ("TW", 466),
            ("PK", 410),
            ("BD", 470),
            ("AE", 424),
            ("IL", 425),
            ("IR", 432),
            ("KZ", 401),
            ("VN", 452),
            ("TH", 520),
            ("PH", 515),
            ("MY", 502),
            ("SG", 525),
            // Oceania
            ("AU", 505),
            ("NZ", 530),
            ("FJ", 542),
            ("PG", 537),
            // Africa
            ("EG", 602),
            ("MA", 604),
            ("KE", 639),
            ("GH", 620),
            ("ET", 636),
            ("TZ", 640),
            ("CD", 630),
            ("SS", 659),
            // South and Central America
            ("AR", 722),
            ("CL", 730),
            ("CO", 732),
            ("PE", 716),
            ("VE", 734),
            ("UY", 748),
            ("GT", 704),
            ("CR", 712),
        ];
        for (region, mcc) in cases {
            assert_eq!(mcc_for_region(region), Some(mcc), "{region}");
        }
    }

    #[test]
    fn shared_codes_map_to_the_parent() {
        assert_eq!(mcc_for_region("JE"), Some(234));
        assert_eq!(mcc_for_region("GG"), Some(234));
        assert_eq!(mcc_for_region("IM"), Some(234));
        assert_eq!(mcc_for_region("GU"), Some(310));
        assert_eq!(mcc_for_region("YT"), Some(647));
        assert_eq!(mcc_for_region("MQ"), Some(340));
        assert_eq!(mcc_for_region("SX"), Some(362));
        assert_eq!(region_for_mcc(234), Some("GB"));
        assert_eq!(region_for_mcc(340), Some("GP"));
        assert_eq!(region_for_mcc(362), Some("CW"));
        assert_eq!(region_for_mcc(647), Some("RE"));
        assert_eq!(region_for_mcc(505), Some("AU"));
        assert_eq!(region_for_mcc(425), Some("IL"));
    }

    #[test]
    fn lowercase_and_mixed_case_input() {
        assert_eq!(mcc_for_region("us"), Some(310));
        assert_eq!(mcc_for_region("gB"), Some(234));
        assert_eq!(mcc_for_region("In"), Some(404));
        assert_eq!(mcc_for_region("xk"), Some(221));
    }

    #[test]
    fn unknown_or_malformed_region() {
        for region in [
            "", "U", "USA", "ZZ", "AQ", "UK", "EU", "1A", " US", "US ", "É1", "ÜS",
        ] {
            assert_eq!(mcc_for_region(region), None, "{region:?}");
        }
    }

    #[test]
    fn region_for_mcc_primary() {
        assert_eq!(region_for_mcc(310), Some("US"));
        assert_eq!(region_for_mcc(316), Some("US"));
        assert_eq!(region_for_mcc(404), Some("IN"));
        assert_eq!(region_for_mcc(406), Some("IN"));
        assert_eq!(region_for_mcc(234), Some("GB"));
        assert_eq!(region_for_mcc(235), Some("GB"));
        assert_eq!(region_for_mcc(441), Some("JP"));
        assert_eq!(region_for_mcc(461), Some("CN"));
        assert_eq!(region_for_mcc(431), Some("AE"));
        assert_eq!(region_for_mcc(655), Some("ZA"));
        assert_eq!(region_for_mcc(724), Some("BR"));
        assert_eq!(region_for_mcc(995), Some("IO"));
    }

    #[test]
    fn region_for_unassigned_mcc() {
        for mcc in [0, 1, 100, 201, 317, 403, 644, 901, 999, 1000, u16::MAX] {
            assert_eq!(region_for_mcc(mcc), None, "{mcc}");
        }
    }

    #[test]
    fn round_trip_for_primary_holders() {
        for region in ["US", "GB", "IN", "JP", "CN", "AE", "DE", "BR", "ZA", "AU"] {
            let mcc = mcc_for_region(region);
            assert_eq!(mcc.and_then(region_for_mcc), Some(region), "{region}");
        }
    }
}
