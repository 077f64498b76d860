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
    check_endpoints: the endpoint check alone; returns the warnings.
    resolve_replay: the replay's ``llm:`` section with its source resolved.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import sqlalchemy as sa
from pydantic import ValidationError

from populace.storage import Database, StorageError, database_url
from populace.storage.schema import RunRecord

from .config import EndpointSettings, LLMConfig
from .tables import LLMCall
from .types import LLMStopError

if TYPE_CHECKING:
    from ..config import ExperimentConfig

log = logging.getLogger("populace.llm")

# keys a replay never takes from the replayed run: they say what to replay and how
_REPLAY_OWN = frozenset({"backend", "replay", "replay_db", "replay_on_miss"})
_IN_MEMORY = ("sqlite://", "sqlite:///", "sqlite:///:memory:")


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


def check_endpoints(llm: LLMConfig) -> list[str]:
    """Send each endpoint one 1-token request, all at once.

    Returns:
        A warning per endpoint that did not answer (also logged) when another did.

    Raises:
        LLMStopError: when none answered, with each URL and why.
    """
    t0 = time.perf_counter()
    problems = asyncio.run(_check_all(llm))
    down = [(ep.base_url, why) for ep, why in zip(llm.endpoints, problems, strict=True) if why]
    if len(down) == len(llm.endpoints):
        lines = "\n".join(f"  {url}: {why}" for url, why in down)
        raise LLMStopError(
            f"llm: no endpoint answered a 1-token request, so the run did not start "
            f"({time.perf_counter() - t0:.1f} s):\n{lines}\nStart the model server or fix "
            "`base_url`/`model` in the llm: section (llm.check_endpoints: false skips this "
            "check, e.g. when every answer is in the response cache).")
    warnings = [f"llm: endpoint {url} is left out until it answers: {why}"
                for url, why in down]
    for line in warnings:
        log.warning("%s (%d of %d endpoints answered)", line, len(llm.endpoints) - len(down),
                    len(llm.endpoints))
    return warnings


async def _check_all(llm: LLMConfig) -> list[str | None]:
    # connecting should be quick even when answering is not: a host that drops packets
    # fails in seconds, not after the whole request timeout
    timeout = aiohttp.ClientTimeout(total=llm.timeout_s, sock_connect=min(llm.timeout_s, 10.0))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(_check_one(session, llm, ep)
                                           for ep in llm.endpoints)))


async def _check_one(session: aiohttp.ClientSession, llm: LLMConfig,
                     ep: EndpointSettings) -> str | None:
    """None when ``ep`` answers a tiny request, else why it did not."""
    headers = {"Content-Type": "application/json"}
    if ep.api_key_env is not None:
        key = os.environ.get(ep.api_key_env)
        if key is None:
            return f"environment variable {ep.api_key_env} (api_key_env) is not set"
        headers["Authorization"] = f"Bearer {key}"
    body: dict[str, Any] = {"model": llm.model, "max_tokens": 1, "temperature": 0.0}
    if llm.api == "chat":
        url = ep.base_url.rstrip("/") + "/chat/completions"
        body["messages"] = [{"role": "user", "content": "Say OK."}]
    else:
        url = ep.base_url.rstrip("/") + "/completions"
        body["prompt"] = "OK"
    attempts = min(llm.max_attempts, 2)  # a slow server gets a second chance, not four
    why = ""
    for attempt in range(1, attempts + 1):
        try:
            async with session.post(url, json=body, headers=headers) as http:
                text = (await http.text())[:200]
                if http.status in (401, 403):
                    return f"refused the request (HTTP {http.status}: {text}); check api_key_env"
                if http.status == 404:
                    return (f"HTTP 404 ({text}); check that base_url ends in /v1 and that the "
                            f"server serves model {llm.model!r}")
                # any other answer means a server is there; failing requests are counted,
                # retried and, past the llm.max_failed_share, stop the run
                return None
        except TimeoutError:
            why = (f"no answer within {llm.timeout_s:g} s (llm.timeout_s), {attempt} "
                   "attempt(s): the server is down, overloaded or too slow for this timeout "
                   "(raise llm.timeout_s, or lower max_in_flight)")
        except aiohttp.ClientConnectorError as exc:
            return f"cannot connect ({exc.os_error or exc})"
        except aiohttp.ClientError as exc:
            why = f"{type(exc).__name__}: {exc}"
    return why


# -- replay ----------------------------------------------------------------------------------


def resolve_replay(llm: LLMConfig, db_url: str, run_id: int | None) -> LLMConfig:
    """``llm`` with ``replay`` resolved to a run id and the unset keys taken from that run.

    Args:
        llm: a ``backend: replay`` section.
        db_url: this run's database (the replayed run's, unless ``replay_db`` names another).
        run_id: this run, when it is resumed (never its own source); None when it is new.
    """
    url = database_url(llm.replay_db) if llm.replay_db else db_url
    if url in _IN_MEMORY:  # another connection would see another, empty database
        return llm
    own = run_id if url == db_url else None
    try:
        db = Database(url, create=False)
    except StorageError as exc:
        raise LLMStopError(f"llm.replay: cannot open the database of the run to replay: {exc}"
                           ) from None
    try:
        source = _replay_source(db, llm.replay, own)
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


def _replay_source(db: Database, ref: str | int | None, own: int | None) -> dict[str, Any]:
    """The run ``ref`` names: an id, or the newest other completed run of that name (the
    newest other of that name when none completed)."""
    cols = RunRecord.__table__.c
    stmt = sa.select(cols.id, cols.name, cols.status, cols.config)
    by_id = isinstance(ref, int) or str(ref).isdigit()
    if by_id:
        if own is not None and int(ref) == own:  # type: ignore[arg-type]
            raise LLMStopError(f"llm.replay: {ref} is this run itself; name the run whose "
                               "model calls should answer this one's")
        stmt = stmt.where(cols.id == int(ref))  # type: ignore[arg-type]
    else:
        stmt = stmt.where(cols.name == str(ref)).order_by(cols.id.desc())
        if own is not None:
            stmt = stmt.where(cols.id != own)
    try:
        with db.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
    except sa.exc.SQLAlchemyError as exc:
        raise LLMStopError(f"llm.replay: cannot read the runs of {db.shown_url}: "
                           f"{type(exc).__name__}") from None
    if not rows:
        other = "" if by_id else " other"
        raise LLMStopError(f"llm.replay: no{other} run {ref!r} in {db.shown_url} to replay "
                           "(`populace runs --db URL` lists the runs; replay_db names another "
                           "database)")
    done = [r for r in rows if r["status"] == "completed"]
    return done[0] if done else rows[0]


__all__ = ["check_endpoints", "prepare_llm", "resolve_replay"]
