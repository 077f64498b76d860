"""Population / profile generation for Populace.

Builds the agents of an experiment from the ``population`` section of its YAML: attributes
drawn from seeded, vectorised distributions, optionally on top of agents read from a file
(CSV, JSON, Parquet or OASIS Twitter/Reddit user files).

Core objects:

* :class:`PopulationConfig`, :class:`PopulationFile` - the pydantic configuration models.
* :data:`AttributeSpec` - discriminated union (key ``dist``) of the distribution models.
* :func:`build_population` -> :class:`Population` - the attribute table plus optional follow
  edges and seed posts.
* :class:`PopulationFileError` - raised for missing or invalid population files.

Example::

    import numpy as np
    from populace.simulator.population import PopulationConfig, build_population

    cfg = PopulationConfig.model_validate({
        "size": 1000,
        "attributes": {"age": {"dist": "integer", "low": 18, "high": 80}},
    })
    pop = build_population(cfg, np.random.default_rng(7))
"""

from .config import PopulationConfig, PopulationFile, resolve_order
from .distributions import (
    AttributeSpec,
    BaseAttributeSpec,
    BetaDist,
    CategoricalDist,
    ConditionalDist,
    ConstantDist,
    IntegerDist,
    LogNormalDist,
    NormalDist,
    TruncNormalDist,
    UniformDist,
)
from .errors import PopulationFileError
from .files import load_population_file
from .generator import Population, build_population, draw_newcomers
from .oasis import read_oasis_reddit, read_oasis_twitter

__all__ = [
    "AttributeSpec",
    "BaseAttributeSpec",
    "BetaDist",
    "CategoricalDist",
    "ConditionalDist",
    "ConstantDist",
    "IntegerDist",
    "LogNormalDist",
    "NormalDist",
    "Population",
    "PopulationConfig",
    "PopulationFile",
    "PopulationFileError",
    "TruncNormalDist",
    "UniformDist",
    "build_population",
    "draw_newcomers",
    "load_population_file",
    "read_oasis_reddit",
    "read_oasis_twitter",
    "resolve_order",
]
