"""Follow-graph generation for Populace: who follows whom among the agents.

Core objects:

* :data:`NetworkConfig` -- pydantic discriminated union on ``generator`` (``barabasi_albert``,
  ``watts_strogatz``, ``erdos_renyi``, ``sbm``, ``edge_list``, ``from_population``, ``none``);
  :func:`parse_network_config` validates a YAML ``network:`` mapping into it.
* :class:`FollowGraph` -- directed edges ``src -> dst`` ("src follows dst") over agents
  ``0..n-1``, without self loops or duplicates, sorted by ``(src, dst)``.
* :func:`build_network` -- builds a :class:`FollowGraph` from a config, the population
  attributes and a numpy random generator (deterministic in its seed).
* :class:`NetworkError` -- raised with a message naming the file/attribute and the fix.

Example YAML::

    network:
      generator: barabasi_albert
      m: 5
      mutual: 0.1
"""

from .build import build_network
from .config import (
    BarabasiAlbertConfig,
    EdgeListConfig,
    ErdosRenyiConfig,
    FromPopulationConfig,
    NetworkConfig,
    NoNetworkConfig,
    SBMConfig,
    WattsStrogatzConfig,
    parse_network_config,
)
from .graph import FollowGraph, NetworkError

__all__ = [
    "BarabasiAlbertConfig",
    "EdgeListConfig",
    "ErdosRenyiConfig",
    "FollowGraph",
    "FromPopulationConfig",
    "NetworkConfig",
    "NetworkError",
    "NoNetworkConfig",
    "SBMConfig",
    "WattsStrogatzConfig",
    "build_network",
    "parse_network_config",
]
