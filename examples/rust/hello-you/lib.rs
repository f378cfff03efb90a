//! hello-you: an HTTP function in Rust that reads a JSON body and answers JSON.
//!
//!     POST {"name":"Bob Morane","age":42}  →  200 {"message":"Bob Morane 42"}
//!     a body that is not a JSON object     →  400 {"error":"…"}

use capsule::json::{self, Value};
use capsule::{Request, Response};

fn answer(status: u16, key: &str, value: String) -> Response {
    Response::json(status, json::object(&[(key, Value::from(value))]).to_json())
}

fn hello(req: &Request) -> Result<Response, String> {
    let body = match json::parse(&req.body) {
        Ok(body @ Value::Object(_)) => body,
        Ok(_) => return Ok(answer(400, "error", r#"the body must be a JSON object like {"name":"Bob Morane","age":42}"#.into())),
        Err(e) => return Ok(answer(400, "error", format!("the body is not valid JSON: {}", e))),
    };
    // "age" may be a number or a string; a number is printed as it was written (42, not 42.0)
    let age = body.get("age").map(Value::to_text).unwrap_or_default();
    Ok(answer(200, "message", format!("{} {}", body.get_str("name"), age)))
}

capsule::set_handle_http!(hello);
