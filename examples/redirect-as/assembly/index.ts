// redirect-as: an AssemblyScript WASI command (with @assemblyscript/wasi-shim) that answers with
// a CGI redirect: `Status: 302` and a `Location` header (wasi-cgi.md §6). The target is the
// request path below the function's route (PATH_INFO), on https://example.com by default.
//   curl -i localhost:8080/redirect-as/docs   →   302, Location: https://example.com/docs

const env = process.env;
const base = env.has("REDIRECT_BASE") ? env.get("REDIRECT_BASE") : "https://example.com";
const rest = env.has("PATH_INFO") ? env.get("PATH_INFO") : "";
const query = env.has("QUERY_STRING") ? env.get("QUERY_STRING") : "";
let target = base + (rest.length > 0 ? rest : "/");
if (query.length > 0) target += "?" + query;
process.stdout.write("Status: 302 Found\nLocation: " + target + "\nContent-Type: text/plain; charset=utf-8\n\nmoved to " + target + "\n");
