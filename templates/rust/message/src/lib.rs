//! {{name}}: a message function (capsule nats {{name}}.wasm / capsule mqtt {{name}}.wasm).
//! Each message is logged and answered "echo: <text>"; the runner publishes the answer to the
//! message's reply subject (NATS) or response topic (MQTT) when it has one.

capsule::set_handle_message!(|m: &capsule::Message| -> Result<String, String> {
    let from = if m.subject.is_empty() { &m.topic } else { &m.subject }; // NATS subject or MQTT topic
    capsule::log(&format!("📨 {}: {}", from, m.text()));
    if m.data.is_empty() {
        return Err("nothing to echo".into()); // an error reply (header Capsule-Error: true)
    }
    Ok(format!("echo: {}", m.text()))
});
