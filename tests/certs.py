"""A throw-away CA with a server certificate (for 127.0.0.1) and a client certificate."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certs(d: Path) -> dict[str, Path]:
    def run(*args: str, stdin: bytes | None = None) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, input=stdin)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=test-ca")
    # etcd's gateway rejects client certificates carrying a CommonName (it would be taken for a
    # user name), so the client certificate has none.
    for name, subj, ext in (("server", "/CN=server", "subjectAltName=IP:127.0.0.1"),
                            ("client", "/O=pgha", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj)
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", "/dev/stdin", stdin=ext.encode())
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}
