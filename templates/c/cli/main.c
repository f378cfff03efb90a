/* {{name}}: a CLI function (capsule run {{name}}.wasm Bob Morane → 👋 Hello Bob Morane). */
#include "capsule.h"

static capsule_result handle(const char *params, size_t len) {
  if (len == 0) return capsule_fail("give me a name: capsule run {{name}}.wasm Bob"); /* exit code 1 */
  capsule_buf greeting = {0};
  capsule_buf_append_str(&greeting, "👋 Hello ");
  capsule_buf_append(&greeting, params, len);
  return capsule_ok_buf(&greeting); /* printed by the runner, exit code 0 */
}

__attribute__((constructor)) static void init(void) { capsule_set_handle(handle); }
