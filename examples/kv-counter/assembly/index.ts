// kv-counter: seed 004's counter (the wasmCloud "kvcounter" actor). Every request increments the
// counter of its path atomically in the function's KV store (hostKvIncrement, capsule-abi.md §8):
// the memory cache shared by every worker of the process, or Redis (INCRBY) when one is configured.
//   GET /bloggo → {"counter":1}, then {"counter":2}, …
import { setHandleHTTP, kvIncrement, Request, Response, JSONValue } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

setHandleHTTP((req: Request): Response => {
  let path = req.path;
  let q = path.indexOf("?");
  if (q >= 0) path = path.substring(0, q);
  let r = kvIncrement("counter:" + path, 1);
  if (!r.ok) return Response.json(JSONValue.object().setString("error", r.error), 500);
  return Response.json(JSONValue.object().setInteger("counter", I64.parseInt(r.value)));
});
