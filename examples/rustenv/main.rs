// build: -C strip=symbols
// rustenv: a plain WASI command (std only, no crates) that dumps its arguments and environment,
// like seed 003's rustenv. Served CGI-style by `capsule serve`; `capsule run` works too.
//   curl 'localhost:8080/rustenv?name=Bob'
use std::env;

fn main() {
    // No CGI header block: Capsule answers 200 text/plain with the whole output.
    println!("Hello from Rust (WASI)");
    println!();
    println!("argv:");
    for a in env::args() {
        println!("  {}", a);
    }
    println!();
    println!("environment:");
    let mut vars: Vec<(String, String)> = env::vars().collect();
    vars.sort();
    for (k, v) in vars {
        println!("  {}={}", k, v);
    }
    // The Bendersky FaaS variables, when served over HTTP (wasi-cgi.md §4.2).
    if let Ok(path) = env::var("http_path") {
        println!();
        println!("you asked for {} with {}", path, env::var("http_method").unwrap_or_default());
    }
}
