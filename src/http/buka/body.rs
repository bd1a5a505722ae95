//! Request bodies: JSON read leniently where vendors' clients differ (ids as numbers or
//! numeric strings), strictly otherwise, with errors that name the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::envelope::BukaError;

/// A JSON body parsed into `T`; any failure is `-22` naming the field.
pub struct BukaJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for BukaJson<T> {
    type Rejection = BukaError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            BukaError::param("body", format!("could not be read: {}", e.body_text()))
        })?;
        parse(&bytes).map(BukaJson)
    }
}

/// Parses a body, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BukaError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err(BukaError::param("body", "is required: a JSON object")),
        // Serde would also read a struct from a JSON array; only objects are bodies here.
        Some(b'[') => {
            return Err(BukaError::param(
                "body",
                "must be a JSON object, not an array",
            ));
        }
        Some(_) => {}
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // serde_json appends " at line L column C"; the field name says more.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        if inner.is_syntax() || inner.is_eof() {
            BukaError::param("body", format!("is not valid JSON: {msg}"))
        } else if path == "." || path.is_empty() {
            BukaError::param("body", format!("must be a JSON object: {msg}"))
        } else {
            BukaError::param(&path, msg)
        }
    })
}

/// Accepts a whole number given as a JSON number or a numeric string; `null` is absent.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("number too large"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(Some(v as i64))
            } else {
                Err(E::custom("must be a whole number"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("must be a whole number, got {v:?}")))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// Accepts a string, or a number written as a string; `null` is absent.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct T {
        #[serde(default, deserialize_with = "opt_int")]
        template_id: Option<i64>,
        #[serde(default, deserialize_with = "opt_text")]
        to: Option<String>,
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn lenient_ids_and_texts() {
        let t: T = parse(br#"{"templateId":"455","to":91856321412}"#).unwrap();
        assert_eq!(t.template_id, Some(455));
        assert_eq!(t.to.as_deref(), Some("91856321412"));
        let t: T = parse(br#"{"templateId":null}"#).unwrap();
        assert_eq!(t.template_id, None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<T>(br#"{"templateId":"abc"}"#).unwrap_err();
        assert_eq!(e.status, "-22");
        assert!(e.reason.contains("templateId"), "{}", e.reason);
        let e = parse::<T>(br#"{"name":123}"#).unwrap_err();
        assert!(e.reason.contains("name"), "{}", e.reason);
        let e = parse::<T>(br#"{"templateId":1.5}"#).unwrap_err();
        assert!(e.reason.contains("templateId"), "{}", e.reason);
        let e = parse::<T>(br#"{"to":true}"#).unwrap_err();
        assert!(e.reason.contains("to"), "{}", e.reason);
    }

    #[test]
    fn bad_bodies() {
        assert!(parse::<T>(b"").unwrap_err().reason.contains("body"));
        assert!(
            parse::<T>(b"{")
                .unwrap_err()
                .reason
                .contains("not valid JSON")
        );
        assert!(
            parse::<T>(b"[]")
                .unwrap_err()
                .reason
                .contains("JSON object")
        );
    }
}
