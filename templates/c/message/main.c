/*
 * {{name}}: a message function (capsule nats {{name}}.wasm / capsule mqtt {{name}}.wasm).
 * Each message is logged and answered "echo: <text>"; the runner publishes the answer to the
 * message's reply subject (NATS) or response topic (MQTT) when it has one.
 */
#define CAPSULE_EXPORT_MESSAGE_HANDLER /* export callHandleMessage */
#include "capsule.h"

static capsule_result handle_message(const capsule_message *m) {
  capsule_buf line = {0};
  capsule_buf_printf(&line, "📨 %s: ", *m->subject ? m->subject : m->topic);
  capsule_buf_append(&line, m->data, m->data_len);
  capsule_log(line.data, line.len);
  capsule_buf_free(&line);
  if (m->data_len == 0) return capsule_fail("nothing to echo"); /* an error reply (header Capsule-Error: true) */
  capsule_buf out = {0};
  capsule_buf_append_str(&out, "echo: ");
  capsule_buf_append(&out, m->data, m->data_len);
  return capsule_ok_buf(&out);
}

__attribute__((constructor)) static void init(void) { capsule_set_handle_message(handle_message); }
