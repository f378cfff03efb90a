//! {{name}}: an HTTP function (capsule serve {{name}}.wasm).
//!
//!     POST {"name":"Bob Morane"}      →  200 {"message":"👋 Hello Bob Morane"}
//!     a body that is not such a JSON  →  400 {"error":"…"}

use capsule::json::{self, Value};
use capsule::{Request, Response};

fn answer(status: u16, key: &str, value: String) -> Response {
    Response::json(status, json::object(&[(key, Value::from(value))]).to_json())
}

fn hello(req: &Request) -> Result<Response, String> {
    let name = match json::parse(&req.body) {
        Ok(body @ Value::Object(_)) => body.get_str("name").to_string(),
        _ => String::new(),
    };
    if name.is_empty() {
        return Ok(answer(400, "error", r#"send a JSON object like {"name":"Bob Morane"}"#.into()));
    }
    Ok(answer(200, "message", format!("👋 Hello {}", name)))
}

capsule::set_handle_http!(hello);
