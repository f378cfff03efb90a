// hello-you: an HTTP function that reads a JSON body and answers JSON.
//   POST {"name":"Bob Morane","age":42}  →  200 {"message":"Bob Morane 42"}
//   a body that is not a JSON object     →  400 {"error":"…"}
import { setHandleHTTP, Request, Response, JSON, JSONValue } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

function badRequest(message: string): Response {
  return Response.json(JSONValue.object().setString("error", message), 400);
}

setHandleHTTP((req: Request): Response => {
  let parsed = JSON.tryParse(req.body);
  if (!parsed.ok) return badRequest("the body is not valid JSON: " + parsed.error);
  let body = parsed.value!;
  if (!body.isObject) return badRequest("the body must be a JSON object like {\"name\":\"Bob Morane\",\"age\":42}");

  let name = body.getString("name");
  let age = body.get("age");
  // "age" may be a number or a string; print numbers as JSON writes them (42, not 42.0)
  let ageText = age === null ? "" : age.isString ? age.str : age.toString();

  let answer = JSONValue.object().setString("message", name + " " + ageText);
  return Response.json(answer);
});
