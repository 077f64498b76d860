"""Populace's web monitor (FastAPI service and Streamlit app): not built yet.

It will read runs through ``populace.storage`` and the simulator's public API; nothing imports it.
"""
