# Postgres 15 + the pgha agent, one container per node.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /opt/pgha/
COPY pgha /opt/pgha/pgha
RUN python3 -m venv /opt/pgha/venv && /opt/pgha/venv/bin/pip install --no-cache-dir /opt/pgha
RUN install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
EXPOSE 5432 8008
HEALTHCHECK --interval=5s --timeout=2s CMD python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8008/health', timeout=1)" || exit 1
# The agent runs as root only to hand every Postgres command to the postgres user.
ENTRYPOINT ["/opt/pgha/venv/bin/pgha", "agent", "-c"]
CMD ["/etc/pgha/node.yml"]
