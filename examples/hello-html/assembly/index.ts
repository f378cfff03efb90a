// hello-html: an HTTP function that answers an HTML page (any method, any path).
import { setHandleHTTP, Request, Response } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

/** Escapes text for HTML element content and attribute values. */
function escapeHTML(s: string): string {
  return s
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll("\"", "&quot;")
    .replaceAll("'", "&#39;");
}

setHandleHTTP((req: Request): Response => {
  let page = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Hello from Capsule</title>
    <style>body { font-family: sans-serif; margin: 3rem; } code { background: #eee; padding: 0 .3em; }</style>
  </head>
  <body>
    <h1>👋 Hello from Capsule</h1>
    <p>This page was made by a WebAssembly module written in AssemblyScript.</p>
    <p>Request: <code>${escapeHTML(req.method)} ${escapeHTML(req.uri)}</code></p>
  </body>
</html>
`;
  return Response.html(page);
});
