// build: -mexec-model=reactor
/*
 * hello-world-c: the hello-world example written in C with the header-only SDK mdk/c/capsule.h.
 *
 *   capsule run --wasm=examples/hello-world-c/hello-world-c.wasm --params="Bob Morane"
 *   📝 module parameter(s): Bob Morane
 *   👋 Hello Bob Morane
 *
 * The module is a WASI reactor (-mexec-model=reactor, first line): the host calls its
 * `_initialize` export once, which runs the C constructors; `init` below registers the handler.
 */
#include "capsule.h"

static capsule_result handle(const char *params, size_t len) {
  capsule_buf line = {0};
  capsule_buf_append_str(&line, "📝 module parameter(s): ");
  capsule_buf_append(&line, params, len);
  capsule_print(line.data, line.len);
  capsule_buf_free(&line);

  capsule_buf greeting = {0};
  capsule_buf_append_str(&greeting, "👋 Hello ");
  capsule_buf_append(&greeting, params, len);
  return capsule_ok_buf(&greeting); /* the S payload; the runner prints it */
}

__attribute__((constructor)) static void init(void) {
  capsule_set_handle(handle);
}
