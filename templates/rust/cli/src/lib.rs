//! {{name}}: a CLI function (capsule run {{name}}.wasm Bob Morane → 👋 Hello Bob Morane).

capsule::set_handle!(|params: &[u8]| -> Result<String, String> {
    if params.is_empty() {
        return Err("give me a name: capsule run {{name}}.wasm Bob".into()); // exit code 1
    }
    Ok(format!("👋 Hello {}", String::from_utf8_lossy(params))) // printed by the runner, exit code 0
});
