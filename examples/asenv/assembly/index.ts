// asenv: an AssemblyScript WASI command (with @assemblyscript/wasi-shim, no Capsule SDK) that
// dumps its arguments and environment, like seed 003's goenv/rustenv/watenv.
//   curl 'localhost:8080/asenv/a/b?x=1'

process.stdout.write("Content-Type: text/plain; charset=utf-8\n\n");
process.stdout.write("Hello from AssemblyScript (WASI)\n\nargv:\n");
const args = process.argv;
for (let i = 0; i < args.length; i++) process.stdout.write("  " + args[i] + "\n");
process.stdout.write("\nenvironment:\n");
const env = process.env;
const keys = env.keys().sort();
for (let i = 0; i < keys.length; i++) process.stdout.write("  " + keys[i] + "=" + env.get(keys[i]) + "\n");
