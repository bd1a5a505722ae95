//! The fields of an SGate call, from a JSON body or a query string: a missing field is 1102,
//! a badly formed one 1103, each naming the field.

use serde_json::{Map, Value};

use super::envelope::SgateError;

/// `sessionid` is exactly this long.
const SESSION_ID_CHARS: usize = 32;
/// `code` is exactly this long.
const CODE_CHARS: usize = 6;

/// A sendOtp request.
pub struct OtpBody {
    pub mobile: String,
    pub appname: String,
    pub otp_type: Option<String>,
}

/// The request's fields by name.
pub struct Fields(Map<String, Value>);

impl Fields {
    /// A JSON object body.
    pub fn json(body: &str) -> Result<Self, SgateError> {
        if body.trim().is_empty() {
            return Err(SgateError::new(1102, "the request body is empty"));
        }
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(SgateError::invalid("body", "must be a JSON object")),
            Err(e) => Err(SgateError::invalid(
                "body",
                format!("is not valid JSON: {e}"),
            )),
        }
    }

    /// A URL query string; the first value of a repeated name counts.
    pub fn query(query: &str) -> Result<Self, SgateError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| SgateError::invalid("query", format!("is not URL-encoded: {e}")))?;
        let mut map = Map::new();
        for (k, v) in pairs {
            map.entry(k).or_insert(Value::String(v));
        }
        Ok(Self(map))
    }

    /// The field, `None` when absent, null or an empty string.
    fn take(&mut self, name: &str) -> Option<Value> {
        match self.0.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        }
    }

    /// A string field, or a non-negative integer given as a JSON number (its digits).
    fn text_or_digits(&mut self, name: &str) -> Result<String, SgateError> {
        match self.take(name) {
            None => Err(SgateError::missing(name)),
            Some(Value::String(s)) => Ok(s),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
            Some(_) => Err(SgateError::invalid(name, "must be a string")),
        }
    }

    /// `mobile`: a string, or a JSON number; echoed as the caller sent it.
    pub fn mobile(&mut self) -> Result<String, SgateError> {
        self.text_or_digits("mobile")
    }

    /// A required string of at most `max` characters.
    pub fn text(&mut self, name: &str, max: Option<usize>) -> Result<String, SgateError> {
        let s = match self.take(name) {
            None => return Err(SgateError::missing(name)),
            Some(Value::String(s)) => s,
            Some(_) => return Err(SgateError::invalid(name, "must be a string")),
        };
        if let Some(max) = max
            && s.chars().count() > max
        {
            return Err(SgateError::invalid(
                name,
                format!("must be at most {max} characters"),
            ));
        }
        Ok(s)
    }

    pub fn optional_text(&mut self, name: &str) -> Result<Option<String>, SgateError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SgateError::invalid(name, "must be a string")),
        }
    }

    /// `code`: exactly 6 characters.
    pub fn code(&mut self) -> Result<String, SgateError> {
        let code = self.text_or_digits("code")?;
        if code.chars().count() != CODE_CHARS {
            return Err(SgateError::invalid(
                "code",
                format!("must be exactly {CODE_CHARS} characters"),
            ));
        }
        Ok(code)
    }

    /// `sessionid`: exactly 32 characters.
    pub fn session_id(&mut self) -> Result<String, SgateError> {
        let s = self.text("sessionid", None)?;
        if s.chars().count() != SESSION_ID_CHARS {
            return Err(SgateError::invalid(
                "sessionid",
                format!("must be exactly {SESSION_ID_CHARS} characters"),
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_fields_name_themselves() {
        let mut f = Fields::json(r#"{"mobile":512345678,"appname":7,"code":"12345"}"#).unwrap();
        assert_eq!(f.mobile().unwrap(), "512345678");
        let e = f.text("appname", Some(32)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                1103,
                "Parameter validation failed: appname must be a string"
            )
        );
        assert_eq!(f.code().unwrap_err().code, 1103);
        assert_eq!(f.session_id().unwrap_err().code, 1102);
        let mut f = Fields::json(r#"{"mobile":-5,"appname":""}"#).unwrap();
        assert_eq!(f.mobile().unwrap_err().code, 1103);
        assert_eq!(f.text("appname", None).unwrap_err().code, 1102);
        assert_eq!(Fields::json("[1]").err().unwrap().code, 1103);
        assert_eq!(Fields::json("{").err().unwrap().code, 1103);
        assert_eq!(Fields::json("").err().unwrap().code, 1102);
    }

    #[test]
    fn query_fields() {
        let mut f = Fields::query("mobile=%2B966512345678&sessionid=abc&mobile=1").unwrap();
        assert_eq!(f.mobile().unwrap(), "+966512345678");
        assert_eq!(f.session_id().unwrap_err().code, 1103);
    }
}
