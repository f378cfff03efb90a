// {{name}}: an HTTP function (capsule serve {{name}}.wasm).
//   POST {"name":"Bob Morane"}      →  200 {"message":"👋 Hello Bob Morane"}
//   a body that is not such a JSON  →  400 {"error":"…"}
import { setHandleHTTP, Request, Response, JSON, JSONValue } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

function answer(key: string, value: string, status: i32): Response {
  return Response.json(JSONValue.object().setString(key, value), status);
}

setHandleHTTP((req: Request): Response => {
  let parsed = JSON.tryParse(req.body);
  if (!parsed.ok || !parsed.value!.isObject) {
    return answer("error", "send a JSON object like {\"name\":\"Bob Morane\"}", 400);
  }
  let name = parsed.value!.getString("name");
  if (name.length == 0) return answer("error", "the \"name\" string is missing", 400);
  return answer("message", "👋 Hello " + name, 200);
});
