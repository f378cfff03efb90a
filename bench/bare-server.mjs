// The bare server of bench/serve-cost.ts (not a test; issue 18): the least a Node.js server can
// do to answer each request with a fresh instance of a gen-2 HTTP module, to measure what is left
// to gain. No deadline, no memory cap, no log line, no metric, no host function but a silent
// `fd_write`, no error handling: a floor, not a server to use. Plain JavaScript, so that its
// threads do not load Node's TypeScript stripper (which costs each thread memory Capsule's
// bundled `serve` does not pay).
//
// THREADS (default 2) worker threads listen on one port with SO_REUSEPORT. Each keeps one
// instance of the module, initialised once, and after every call puts its linear memory and
// mutable globals back as they were after initialisation: a copy, what src/engine/snapshot.ts
// does, here with none of the engine around it (a call that grew the memory leaves a new
// instance instead, as there). The request JSON and the response frame are
// handled in a few lines (capsule-abi.md §5.3, §5.4: `JSONBody` only).
//
// Usage: `node bench/bare-server.mjs <module.wasm> [global export…]`, where the module is one
// `prepareSnapshot` (src/engine/snapshot.ts) rewrote and the names are its plan's globals
// (bench/serve-cost.ts does both). Prints `capsule listening on <url>` as `capsule serve` does.
import { createServer as createNetServer } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/** One thread: the module's instance, reset after each call, behind a node:http server on `port`. */
function serve({ path, globalNames, port }) {
  const { createServer } = process.getBuiltinModule('node:http');
  const { readFileSync } = process.getBuiltinModule('node:fs');
  const module = new WebAssembly.Module(readFileSync(path));
  /** A new instance, initialised, with its mutable globals and what they and its memory hold then. */
  const initialised = () => {
    const ex = new WebAssembly.Instance(module, { wasi_snapshot_preview1: { fd_write: () => 0 } }).exports;
    ex._initialize?.();
    const globals = globalNames.map((name) => ex[name]);
    return { ex, globals, values: globals.map((g) => g.value), initial: new Uint8Array(ex.memory.buffer).slice() };
  };
  let current = initialised();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const { ex, globals, values, initial } = current;
      let headers = '';
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers += `${headers ? ',' : ''}${JSON.stringify(req.rawHeaders[i])}:${JSON.stringify(req.rawHeaders[i + 1])}`;
      const input = JSON.stringify({ Body: Buffer.concat(chunks).toString(), JSONBody: '', TextBody: '', URI: `http://${req.headers.host}${req.url}`, Method: req.method, Headers: headers });
      const size = Buffer.byteLength(input);
      const ptr = ex.malloc(size);
      Buffer.from(ex.memory.buffer).write(input, ptr, size);
      const r = BigInt.asUintN(64, ex.callHandleHTTP(ptr, size));
      const at = Number(r >> 32n);
      const frame = Buffer.from(ex.memory.buffer).toString('utf8', at + 1, at + Number(r & 0xffffffffn));
      if (ex.memory.buffer.byteLength === initial.length) {
        new Uint8Array(ex.memory.buffer).set(initial);
        for (let i = 0; i < globals.length; i++) globals[i].value = values[i];
      } else {
        current = initialised(); // the call grew the memory, which cannot shrink: a new instance, as Capsule takes
      }
      const out = JSON.parse(frame);
      res.writeHead(out.StatusCode ?? 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out.JSONBody ?? {}));
    });
  });
  server.listen({ port, host: '127.0.0.1', reusePort: true }, () => parentPort.postMessage('listening'));
}

if (isMainThread) {
  const [path, ...globalNames] = process.argv.slice(2);
  if (!path) throw new Error('usage: node bench/bare-server.mjs <module.wasm> [global export…]');
  const threads = Number(process.env.THREADS ?? 2);
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`THREADS=${process.env.THREADS}: a whole number of threads, 1 or more`);
  // a free port for the threads to share (picked, then released: a bench, not a server)
  const port = await new Promise((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  let up = 0;
  for (let i = 0; i < threads; i++) {
    new Worker(new URL(import.meta.url), { workerData: { path, globalNames, port } }).once('message', () => {
      if (++up === threads) console.log(`capsule listening on http://127.0.0.1:${port}`);
    });
  }
} else {
  serve(workerData);
}
