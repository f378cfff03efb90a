;; {{name}}: an HTTP function in WebAssembly text (capsule serve {{name}}.wasm): every request gets
;; 200 {"message":"👋 Hello from {{name}}"}. The request arrives as JSON (capsule-abi.md §5.3:
;; Body, URI, Method, Headers); the answer is S + the response JSON of §5.4 (a TextBody is base64).
(module
  ;; The host copies arguments in through malloc and reads results out of memory. This malloc
  ;; is a bump allocator that never frees: every call gets a fresh instance (capsule run, and
  ;; capsule serve without --reuse), so nothing leaks.
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func $malloc (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "allocateBuffer") (param $n i32) (result i32) (call $malloc (local.get $n)))
  ;; length of a NUL-terminated string
  (func $strlen (param $p i32) (result i32)
    (local $i i32)
    (block $end (loop $next
      (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $i))
  ;; an export result: ptr << 32 | len
  (func $pack (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u (local.get $n))))
  ;; a NUL-terminated data string as an export result
  (func $result (param $p i32) (result i64) (call $pack (local.get $p) (call $strlen (local.get $p))))

  (data (i32.const 16) "S{\"JSONBody\":{\"message\":\"👋 Hello from {{name}}\"},\"TextBody\":\"\",\"Headers\":{\"Content-Type\":\"application/json; charset=utf-8\"},\"StatusCode\":200}\00")

  (func (export "callHandleHTTP") (param $request i32) (param $n i32) (result i64)
    (call $result (i32.const 16)))
)
