// http-client: fetches the URL given as the parameter through the host (hostHTTP) and returns
// the body; prints the status and the content type. The host only reaches hosts on the
// function's allow-list (--allowed-hosts, or allowedHosts in http-client.capsule.yaml).
//   capsule run http-client.wasm http://127.0.0.1:8080/hello
import { setHandle, fail, print, httpRequest, ClientRequest } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

setHandle((url: string): string => {
  if (url.length == 0) return fail("give me a URL");
  let res = httpRequest(new ClientRequest("GET", url).setHeader("Accept", "application/json, text/plain"));
  if (!res.ok) return fail(res.error);
  let type = res.headers.has("Content-Type") ? res.headers.get("Content-Type") : "none";
  print("status " + res.statusCode.toString() + ", content type " + type);
  return res.body;
});
