"""The live local cluster: etcd, three nodes and HAProxy on loopback until Ctrl-C
(``python -m pgha.testing``, which ``./dev cluster`` runs)."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from pgha.testing.cluster import LocalCluster
from pgha.testing.pooler import Pooled
from pgha.testing.procs import HAProxy


def main() -> None:
    """The live local cluster: etcd, three nodes and HAProxy on loopback until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--dir", default=".local-cluster", help="where data and logs go (wiped first)")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    base = Path(args.dir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    cluster = LocalCluster(base, nodes=args.nodes)
    proxy = HAProxy(base, cluster.nodes)
    pooled = Pooled(cluster, base / "pooler", haproxy_socket=str(proxy.socket))
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
        proxy.start()
        leader = cluster.leader()
        pooled.start(primary_port=leader.pg_port)
        node_cfg = cluster.nodes[0].config_path
        su = cluster.nodes[0].config["postgresql"]["authentication"]["superuser"]
        print(f"""
pgha local cluster is up (scope {cluster.scope}, ttl {cluster.dcs['ttl']}s, data and logs in {base})
  etcd:           {','.join(cluster.etcd.hosts)}
  leader:         {leader.name}
  nodes:          {', '.join(f'{n.name} pg 127.0.0.1:{n.pg_port} api {n.api}' for n in cluster.nodes)}
  writes (HAProxy): psql 'host=127.0.0.1 port={proxy.write_port} user={su['username']} password={su['password']} dbname=postgres'
  writes (PgBouncer, paused across role changes): psql '{pooled.bouncer.dsn()}'
  reads  (HAProxy): psql 'host=127.0.0.1 port={proxy.read_port} user={su['username']} password={su['password']} dbname=postgres'
  members:        .venv/bin/pgha list -c {node_cfg}
  health:         curl -i {leader.api}/primary
Ctrl-C stops everything.""", flush=True)
        while not stop:
            time.sleep(0.5)
    finally:
        print("stopping the local cluster", flush=True)
        pooled.stop()
        proxy.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
