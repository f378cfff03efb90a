//! hello-world: the Capsule CLI example in Rust (the Rust MDK, mdk/rust).
//!
//!     capsule run --wasm=examples/rust/hello-world/hello-world.wasm --params="Bob Morane"

capsule::set_handle!(|params: &[u8]| -> Result<String, String> {
    let name = String::from_utf8_lossy(params);
    capsule::print(&format!("📝 module parameter(s): {}", name));
    Ok(format!("👋 Hello {}", name))
});
