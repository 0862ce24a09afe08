# Caddy for the production stacks, changed in two ways so it runs as a non-root user with every
# capability dropped (cap_drop: [ALL], no-new-privileges):
# - The official image gives /usr/bin/caddy the file capability cap_net_bind_service=+ep. The
#   kernel refuses to exec such a binary (EPERM) when that capability is outside the bounding set,
#   which cap_drop: [ALL] empties. A copy has no file capabilities. Ports 80/443 are bound through
#   net.ipv4.ip_unprivileged_port_start=0 instead (Docker's default since 20.10; the compose file
#   sets it explicitly).
# - /data (certificates and ACME account keys, a named volume) belongs to uid 1000, so a fresh
#   volume starts with that owner. /config only holds Caddy's autosave and is a tmpfs.
# The Caddyfile is mounted, not copied: ops/caddy/Caddyfile stays the one source.
ARG CADDY_BASE_IMAGE=caddy:2.8.4-alpine
FROM ${CADDY_BASE_IMAGE}
RUN cp /usr/bin/caddy /tmp/caddy \
 && mv /tmp/caddy /usr/bin/caddy \
 && chmod 0755 /usr/bin/caddy \
 && mkdir -p /data/caddy /config/caddy \
 && chown -R 1000:1000 /data /config
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["wget", "-qO", "/dev/null", "http://127.0.0.1:2019/config/"]
