# Postgres 15 + the pgha agent, one container per node (docker-compose.yml builds it once, as
# pgha:local). Dependencies are pinned to the versions the tests ran with (constraints.txt).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 pgbouncer python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md constraints.txt /opt/pgha/
COPY pgha /opt/pgha/pgha
# A build behind a TLS-inspecting proxy passes the CA bundle that trusts it (the base image's own
# store, when that proxy's CA was added to it): --build-arg CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
ARG CA_BUNDLE
RUN python3 -m venv /opt/pgha/venv \
 && /opt/pgha/venv/bin/pip install --no-cache-dir ${CA_BUNDLE:+--cert "$CA_BUNDLE"} \
      -c /opt/pgha/constraints.txt /opt/pgha
RUN install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
# `docker exec pg1 pgha list -c /etc/pgha/node.yml` finds the CLI.
ENV PATH=/opt/pgha/venv/bin:$PATH
EXPOSE 5432 8008
HEALTHCHECK --interval=2s --timeout=2s --start-period=60s CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8008/health', timeout=1)" || exit 1
# The agent runs as root only to hand every Postgres command to the postgres user.
ENTRYPOINT ["pgha", "agent", "-c"]
CMD ["/etc/pgha/node.yml"]
