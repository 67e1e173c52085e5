"""The ``pgha`` command: click commands that only parse, call and print."""
