"""Test and demo harness: real etcd, agents, Postgres and HAProxy on loopback. The agent never
imports it; ``python -m pgha.testing`` runs the live local cluster."""

from pgha.testing.cluster import FAST, LocalCluster, Node, node_config, with_cont
from pgha.testing.procs import (
    EtcdCluster,
    EtcdMember,
    HAProxy,
    free_port,
    http_get,
    http_request,
    require_binary,
    wait_for,
)

__all__ = ["FAST", "EtcdCluster", "EtcdMember", "HAProxy", "LocalCluster", "Node", "free_port", "http_get",
           "http_request", "node_config", "require_binary", "wait_for", "with_cont"]
