"""The web service of a run database (``populace serve``): runs, metrics, agents and steering
over HTTP, for the monitor and for any client. OpenAPI docs at ``/docs``.

Core objects:
    create_app: the FastAPI application over one database.
    ServiceConfig: what it reads and who may steer (the control token, whether reads need it).

Reads go through ``populace.storage`` and the SQL of ``queries``; control (pause, resume,
stop, an intervention, an interview) queues commands in the run's control channel
(``populace.storage.control``), which the run's own process takes between steps. Control needs
the token given at start-up (``Authorization: Bearer <token>``), a 401 otherwise; reads need it
too when ``protect_reads``. A run or agent that is not there is a 404 with a message.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from populace.simulator.events import parse_event
from populace.storage import Database, list_runs
from populace.storage.control import command_row, send_command, wait_for_command

from .queries import MAX_GRAPH_NODES, MAX_PAGE, Condition, NotFound, RunQueries, parse_condition

RUNNING = "running"


@dataclass(frozen=True)
class ServiceConfig:
    """What the service serves and who may steer.

    Attributes:
        db_url: the run database.
        token: the control token (None: control is refused to everyone).
        protect_reads: reads need the token too.
    """

    db_url: str
    token: str | None = None
    protect_reads: bool = False


class InterviewRequest(BaseModel):
    """An interview sent to a running run: the event's fields (``questions``, ``agents``,
    ``report``, ``remember``, ``name``)."""

    questions: Any = Field(description="a question, or a list of questions (text or fields)")
    agents: Any = Field("all", description="all, an id, a list of ids or a selector")
    report: str | None = None
    remember: bool = False
    name: str | None = None


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application serving ``config.db_url``."""
    app = FastAPI(title="Populace", description="Runs, metrics, agents and steering of a "
                  "Populace run database.")
    db = Database(config.db_url, create=False)
    app.state.db = db

    def authorised(request: Request) -> bool:
        if config.token is None:
            return False
        header = request.headers.get("authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        return secrets.compare_digest(given, config.token)

    def control(request: Request) -> None:
        if not authorised(request):
            raise HTTPException(401, "control needs the service's token: "
                                "Authorization: Bearer <token> (populace serve --token)")

    def reads(request: Request) -> None:
        if config.protect_reads and not authorised(request):
            raise HTTPException(401, "this service's reads need its token: "
                                "Authorization: Bearer <token>")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, err: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=404)

    def run_of(run_id: int) -> RunQueries:
        return RunQueries(db, run_id)

    def conditions_of(where: list[str] | None) -> list[Condition]:
        try:
            return [parse_condition(w) for w in where or []]
        except ValueError as err:
            raise HTTPException(422, str(err)) from None

    read = [Depends(reads)]
    steer = [Depends(control)]

    @app.get("/api/runs", dependencies=read)
    def runs() -> list[dict[str, Any]]:
        """Every run of the database: status and progress."""
        frame = list_runs(db)
        return json.loads(frame.to_json(orient="records", date_format="iso"))

    @app.get("/api/runs/{run_id}", dependencies=read)
    def run(run_id: int) -> dict[str, Any]:
        """One run: its row (the experiment as ``config``) and progress."""
        info = dict(run_of(run_id).info)
        info.pop("config_yaml", None)
        return json.loads(json.dumps(info, default=str))

    @app.get("/api/runs/{run_id}/metrics", dependencies=read)
    def metrics(run_id: int, name: Annotated[list[str] | None, Query()] = None,
                since: int = 0) -> dict[str, Any]:
        """Metrics per step after ``since``: ``{"step": [...], "<metric>": [...]}``."""
        return run_of(run_id).metrics(name, since)

    @app.get("/api/runs/{run_id}/actions", dependencies=read)
    def actions(run_id: int, since: int = 0) -> dict[str, int]:
        """How many times each action was taken (after step ``since``)."""
        return run_of(run_id).action_mix(since)

    @app.get("/api/runs/{run_id}/attributes/{name}", dependencies=read)
    def attribute(run_id: int, name: str,
                  bins: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
        """The distribution of one agent attribute, computed in the database."""
        return run_of(run_id).histogram(name, bins)

    @app.get("/api/runs/{run_id}/agents", dependencies=read)
    def agents(run_id: int, where: Annotated[list[str] | None, Query()] = None,
               offset: Annotated[int, Query(ge=0)] = 0,
               limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> dict[str, Any]:
        """Agents whose attributes meet every ``where`` (e.g. ``age>=30``), a page at a time."""
        return run_of(run_id).agents(conditions_of(where), offset, limit)

    @app.get("/api/runs/{run_id}/agents/{agent_id}", dependencies=read)
    def agent(run_id: int, agent_id: int,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200) -> dict[str, Any]:
        """One agent: attributes, its newest actions, interview answers, memories, and its
        exchanges with the model."""
        return run_of(run_id).agent(agent_id, limit)

    @app.get("/api/runs/{run_id}/llm", dependencies=read)
    def llm(run_id: int) -> dict[str, Any]:
        """Language-model use: requests, tokens and cost summed over steps; the rates of
        invalid answers, fallbacks, cache hits and errors; latency p50/p95 (median over
        steps)."""
        return run_of(run_id).llm_health()

    @app.get("/api/runs/{run_id}/graph", dependencies=read)
    def graph(run_id: int, center: int | None = None,
              hops: Annotated[int, Query(ge=1, le=3)] = 1,
              max_nodes: Annotated[int, Query(ge=1, le=MAX_GRAPH_NODES)] = 500,
              color: str | None = None, seed: int = 0) -> dict[str, Any]:
        """A sampled subgraph of the run's network: around agent ``center`` (``hops`` deep),
        or around a seeded sample of agents; nodes carry attribute ``color`` as ``value``."""
        return run_of(run_id).graph(center, hops, max_nodes, color, seed)

    @app.get("/api/runs/{run_id}/tables", dependencies=read)
    def tables(run_id: int) -> list[str]:
        """The scenario's tables (posts, orders, ...) and the steering tables."""
        return run_of(run_id).tables()

    @app.get("/api/runs/{run_id}/tables/{table}", dependencies=read)
    def table_rows(run_id: int, table: str, where: Annotated[list[str] | None, Query()] = None,
                   offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> dict[str, Any]:
        """A page of one table, newest rows first, filtered by its columns (e.g.
        ``where=root_id=5``: the repost cascade of post 5)."""
        return run_of(run_id).rows(table, conditions_of(where), offset, limit)

    @app.get("/api/runs/{run_id}/stream", dependencies=read)
    async def stream(run_id: int, since: int = 0,
                     poll_s: Annotated[float, Query(gt=0, le=10)] = 0.5) -> StreamingResponse:
        """Server-sent events: one ``step`` event per committed step after ``since`` (its
        summary and metrics), then ``end`` once the run is no longer running."""
        queries = run_of(run_id)

        async def events() -> AsyncIterator[str]:
            last = since
            while True:
                steps = await asyncio.to_thread(queries.steps_after, last)
                for step in steps:
                    values = await asyncio.to_thread(queries.metrics, None, step["step"] - 1)
                    step["metrics"] = {k: v[0] for k, v in values.items()
                                       if k != "step" and v}
                    last = step["step"]
                    yield f"event: step\ndata: {json.dumps(step)}\n\n"
                status = (await asyncio.to_thread(RunQueries, db, run_id)).info["status"]
                if status != RUNNING and not steps:
                    yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                    return
                await asyncio.sleep(poll_s)

        return StreamingResponse(events(), media_type="text/event-stream")

    def send(run_id: int, command: str, spec: dict[str, Any] | None, wait_s: float
             ) -> dict[str, Any]:
        info = run_of(run_id).info
        if info["status"] != RUNNING:
            raise HTTPException(409, f"run {run_id} is {info['status']}, not running: commands "
                                "reach a running run only")
        cid = send_command(db, run_id, command, spec)
        row = command_row(db, cid)
        if wait_s > 0:
            try:
                row = wait_for_command(db, cid, wait_s)
            except TimeoutError:
                row = command_row(db, cid)
        return json.loads(json.dumps(row, default=str))

    @app.post("/api/runs/{run_id}/pause", dependencies=steer)
    def pause(run_id: int,
              wait_s: Annotated[float, Query(ge=0, le=600)] = 0) -> dict[str, Any]:
        """Hold the run after its current step."""
        return send(run_id, "pause", None, wait_s)

    @app.post("/api/runs/{run_id}/resume", dependencies=steer)
    def resume(run_id: int,
               wait_s: Annotated[float, Query(ge=0, le=600)] = 0) -> dict[str, Any]:
        """Let a paused run go on."""
        return send(run_id, "resume", None, wait_s)

    @app.post("/api/runs/{run_id}/stop", dependencies=steer)
    def stop(run_id: int,
             wait_s: Annotated[float, Query(ge=0, le=600)] = 0) -> dict[str, Any]:
        """End the run after its current step (it stays resumable)."""
        return send(run_id, "stop", None, wait_s)

    @app.post("/api/runs/{run_id}/intervene", dependencies=steer)
    def intervene(run_id: int, event: dict[str, Any],
                  wait_s: Annotated[float, Query(ge=0, le=600)] = 0) -> dict[str, Any]:
        """Queue an event (the experiment's ``events:`` schema; ``at`` defaults to the run's
        next step); with ``wait_s``, wait until the run applied or refused it."""
        data = dict(event)
        try:
            parse_event({"at": 1, **data})  # its form, before it is sent
        except ValidationError as err:
            raise HTTPException(422, _first(err)) from None
        return send(run_id, "intervene", {"event": data}, wait_s)

    @app.post("/api/runs/{run_id}/interview", dependencies=steer)
    def interview(run_id: int, body: InterviewRequest,
                  wait_s: Annotated[float, Query(ge=0, le=600)] = 0) -> dict[str, Any]:
        """Queue an interview; with ``wait_s``, wait for it and return the answers."""
        data = body.model_dump(exclude_none=True)
        try:
            parse_event({"kind": "interview", "at": 1, **data})
        except ValidationError as err:
            raise HTTPException(422, _first(err)) from None
        row = send(run_id, "interview", {"event": data}, wait_s)
        if row["status"] == "applied":
            row["answers"] = run_of(run_id).answers(int(row["id"]))
        return row

    return app


def _first(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"][1:])  # without the union's label
    return f"{loc}: {first['msg']}" if loc else first["msg"]


__all__ = ["InterviewRequest", "ServiceConfig", "create_app"]
