//! kv-counter: seed 004's counter in Rust. Every request increments the counter of its path
//! atomically in the function's KV store (capsule::kv_increment): the memory cache shared by
//! every worker of the process, or Redis (INCRBY) when one is configured.
//!
//!     GET /bloggo → {"counter":1}, then {"counter":2}, …

use capsule::{Request, Response};

fn count(req: &Request) -> Result<Response, String> {
    let path = req.path().split('?').next().unwrap_or("/");
    let counter = capsule::kv_increment(&format!("counter:{}", path), 1)?; // an Err: 500 with its text
    Ok(Response::json(200, format!("{{\"counter\":{}}}", counter)))
}

capsule::set_handle_http!(count);
