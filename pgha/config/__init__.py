"""Configuration: the local YAML file per node and the dynamic configuration kept in etcd."""

from pgha.config.load import load_local_config, parse_dynamic_config
from pgha.config.model import DynamicConfig, LocalConfig

__all__ = ["DynamicConfig", "LocalConfig", "load_local_config", "parse_dynamic_config"]
