//! Capsule MDK for Rust: write Capsule functions (Capsule ABI generation 2, capsule-abi.md §5,
//! and the §8 extensions) in Rust, as `wasm32-wasi` reactors, with no other crate.
//!
//! A function registers its handlers with the `set_handle*!` macros, which define the handler
//! exports (`callHandle`, `callHandleJSON`, `callHandleHTTP`, `callHandleMessage`), and calls the
//! host through the functions of this crate (`print`, `get_env`, `cache_set`, `http`, …):
//!
//! ```ignore
//! capsule::set_handle!(|params: &[u8]| -> Result<String, String> {
//!     let name = String::from_utf8_lossy(params);
//!     capsule::print(&format!("📝 module parameter(s): {}", name));
//!     Ok(format!("👋 Hello {}", name))
//! });
//! ```
//!
//! The crate exports `allocateBuffer` and `_initialize` itself; `malloc` and `free` are libc's,
//! exported by the link arguments of the build line (README.md).

pub mod base64;
mod host;
mod http;
pub mod json;

pub use host::*;
pub use http::{http_result, Message, Request, Response};

use std::fmt::Display;

extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
    fn __wasm_call_ctors();
}

/// Export `_initialize` (capsule-abi.md §2.2): runs the C and Rust constructors once, when the
/// host instantiates the module. Defining it makes the module a reactor: without it the linker
/// would wrap every export in constructor and destructor calls.
#[no_mangle]
pub extern "C" fn _initialize() {
    unsafe { __wasm_call_ctors() }
}

/// Export `allocateBuffer(size) -> ptr` (capsule-abi.md §2.4): a buffer for a host function's
/// result, taken back (and freed) by the function that called the host.
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn allocateBuffer(size: usize) -> *mut u8 {
    unsafe { malloc(size.max(1)) }
}

/// The bytes a host function wrote through the return-buffer protocol (§2.4), freed after the copy.
fn take_result(ptr: u32, len: u32) -> Vec<u8> {
    if len == 0 || ptr == 0 {
        return Vec::new();
    }
    let out = unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) }.to_vec();
    unsafe { free(ptr as *mut u8) };
    out
}

/// The frame the last export returned, kept alive until the next export call (§2.3).
static mut LAST_RESULT: Vec<u8> = Vec::new();

fn frame(kind: u8, data: &[u8]) -> u64 {
    let mut buf = Vec::with_capacity(1 + data.len());
    buf.push(kind);
    buf.extend_from_slice(data);
    let result = (buf.as_ptr() as u64) << 32 | buf.len() as u64;
    unsafe { LAST_RESULT = buf };
    result
}

/// `data` framed as a success (`S<data>`, §5.1), in the form an export returns (address << 32 |
/// length).
pub fn success(data: &[u8]) -> u64 {
    frame(b'S', data)
}

/// `message` framed as a failure (`F<message>`), in the form an export returns.
pub fn failure(message: &str) -> u64 {
    frame(b'F', message.as_bytes())
}

/// Splits a frame a host function returned: `Ok(payload)` for `S`, `Err(text)` for `F`.
pub fn result(frame: Vec<u8>) -> Result<Vec<u8>, String> {
    match frame.first() {
        None => Ok(Vec::new()),
        Some(b'S') => Ok(frame[1..].to_vec()),
        Some(b'F') => Err(String::from_utf8_lossy(&frame[1..]).into_owned()),
        Some(_) => Err(format!("the host returned an unframed result: {}", String::from_utf8_lossy(&frame))),
    }
}

/// What the handler macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
        if len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(ptr, len)
        }
    }

    fn answer<T: AsRef<[u8]>, E: Display>(r: Result<T, E>) -> u64 {
        match r {
            Ok(v) => success(v.as_ref()),
            Err(e) => failure(&e.to_string()),
        }
    }

    pub unsafe fn call_handle<T: AsRef<[u8]>, E: Display>(ptr: *const u8, len: usize, f: impl Fn(&[u8]) -> Result<T, E>) -> u64 {
        answer(f(input(ptr, len)))
    }

    pub unsafe fn call_handle_json<T: AsRef<[u8]>, E: Display>(ptr: *const u8, len: usize, f: impl Fn(&json::Value) -> Result<T, E>) -> u64 {
        let text = String::from_utf8_lossy(input(ptr, len));
        match json::parse(&text) {
            Ok(v) => answer(f(&v)),
            Err(e) => failure(&format!("the input is not valid JSON: {}", e)),
        }
    }

    pub unsafe fn call_handle_http<E: Display>(ptr: *const u8, len: usize, f: impl Fn(&Request) -> Result<Response, E>) -> u64 {
        let request = match Request::from_json(&String::from_utf8_lossy(input(ptr, len))) {
            Ok(r) => r,
            Err(e) => return failure(&e),
        };
        match f(&request) {
            Ok(response) => http_result(&response),
            Err(e) => failure(&e.to_string()),
        }
    }

    pub unsafe fn call_handle_message<T: AsRef<[u8]>, E: Display>(ptr: *const u8, len: usize, f: impl Fn(&Message) -> Result<T, E>) -> u64 {
        match Message::from_json(&String::from_utf8_lossy(input(ptr, len))) {
            Ok(m) => answer(f(&m)),
            Err(e) => failure(&e),
        }
    }
}

/// Defines `callHandle` (capsule-abi.md §5.2) with a handler `Fn(&[u8]) -> Result<T, E>`
/// (`T: AsRef<[u8]>`, `E: Display`): `capsule run`'s parameters in, the result printed by the
/// runner; an `Err` fails the call (exit code 1).
#[macro_export]
macro_rules! set_handle {
    ($handler:expr) => {
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "C" fn callHandle(ptr: *const u8, len: usize) -> u64 {
            $crate::__private::call_handle(ptr, len, $handler)
        }
    };
}

/// Defines `callHandleJSON` with a handler `Fn(&json::Value) -> Result<T, E>`, and `callHandle`
/// with the same handler (so that `capsule run` reaches it); input that is not JSON fails.
#[macro_export]
macro_rules! set_handle_json {
    ($handler:expr) => {
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "C" fn callHandleJSON(ptr: *const u8, len: usize) -> u64 {
            $crate::__private::call_handle_json(ptr, len, $handler)
        }
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "C" fn callHandle(ptr: *const u8, len: usize) -> u64 {
            callHandleJSON(ptr, len)
        }
    };
}

/// Defines `callHandleHTTP` with a handler `Fn(&Request) -> Result<Response, E>`: every request
/// of `capsule serve`; an `Err` makes the runner answer 500 with its text.
#[macro_export]
macro_rules! set_handle_http {
    ($handler:expr) => {
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "C" fn callHandleHTTP(ptr: *const u8, len: usize) -> u64 {
            $crate::__private::call_handle_http(ptr, len, $handler)
        }
    };
}

/// Defines `callHandleMessage` (capsule-abi.md §8) with a handler `Fn(&Message) -> Result<T, E>`:
/// every message of `capsule nats` / `capsule mqtt`; the result is published to
/// `message.reply_to` when set, an `Err` is logged and sent back with `Capsule-Error: true`.
#[macro_export]
macro_rules! set_handle_message {
    ($handler:expr) => {
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "C" fn callHandleMessage(ptr: *const u8, len: usize) -> u64 {
            $crate::__private::call_handle_message(ptr, len, $handler)
        }
    };
}
