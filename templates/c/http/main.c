/*
 * {{name}}: an HTTP function (capsule serve {{name}}.wasm).
 *   POST {"name":"Bob Morane"}      →  200 {"message":"👋 Hello Bob Morane"}
 *   a body that is not such a JSON  →  400 {"error":"…"}
 */
#include "capsule.h"

static capsule_response answer(int status, const char *key, const char *value) {
  capsule_buf out = {0};
  capsule_buf_printf(&out, "{\"%s\":", key);
  capsule_buf_append_json_str(&out, value); /* escaped: always valid JSON */
  capsule_buf_append_str(&out, "}");
  capsule_response res = capsule_response_json(status, out.data, out.len);
  capsule_buf_free(&out);
  return res;
}

static capsule_response handle_http(const capsule_request *req) {
  char *name = capsule_json_get_string(req->body, req->body_len, "name", NULL);
  if (!name || !*name) {
    free(name);
    return answer(400, "error", "send a JSON object like {\"name\":\"Bob Morane\"}");
  }
  capsule_buf greeting = {0};
  capsule_buf_printf(&greeting, "👋 Hello %s", name);
  free(name);
  capsule_response res = answer(200, "message", greeting.data);
  capsule_buf_free(&greeting);
  return res;
}

__attribute__((constructor)) static void init(void) { capsule_set_handle_http(handle_http); }
