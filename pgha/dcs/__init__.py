"""Distributed configuration store: the etcd v3 client and pgha's cluster keys on top of it."""
