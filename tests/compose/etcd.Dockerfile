# Stand-in for quay.io/coreos/etcd (no registry on the build machines): Debian's etcd, configured
# by the same ETCD_* variables, with etcdctl for the healthcheck.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server etcd-client \
 && rm -rf /var/lib/apt/lists/*
RUN ln -s /usr/bin/etcd /usr/local/bin/etcd && ln -s /usr/bin/etcdctl /usr/local/bin/etcdctl
CMD ["/usr/local/bin/etcd"]
