#!/usr/bin/env bash
# Idempotent set-up used by `npm run demo`, `npm test`, `npm run bench` and .ci/run:
#   1. Debian toolchains for the guest examples and the test servers (when apt-get can run),
#   2. npm packages (which bring a Node.js 24 into node_modules/.bin when the machine's is older),
#   3. the guest modules built from source (examples/, test/fixtures/); the Go ones need Go >= 1.24
#      on PATH (Debian's golang is older: https://go.dev/dl), their modules come from the Go module
#      proxy (go mod download), and without it they are skipped with one printed line.
# Set CAPSULE_SKIP_APT=1 to never call apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

# --- 1. Debian packages --------------------------------------------------------------------
APT_PACKAGES=(clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt rustc libstd-rust-dev-wasm32
              redis-server nats-server mosquitto openssl wrk)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "${CAPSULE_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  fi
  if [ "$SUDO" = none ]; then
    say "missing Debian packages (${missing[*]}); not root and no sudo: the C/Rust guests and broker tests will be skipped"
  else
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2 \
      || say "apt-get install failed; continuing with what is there"
  fi
fi

# --- 2. npm packages -----------------------------------------------------------------------
if [ ! -f node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ] \
   || { [ -f package-lock.json ] && [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  say "installing npm packages (npm ci: exactly the committed lock)"
  # couchbase is pinned to a release whose every platform package is in the registry, so the
  # lock is complete and `npm ci` (what CI systems run) accepts it.
  npm ci --no-audit --no-fund >&2
fi
NODE=node_modules/.bin/node
# What Capsule needs of Node is JSPI on by default (WebAssembly.Suspending: Node >= 24.20), so
# that is what is checked, the same test the launcher makes.
if ! "$NODE" -e 'process.exit(typeof WebAssembly.Suspending === "function" ? 0 : 1)' 2>/dev/null; then
  say "node_modules/.bin/node is not a Node.js >= 24.20 (JSPI); reinstalling the node package"
  npm install --no-save --no-audit --no-fund 'node@^24.20.0' >&2
fi

# --- 3. guests -----------------------------------------------------------------------------
"$NODE" scripts/build-guests.ts

# --- 4. the code of worker threads, of capsule run and of capsule serve in few files (scripts/build-bundle.ts; used while newer than its sources) ---
"$NODE" scripts/build-bundle.ts
