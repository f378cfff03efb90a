//! The HTTP request and response of a `callHandleHTTP` handler (capsule-abi.md §5.3, §5.4) and
//! the message of a `callHandleMessage` handler (§8).

use crate::{base64, json, success};

/// An HTTP request as `capsule serve` hands it to the handler.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The raw body, as text (invalid UTF-8 was replaced by U+FFFD by the host).
    pub body: String,
    /// The full URL: `http[s]://host/path?query`.
    pub uri: String,
    /// The upper-case method.
    pub method: String,
    /// The host's `"Name":"value",…` string, as received; read it with `header` / `headers`.
    pub headers: String,
}

impl Request {
    /// Reads the request JSON of §5.3.
    pub fn from_json(text: &str) -> Result<Request, String> {
        let v = json::parse(text).map_err(|e| format!("the HTTP request is not valid JSON: {}", e))?;
        Ok(Request { body: v.get_str("Body").into(), uri: v.get_str("URI").into(), method: v.get_str("Method").into(), headers: v.get_str("Headers").into() })
    }

    /// Every header (name as the host sent it, canonical form: `Content-Type`), in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        match json::parse(&format!("{{{}}}", self.headers)) {
            Ok(json::Value::Object(members)) => members.into_iter().map(|(k, v)| (k, v.to_text())).collect(),
            _ => Vec::new(),
        }
    }

    /// The value of header `name` (compared case-insensitively), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers().into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The path and query of the URI (`/a/b?c=1`), `/` when it has none.
    pub fn path(&self) -> &str {
        let rest = self.uri.split_once("://").map(|(_, r)| r).unwrap_or(&self.uri);
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    }
}

#[derive(Clone, Debug)]
enum Body {
    Json(String),
    Text(Vec<u8>),
}

/// An HTTP response: what a `callHandleHTTP` handler, `OnHealthCheck` or `OnMetrics` returns.
#[derive(Clone, Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    body: Body,
}

impl Response {
    /// A JSON body (raw JSON text, checked when the response is sent: invalid JSON fails the
    /// call), with `Content-Type: application/json; charset=utf-8`.
    pub fn json(status: u16, json_text: impl Into<String>) -> Response {
        Response { status, headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())], body: Body::Json(json_text.into()) }
    }

    /// A text or binary body; without a Content-Type header the host sends `text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: Vec::new(), body: Body::Text(body.into()) }
    }

    /// An HTML page, with `Content-Type: text/html; charset=utf-8`.
    pub fn html(status: u16, page: impl Into<Vec<u8>>) -> Response {
        Response::text(status, page).header("Content-Type", "text/html; charset=utf-8")
    }

    /// Sets header `name` (replacing one of the same name, compared case-insensitively).
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The response JSON of §5.4, or why it cannot be sent (a JSON body that is not JSON).
    pub fn to_json(&self) -> Result<String, String> {
        let (json_body, text_body) = match &self.body {
            Body::Json(text) if text.trim().is_empty() => ("{}".to_string(), String::new()),
            Body::Json(text) => {
                json::parse(text).map_err(|e| format!("the response JSON body is not valid JSON: {}", e))?;
                (text.trim().to_string(), String::new())
            }
            // an empty text body cannot be told from "no TextBody" on the wire: it arrives as `{}`
            Body::Text(bytes) => ("{}".to_string(), base64::encode(bytes)),
        };
        let headers = json::Value::Object(self.headers.iter().map(|(k, v)| (k.clone(), json::Value::from(v.as_str()))).collect());
        Ok(format!("{{\"JSONBody\":{},\"TextBody\":\"{}\",\"Headers\":{},\"StatusCode\":{}}}", json_body, text_body, headers.to_json(), self.status))
    }
}

/// A response framed for the host (`S<response JSON>`, or `F<why>`): what `callHandleHTTP`
/// returns, and what an `OnHealthCheck` / `OnMetrics` export returns:
///
/// ```ignore
/// #[no_mangle]
/// pub extern "C" fn OnHealthCheck() -> u64 {
///     capsule::http_result(&capsule::Response::json(200, r#"{"status":"ok"}"#))
/// }
/// ```
pub fn http_result(response: &Response) -> u64 {
    match response.to_json() {
        Ok(text) => success(text.as_bytes()),
        Err(e) => crate::failure(&e),
    }
}

/// A NATS or MQTT message delivered to a `callHandleMessage` handler (capsule-abi.md §8).
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// The NATS subject (empty for MQTT).
    pub subject: String,
    /// The MQTT topic (empty for NATS).
    pub topic: String,
    /// The payload.
    pub data: Vec<u8>,
    /// NATS headers / MQTT v5 user properties.
    pub headers: Vec<(String, String)>,
    /// Where the result is published (reply subject or response topic); empty when none.
    pub reply_to: String,
}

impl Message {
    /// Reads the message envelope of §8.
    pub fn from_json(text: &str) -> Result<Message, String> {
        let v = json::parse(text).map_err(|e| format!("the message is not valid JSON: {}", e))?;
        let data = base64::decode(v.get_str("Data")).ok_or("the message Data is not base64")?;
        let headers = match v.get("Headers") {
            Some(json::Value::Object(members)) => members.iter().map(|(k, v)| (k.clone(), v.to_text())).collect(),
            _ => Vec::new(),
        };
        Ok(Message { subject: v.get_str("Subject").into(), topic: v.get_str("Topic").into(), data, headers, reply_to: v.get_str("ReplyTo").into() })
    }

    /// The payload as text (invalid UTF-8 replaced by U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
