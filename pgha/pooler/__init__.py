"""``pgha pooler``: a watcher beside each PgBouncer (and/or HAProxy) that keeps it pointed at the
writable primary holding the leader key, and pauses it across a role change so that clients
queue instead of failing (``core.poolers`` for the leader's side of the handshake)."""
