#!/bin/sh
# HTTP liveness probe for the image's HEALTHCHECK and the compose healthchecks, without curl or
# wget: Node's fetch, 4 s per request, exit 0 when a URL answers 2xx, else 1 with the reason.
#
#   lms-healthcheck [URL...]
#
# With no URL: $HEALTHCHECK_URL, else the API's /health (127.0.0.1:$PORT, 8000) and the worker's
# (127.0.0.1:$WORKER_METRICS_PORT, 9464), healthy when either answers. Only one of them listens in
# a container, so `docker run IMAGE api` and `docker run IMAGE worker` need no configuration.
set -eu

if [ "$#" -eq 0 ]; then
  if [ -n "${HEALTHCHECK_URL:-}" ]; then
    set -- "$HEALTHCHECK_URL"
  else
    set -- "http://127.0.0.1:${PORT:-8000}/health" "http://127.0.0.1:${WORKER_METRICS_PORT:-9464}/health"
  fi
fi

exec node -e '
const probe = async (url) => {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(4000) });
    if (!response.ok) throw new Error(`answered ${response.status}`);
  } catch (error) {
    throw new Error(`${url}: ${error.cause?.message ?? error.message}`);
  }
};
Promise.any(process.argv.slice(1).map(probe)).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`unhealthy: ${error.errors.map((reason) => reason.message).join("; ")}\n`);
    process.exit(1);
  },
);
' "$@"
