//! The host functions (capsule-abi.md §5.7 and the §8 extensions) as Rust functions. Each passes
//! its arguments as (address, length) pairs and reads the result the host wrote through
//! `allocateBuffer` (the return-buffer protocol, §2.4).
#![allow(non_snake_case)]

use crate::{json, result, take_result};

#[link(wasm_import_module = "env")]
extern "C" {
    fn hostPrintString(p: *const u8, n: u32) -> u32;
    fn hostLogString(p: *const u8, n: u32) -> u32;
    fn hostGetEnv(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostTalk(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostReadFile(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostWriteFile(p: *const u8, n: u32, q: *const u8, m: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostHTTP(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostCacheSet(p: *const u8, n: u32, q: *const u8, m: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostCacheGet(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostCacheDel(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostCacheKeys(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostRedisSet(p: *const u8, n: u32, q: *const u8, m: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostRedisGet(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostRedisDel(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostRedisKeys(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostCouchBaseQuery(p: *const u8, n: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostKvIncrement(p: *const u8, n: u32, q: *const u8, m: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostNatsPublish(p: *const u8, n: u32, q: *const u8, m: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostNatsRequest(p: *const u8, n: u32, q: *const u8, m: u32, timeout_ms: u32, rp: *mut u32, rn: *mut u32) -> u32;
    fn hostMqttPublish(p: *const u8, n: u32, q: *const u8, m: u32, rp: *mut u32, rn: *mut u32) -> u32;
}

type Fn1 = unsafe extern "C" fn(*const u8, u32, *mut u32, *mut u32) -> u32;
type Fn2 = unsafe extern "C" fn(*const u8, u32, *const u8, u32, *mut u32, *mut u32) -> u32;

fn call1(f: Fn1, a: &[u8]) -> Vec<u8> {
    let (mut p, mut n) = (0u32, 0u32);
    unsafe { f(a.as_ptr(), a.len() as u32, &mut p, &mut n) };
    take_result(p, n)
}

fn call2(f: Fn2, a: &[u8], b: &[u8]) -> Vec<u8> {
    let (mut p, mut n) = (0u32, 0u32);
    unsafe { f(a.as_ptr(), a.len() as u32, b.as_ptr(), b.len() as u32, &mut p, &mut n) };
    take_result(p, n)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes `message` and a newline to the function's standard output (hostPrintString).
pub fn print(message: &str) {
    unsafe { hostPrintString(message.as_ptr(), message.len() as u32) };
}

/// Writes `message` as one line of the function's log (hostLogString).
pub fn log(message: &str) {
    unsafe { hostLogString(message.as_ptr(), message.len() as u32) };
}

/// The value of environment variable `name` as the runner passes it, "" when unset (hostGetEnv).
pub fn get_env(name: &str) -> String {
    text(call1(hostGetEnv, name.as_bytes()))
}

/// Sends a message to the host and returns its answer (hostTalk, a demo function).
pub fn talk(message: &str) -> String {
    text(call1(hostTalk, message.as_bytes()))
}

/// The content of a file in a directory granted with --dir (hostReadFile).
pub fn read_file(path: &str) -> Result<Vec<u8>, String> {
    result(call1(hostReadFile, path.as_bytes()))
}

/// Creates or replaces a file (mode 0644) in a directory granted with --dir (hostWriteFile).
pub fn write_file(path: &str, content: &[u8]) -> Result<(), String> {
    result(call2(hostWriteFile, path.as_bytes(), content)).map(|_| ())
}

/// Stores `value` under `key` in the runner's memory cache (hostCacheSet).
pub fn cache_set(key: &str, value: &[u8]) -> Result<(), String> {
    result(call2(hostCacheSet, key.as_bytes(), value)).map(|_| ())
}

/// The value under `key` in the memory cache; `Err("key not found")` when there is none.
pub fn cache_get(key: &str) -> Result<Vec<u8>, String> {
    result(call1(hostCacheGet, key.as_bytes()))
}

/// Removes `key` from the memory cache (hostCacheDel).
pub fn cache_del(key: &str) -> Result<(), String> {
    result(call1(hostCacheDel, key.as_bytes())).map(|_| ())
}

/// The keys of the memory cache matching `filter`, a glob (`*`, `?`) (hostCacheKeys).
pub fn cache_keys(filter: &str) -> Result<Vec<String>, String> {
    keys(call1(hostCacheKeys, filter.as_bytes()))
}

/// Stores `value` under `key` in Redis (hostRedisSet).
pub fn redis_set(key: &str, value: &[u8]) -> Result<(), String> {
    result(call2(hostRedisSet, key.as_bytes(), value)).map(|_| ())
}

/// The value of `key` in Redis; `Err("redis: nil")` when missing (hostRedisGet).
pub fn redis_get(key: &str) -> Result<Vec<u8>, String> {
    result(call1(hostRedisGet, key.as_bytes()))
}

/// Deletes `key` in Redis (hostRedisDel).
pub fn redis_del(key: &str) -> Result<(), String> {
    result(call1(hostRedisDel, key.as_bytes())).map(|_| ())
}

/// The Redis keys matching `pattern` (Redis KEYS) (hostRedisKeys).
pub fn redis_keys(pattern: &str) -> Result<Vec<String>, String> {
    keys(call1(hostRedisKeys, pattern.as_bytes()))
}

fn keys(frame: Vec<u8>) -> Result<Vec<String>, String> {
    let v = json::parse(&text(result(frame)?))?;
    Ok(v.get("keys").and_then(json::Value::as_array).unwrap_or(&[]).iter().map(json::Value::to_text).collect())
}

/// Runs a N1QL query on the configured CouchBase bucket: the rows as JSON array text.
pub fn couchbase_query(query: &str) -> Result<String, String> {
    result(call1(hostCouchBaseQuery, query.as_bytes())).map(text)
}

/// Adds `delta` to the integer at `key` in the function's KV store (memory, or Redis INCRBY),
/// atomically, and returns the new value; a missing key counts as 0 (hostKvIncrement).
pub fn kv_increment(key: &str, delta: i64) -> Result<i64, String> {
    let value = text(result(call2(hostKvIncrement, key.as_bytes(), delta.to_string().as_bytes()))?);
    value.parse().map_err(|_| format!("the host answered a value that is not an integer: {}", value))
}

/// Publishes `data` on a NATS subject through the connection of `capsule nats` (hostNatsPublish).
pub fn nats_publish(subject: &str, data: &[u8]) -> Result<(), String> {
    result(call2(hostNatsPublish, subject.as_bytes(), data)).map(|_| ())
}

/// Sends `data` on a NATS subject and returns the reply; `Err("timeout")` after `timeout_ms`.
pub fn nats_request(subject: &str, data: &[u8], timeout_ms: u32) -> Result<Vec<u8>, String> {
    let (mut p, mut n) = (0u32, 0u32);
    unsafe { hostNatsRequest(subject.as_ptr(), subject.len() as u32, data.as_ptr(), data.len() as u32, timeout_ms, &mut p, &mut n) };
    result(take_result(p, n))
}

/// Publishes `data` on an MQTT topic through the client of `capsule mqtt` (hostMqttPublish).
pub fn mqtt_publish(topic: &str, data: &[u8]) -> Result<(), String> {
    result(call2(hostMqttPublish, topic.as_bytes(), data)).map(|_| ())
}

/// A response of `http`.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status_code: u16,
    /// Response headers: name → values.
    pub headers: Vec<(String, Vec<String>)>,
    /// The body, parsed, when the response is JSON.
    pub json_body: Option<json::Value>,
    /// The body of any other response.
    pub text_body: String,
}

/// Sends an HTTP request through the host (hostHTTP; the host must be allowed with
/// --allowed-hosts). `body` is sent as text; see `http_json` for a JSON body.
pub fn http(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Result<HttpResponse, String> {
    send(method, uri, headers, "{}", body)
}

/// Sends an HTTP request with a JSON body (raw JSON text) through the host (hostHTTP).
pub fn http_json(method: &str, uri: &str, headers: &[(&str, &str)], json_body: &str) -> Result<HttpResponse, String> {
    json::parse(json_body).map_err(|e| format!("the request JSON body is not valid JSON: {}", e))?;
    send(method, uri, headers, json_body, "")
}

fn send(method: &str, uri: &str, headers: &[(&str, &str)], json_body: &str, text_body: &str) -> Result<HttpResponse, String> {
    let headers = json::Value::Object(headers.iter().map(|(k, v)| (k.to_string(), json::Value::from(*v))).collect());
    let request = format!(
        "{{\"JSONBody\":{},\"TextBody\":{},\"URI\":{},\"Method\":{},\"Headers\":{}}}",
        json_body, json::quote(text_body), json::quote(uri), json::quote(method), headers.to_json()
    );
    let v = json::parse(&text(result(call1(hostHTTP, request.as_bytes()))?))?;
    let headers = match v.get("Headers") {
        Some(json::Value::Object(members)) => members
            .iter()
            .map(|(k, v)| (k.clone(), v.as_array().map(|a| a.iter().map(json::Value::to_text).collect()).unwrap_or_else(|| vec![v.to_text()])))
            .collect(),
        _ => Vec::new(),
    };
    Ok(HttpResponse {
        status_code: v.get("StatusCode").and_then(json::Value::as_i64).unwrap_or(0) as u16,
        headers,
        json_body: v.get("JSONBody").cloned(),
        text_body: v.get_str("TextBody").to_string(),
    })
}
