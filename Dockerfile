# Capsule in a container: the npm package, installed from the tarball that `npm pack` writes, on
# Node.js 24 slim; a non-root user; `capsule serve` as the entry point; a health check on
# /capsule/health. From a clone:
#
#   npm ci && npm pack                 # writes capsule-runner-<version>.tgz (builds dist/ first)
#   docker build -t capsule .
#   docker run --rm -p 8080:8080 -v "$PWD/examples/hello-you:/srv/capsule/functions:ro" capsule
#   curl -d '{"name":"Bob","age":42}' localhost:8080/hello-you
#
# The default command serves every <name>.wasm of /srv/capsule/functions at /<name> (and reloads
# them when they change); give one module instead with
#   docker run … capsule /srv/capsule/functions/hello-you.wasm
# Settings come as flags or CAPSULE_* variables (`capsule serve --help`), e.g. -e CAPSULE_WORKERS=4.
FROM node:24-slim

COPY capsule-runner-*.tgz /tmp/capsule-runner.tgz
RUN npm install --global --omit=dev --no-audit --no-fund /tmp/capsule-runner.tgz \
 && rm /tmp/capsule-runner.tgz \
 && npm cache clean --force \
 && groupadd --system capsule \
 && useradd --system --gid capsule --home-dir /srv/capsule --create-home capsule \
 && mkdir -p /srv/capsule/functions \
 && chown -R capsule:capsule /srv/capsule

USER capsule
WORKDIR /srv/capsule
# bind every interface inside the container (the CLI's default is 127.0.0.1)
ENV CAPSULE_HOST=0.0.0.0 \
    CAPSULE_HTTP_PORT=8080 \
    NODE_ENV=production
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CAPSULE_HTTP_PORT || 8080) + '/capsule/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["capsule", "serve"]
CMD ["--functions", "/srv/capsule/functions"]
