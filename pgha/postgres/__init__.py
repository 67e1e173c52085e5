"""Controlling the local Postgres instance: processes, configuration files, queries."""
