#!/bin/sh
# Entry point of the LMS image (run by tini): the first argument picks the process.
#
#   api [args]        the REST API                      node api/dist/main.js
#   worker [args]     the BullMQ workers                node worker/dist/main.js (--queues, --scheduler)
#   scheduler [args]  backups and drills on schedules   lmsctl schedule run
#   lmsctl [args]     any lmsctl command                e.g. lmsctl migrate, lmsctl backup list
#   anything else     runs as given                     e.g. sh, pg_dump --version
#
# PROD_DATABASE_URL / PROD_REDIS_URL, when set, replace DATABASE_URL / REDIS_URL: the compose files
# point DATABASE_URL / REDIS_URL at the bundled postgres and redis services and let these two name
# managed services instead (Compose cannot express "this variable, else that one" portably).
set -eu

app_dir="${LMS_APP_DIR:-/app}"

# Docker secrets (a Swarm stack, see packages/lmsctl/src/lib/swarm/stack-file.ts): each file
# /run/secrets/NAME whose NAME is a variable name becomes that variable, unless it is set already.
# The secrets then never appear in the service's spec or `docker inspect`.
secrets_dir="${LMS_SECRETS_DIR:-/run/secrets}"
if [ -d "$secrets_dir" ]; then
  for secret_file in "$secrets_dir"/*; do
    [ -f "$secret_file" ] && [ -r "$secret_file" ] || continue
    secret_name="${secret_file##*/}"
    case "$secret_name" in
      '' | [0-9]* | *[!A-Z0-9_]*) continue ;;
    esac
    if [ -z "$(eval "printf '%s' \"\${$secret_name:-}\"")" ]; then
      secret_value="$(cat "$secret_file")"
      export "$secret_name=$secret_value"
    fi
  done
  unset secret_file secret_name secret_value
fi

if [ -n "${PROD_DATABASE_URL:-}" ]; then
  DATABASE_URL="$PROD_DATABASE_URL"
  export DATABASE_URL
fi
if [ -n "${PROD_REDIS_URL:-}" ]; then
  REDIS_URL="$PROD_REDIS_URL"
  export REDIS_URL
fi

if [ "$#" -eq 0 ]; then
  set -- api
fi

case "$1" in
  api)
    shift
    exec node "$app_dir/api/dist/main.js" "$@"
    ;;
  worker)
    shift
    exec node "$app_dir/worker/dist/main.js" "$@"
    ;;
  scheduler)
    shift
    exec node -- "$app_dir/lmsctl/bin/lmsctl.js" schedule run "$@"
    ;;
  lmsctl)
    shift
    # `--`: Node 20 would read a later --env-file as its own (see lmsctl/bin/lmsctl.js).
    exec node -- "$app_dir/lmsctl/bin/lmsctl.js" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
