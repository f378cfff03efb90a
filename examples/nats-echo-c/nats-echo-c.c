// build: -mexec-model=reactor
/*
 * nats-echo-c: the nats-echo example in C with the header-only SDK mdk/c/capsule.h. Each message
 * is logged and answered "echo: <text>"; the runner publishes the answer to the reply subject.
 *
 *   capsule nats --wasm=examples/nats-echo-c/nats-echo-c.wasm --nats-server=nats://127.0.0.1:4222 --subject=echo
 *   nats request echo hello      →  echo: hello
 *
 * CAPSULE_EXPORT_MESSAGE_HANDLER makes the SDK export callHandleMessage (capsule-abi.md §8).
 */
#define CAPSULE_EXPORT_MESSAGE_HANDLER
#include "capsule.h"

static capsule_result handle_message(const capsule_message *m) {
  capsule_buf line = {0};
  capsule_buf_printf(&line, "📨 %s: ", m->subject);
  capsule_buf_append(&line, m->data, m->data_len);
  capsule_log(line.data, line.len);
  capsule_buf_free(&line);
  if (m->data_len == 0) return capsule_fail("nothing to echo"); /* replied with Capsule-Error: true */
  capsule_buf out = {0};
  capsule_buf_append_str(&out, "echo: ");
  capsule_buf_append(&out, m->data, m->data_len);
  return capsule_ok_buf(&out);
}

__attribute__((constructor)) static void init(void) { capsule_set_handle_message(handle_message); }
