"""Populace's web interface: the HTTP service of a run database (``populace serve``) and the
Streamlit monitor (``populace monitor``, and ``populace run X.yaml --monitor``).

Modules:
    service: the FastAPI application (reads, the live stream, control with a token).
    queries: the SQL behind the reads (aggregates and pages, never a whole population).
    cli: the ``serve`` command, found by ``populace`` through an entry point.
    monitor: the Streamlit app (one module per page).
    monitor_cli: the ``monitor`` command, found the same way.

It reads runs through ``populace.storage`` and the simulator's public API; nothing imports it.
"""
