"""Test doubles of Populace's outside services, for tests, benchmarks and trying examples out.

Nothing in the engine imports this package, and it imports nothing of the engine: it needs
only Populace's core dependencies (aiohttp, jsonschema, orjson).

Modules:
    llm_server: an OpenAI-compatible HTTP server with seeded answers, latency, capacity and
        injected faults (``python -m populace.simulator.testing.llm_server --port 8011``).
    schema_samples: JSON values drawn from a JSON schema, valid (checked with ``jsonschema``)
        or deliberately not.
"""
