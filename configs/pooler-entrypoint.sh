#!/bin/sh
# The compose pooler service: PgBouncer (as postgres) and the pgha pooler watcher beside it.
set -eu
install -d -o postgres -g postgres /run/pgbouncer
printf '"postgres" "%s"\n' "$PGPASSWORD" >/run/pgbouncer/userlist.txt
printf '[databases]\n' >/run/pgbouncer/databases.ini
chown postgres:postgres /run/pgbouncer/userlist.txt /run/pgbouncer/databases.ini
chmod 600 /run/pgbouncer/userlist.txt
# in the background, its log on the container's output (daemon mode would need a pidfile and a logfile)
pgbouncer -u postgres /etc/pgbouncer/pgbouncer.ini &
exec pgha pooler -c /etc/pgha/pooler.yml
