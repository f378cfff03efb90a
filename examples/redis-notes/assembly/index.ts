// redis-notes: notes kept in Redis (hostRedisSet/Get/Del/Keys).
//   PUT or POST /notes/<name> (body = the note)  → {"saved":"<name>"}
//   GET /notes/<name>                            → the note (text/plain), 404 when there is none
//   DELETE /notes/<name>                         → {"deleted":"<name>"}
//   GET /notes                                   → {"notes":["<name>",…]}
// Redis failures (server down, lost connection) come back as F results: answered 503 here.
import {
  setHandleHTTP, redisSet, redisGet, redisDel, redisKeys, Request, Response, JSONValue, Result,
} from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

const PREFIX = "note:";

function unavailable(r: Result): Response {
  return Response.json(JSONValue.object().setString("error", r.error), 503);
}

setHandleHTTP((req: Request): Response => {
  let path = req.path;
  let q = path.indexOf("?");
  if (q >= 0) path = path.substring(0, q);
  if (path == "/notes" || path == "/notes/") {
    let r = redisKeys(PREFIX + "*");
    if (!r.ok) return unavailable(r);
    let names = JSONValue.array();
    let keys = r.keys();
    for (let i = 0; i < keys.length; i++) names.push(JSONValue.string(keys[i].substring(PREFIX.length)));
    return Response.json(JSONValue.object().set("notes", names));
  }
  if (!path.startsWith("/notes/")) return Response.json(JSONValue.object().setString("error", "try /notes or /notes/<name>"), 404);
  let name = path.substring(7);
  if (req.method == "PUT" || req.method == "POST") {
    let r = redisSet(PREFIX + name, req.body);
    if (!r.ok) return unavailable(r);
    return Response.json(JSONValue.object().setString("saved", name));
  }
  if (req.method == "DELETE") {
    let r = redisDel(PREFIX + name);
    if (!r.ok) return unavailable(r);
    return Response.json(JSONValue.object().setString("deleted", name));
  }
  let r = redisGet(PREFIX + name);
  if (r.ok) return Response.text(r.value);
  if (r.error == "redis: nil") return Response.json(JSONValue.object().setString("error", "no note " + name), 404);
  return unavailable(r);
});
