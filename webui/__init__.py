"""Populace's web interface: the HTTP service of a run database (``populace serve``; the
monitor of issue 14 will use it).

Modules:
    service: the FastAPI application (reads, the live stream, control with a token).
    queries: the SQL behind the reads (aggregates and pages, never a whole population).
    cli: the ``serve`` command, found by ``populace`` through an entry point.

It reads runs through ``populace.storage`` and the simulator's public API; nothing imports it.
"""
