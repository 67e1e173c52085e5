"""``python -m pgha.testing.constraints``: print the pinned runtime dependencies of pgha (the
closure of its requirements, without the test extra) as installed in this environment, for the
container image's ``constraints.txt``: the image then runs the versions the tests ran."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement

HEADER = ("# Runtime dependencies of pgha pinned to the versions its tests ran with; the image installs\n"
          "# with `pip install -c constraints.txt`. Regenerate: ./dev constraints\n")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "pgha") -> dict[str, str]:
    """Installed name → version of everything ``root`` needs at run time."""
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        if _key(name) != _key(root):
            found[_key(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in wanted):
                continue
            if _key(req.name) not in found:
                todo.append((req.name, frozenset(req.extras)))
    return found


def render() -> str:
    return HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(closure().items()))


if __name__ == "__main__":
    print(render(), end="")
