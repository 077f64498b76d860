"""What is checked before a language-model run takes its first step.

A run whose model cannot answer would otherwise "complete" with every decision a fallback, and a
replay that names its source by name would find the run being created. So, before a run starts
or resumes (before its run row is created, for a new run):

- ``backend: openai``: each endpoint gets one 1-token request; an endpoint that does not answer
  within ``timeout_s`` is a warning, none answering is an error naming each URL and why.
- ``backend: replay``: ``replay`` is resolved to one run id (a name means the newest *other*
  completed run of that name), and every key the replay's ``llm:`` section does not set is taken
  from the replayed run's, so that its requests are the recorded ones. The resolved section is
  what the run stores, so that a resume replays the same run.

Core objects:
    prepare_llm: both checks, on an experiment's config (the engine calls it).
    check_endpoints: the endpoint check alone (one probe per endpoint, as the backend sends).
    resolve_replay: the replay's ``llm:`` section with its source resolved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import ValidationError

from populace.storage import Database, StorageError, database_url, find_run

from .backends import endpoint_configs
from .config import LLMConfig
from .tables import LLMCall
from .types import BackendError, LLMStopError

if TYPE_CHECKING:
    from ..config import ExperimentConfig
    from .openai_backend import ProbeResult

log = logging.getLogger("populace.llm")

# keys a replay never takes from the replayed run: they say what to replay and how
_REPLAY_OWN = frozenset({"backend", "replay", "replay_db", "replay_on_miss"})


def prepare_llm(config: ExperimentConfig, db_url: str, run_id: int | None = None) -> None:
    """Check the ``llm:`` section of ``config`` before a run starts (``run_id`` None) or
    resumes; replace it by its resolved form (replay source, inherited keys).

    Raises:
        LLMStopError: no endpoint answers, or the replay source is missing or is this run.
    """
    llm = config.llm
    if llm is None:
        return
    if llm.backend == "replay":
        config.llm = llm = resolve_replay(llm, db_url, run_id)
    if llm.backend == "openai" and llm.check_endpoints:
        check_endpoints(llm)


# -- endpoints -------------------------------------------------------------------------------


def check_endpoints(llm: LLMConfig) -> None:
    """Send each endpoint one 1-token request, all at once; an endpoint that did not answer
    is a warning (logged) when another did.

    Raises:
        LLMStopError: when none answered, with each URL and why; or an endpoint the backend
            would refuse (e.g. a ``base_url`` without ``http://``), before any request.
    """
    from .openai_backend import probe_endpoints

    t0 = time.perf_counter()
    try:
        # a slow server gets a second chance, not four
        results = asyncio.run(probe_endpoints(endpoint_configs(llm), model=llm.model, api=llm.api,
                                              timeout_s=llm.timeout_s,
                                              attempts=min(llm.max_attempts, 2)))
    except BackendError as exc:  # the configuration: the backend would refuse it as well
        raise LLMStopError(f"llm: {exc}, so the run did not start; fix the llm: section's "
                           "endpoints") from None
    down = [(r.base_url, why) for r in results if (why := _why_down(r, llm))]
    if len(down) == len(llm.endpoints):
        lines = "\n".join(f"  {url}: {why}" for url, why in down)
        raise LLMStopError(
            f"llm: no endpoint answered a 1-token request, so the run did not start "
            f"({time.perf_counter() - t0:.1f} s):\n{lines}\nStart the model server or fix "
            "`base_url`/`model` in the llm: section (llm.check_endpoints: false skips this "
            "check, e.g. when every answer is in the response cache).")
    for url, why in down:
        log.warning("llm: endpoint %s is left out until it answers: %s (%d of %d endpoints "
                    "answered)", url, why, len(llm.endpoints) - len(down), len(llm.endpoints))


def _why_down(result: ProbeResult, llm: LLMConfig) -> str | None:
    """None when the endpoint can serve the run, else why not, with what to do."""
    if result.status in (401, 403):
        return (f"refused the request (HTTP {result.status}: {result.text}); check "
                "api_key_env")
    if result.status == 404:
        return (f"HTTP 404 ({result.text}); check that base_url ends in /v1 and that the "
                f"server serves model {llm.model!r}")
    if result.status is not None:
        # any other answer means a server is there; failing requests are counted, retried
        # and, past llm.max_failed_share, stop the run
        return None
    if result.timed_out:
        return (f"{result.text} (llm.timeout_s), {result.attempts} attempt(s): the server is "
                "down, overloaded or too slow for this timeout (raise llm.timeout_s, or lower "
                "max_in_flight)")
    return result.text


# -- replay ----------------------------------------------------------------------------------


def resolve_replay(llm: LLMConfig, db_url: str, run_id: int | None) -> LLMConfig:
    """``llm`` with ``replay`` resolved to a run id and the unset keys taken from that run.

    ``replay`` names a run id, or a name: the newest *other* completed run of that name (the
    newest other of that name when none completed).

    Args:
        llm: a ``backend: replay`` section.
        db_url: this run's database (the replayed run's, unless ``replay_db`` names another).
        run_id: this run, when it is resumed (never its own source); None when it is new.

    Raises:
        LLMStopError: the source database cannot be read, holds no such run (or only this
            one), or the run recorded no model calls.
    """
    url = database_url(llm.replay_db) if llm.replay_db else db_url
    own = run_id if url == db_url else None
    if own is not None and str(llm.replay) == str(own):
        raise LLMStopError(f"llm.replay: {llm.replay} is this run itself; name the run whose "
                           "model calls should answer this one's")
    try:
        # only read: a recorded run on read-only storage can be replayed
        db = Database(url, create=False, read_only=True)
    except StorageError as exc:
        raise LLMStopError(f"llm.replay: cannot open the database of the run to replay: {exc}"
                           ) from None
    try:
        try:
            source = find_run(db, llm.replay, exclude=own, prefer_status="completed")
        except StorageError as exc:
            raise LLMStopError(f"llm.replay: {exc}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise LLMStopError(f"llm.replay: cannot read the runs of {db.shown_url}: "
                               f"{type(exc).__name__}") from None
        t = LLMCall.__table__
        try:
            with db.engine.connect() as conn:
                calls = conn.execute(sa.select(sa.func.count()).select_from(t)
                                     .where(t.c.run_id == source["id"])).scalar_one()
        except sa.exc.SQLAlchemyError:  # no llm_calls table: no run of it asked a model
            calls = 0
    finally:
        db.dispose()
    if not calls:
        raise LLMStopError(f"llm.replay: run {source['id']} ({source['name']}) recorded no "
                           "model calls to replay")
    recorded = dict(source["config"] or {}).get("llm") or {}
    mine = llm.model_dump(mode="json", include=llm.model_fields_set)
    data = {**{k: v for k, v in recorded.items() if k not in _REPLAY_OWN}, **mine,
            "replay": int(source["id"])}
    try:
        resolved = LLMConfig.model_validate(data)
    except ValidationError as exc:  # a section from another version: keep the replay's own
        log.warning("llm.replay: the llm: section of run %s does not validate here (%s); "
                    "replaying with this experiment's", source["id"], exc.errors()[0]["msg"])
        resolved = llm.model_copy(update={"replay": int(source["id"])})
    log.info("replaying run %s (%s)", source["id"], source["name"])
    return resolved


__all__ = ["check_endpoints", "prepare_llm", "resolve_replay"]
