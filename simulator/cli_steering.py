"""The ``populace`` commands that steer a running run through the control channel in its
database (``populace.storage.control``). Each queues a command that the run's process takes at
its next step boundary, so sending one never blocks a step.

Commands (their parsers join ``populace``'s through ``add_parsers``):
    intervene RUN --file EVENT.yaml    events in the experiment's ``events:`` schema, applied
                                       at the next step unless they give ``at:``
    interview RUN --question TEXT      questions put to agents at the next step
    pause RUN / resume-live RUN        hold the run between two steps / let it go on
    stop RUN                           end the run after its current step; it keeps its
                                       steps and ``populace resume`` continues it

Core objects:
    add_parsers: the commands' argument parsers.
    command_specs: what a command line sends, checked here before any database is opened.
    send_commands: queue them for a running run; with ``--wait``, report what the run did.
    load_event_file: the events of a YAML file, validated (errors name the file, line and field).
    UsageError: arguments that do not fit together, or a run that cannot take commands (exit 2).

Exit codes: 0 sent (with ``--wait``: applied), 1 refused by the run or not taken within
``--wait`` seconds, 2 invalid usage (a malformed event, a run that is not running).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

STEERING_COMMANDS = ("intervene", "interview", "pause", "resume-live", "stop")
"""The steering commands of ``populace``."""

# each command's name in the control channel (`populace resume` continues a stopped run, so
# the command that lets a paused run go on is resume-live)
_CHANNEL = {"intervene": "intervene", "interview": "interview", "pause": "pause",
            "resume-live": "resume", "stop": "stop"}
_SHOWN_ANSWERS = 20  # rows of an interview's answers printed after --wait
_WHERE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$")
_MARKER = re.compile(r"^(---|\.\.\.)\s*(#.*)?$|^%")  # document markers and directives
_OPERATOR = {"=": "==", "==": "==", "!=": "!=", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}


class UsageError(Exception):
    """Command-line arguments that do not fit together, or a run that cannot take a command
    (exit code 2, like argparse's own)."""


# -- parsers -------------------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Add the steering commands to ``populace``'s subparsers (``sub``)."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", help="run name, id (with --db), or a SQLite file")
        p.add_argument("--db", help="database URL or SQLite path")
        p.add_argument("--wait", type=float, metavar="SECONDS",
                       help="wait until the run has applied or refused the command; exit 1 "
                       "if it refused it or did not take it in time")

    i = sub.add_parser(
        "intervene", help="send events to a running run",
        description="Queue events for a running run; it applies them at its next step "
        "(or at the step an event's `at:` names). The file holds one event, a list of "
        "events, or an `events:` list, in the experiment's `events:` schema (`at:` may be "
        "left out).")
    common(i)
    i.add_argument("--file", type=Path, required=True, help="YAML file of the event(s)")

    q = sub.add_parser(
        "interview", help="ask a running run's agents questions",
        description="Queue an interview for a running run: the questions are put to the "
        "chosen agents at its next step, and their answers stored in interview_answers.")
    common(q)
    q.add_argument("--question", action="append", required=True, metavar="TEXT",
                   help="a question (repeat for a questionnaire)")
    q.add_argument("--scale", type=int, nargs=2, metavar=("LOW", "HIGH"),
                   help="answers are integers on this scale (rule agents report their state "
                   "on it); default: free text")
    q.add_argument("--agents", default="all",
                   help="all (default), an agent id, or ids separated by commas")
    q.add_argument("--where", action="append", default=[], metavar="COND",
                   help="keep agents whose attribute or variable matches, e.g. "
                   "occupation=retired, party=A,B (any of), age>=60 (repeatable: all hold)")
    q.add_argument("--sample", type=int, metavar="N",
                   help="then ask a seeded sample of N of them")
    q.add_argument("--report", metavar="VAR",
                   help="the variable rule agents answer scale questions with")
    q.add_argument("--remember", action="store_true",
                   help="the exchange enters language-model agents' memories")
    q.add_argument("--name", help="the interview's name in the events and answers tables")

    for name, text in (("pause", "hold a running run after its current step"),
                       ("resume-live", "let a paused run go on"),
                       ("stop", "end a running run after its current step (populace resume "
                        "continues it)")):
        common(sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + "."))


# -- what is sent --------------------------------------------------------------------------------


def command_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The specs that ``args.command`` sends, checked without the run (one per event; one
    empty spec for pause, resume-live and stop).

    Raises:
        ConfigError: a malformed event file (each problem with its line and field).
        UsageError: interview options that make no valid interview.
    """
    if args.command == "intervene":
        return [{"event": event} for event in load_event_file(args.file)]
    if args.command == "interview":
        return [{"event": interview_event(args)}]
    return [{}]


def load_event_file(path: Path) -> list[dict[str, Any]]:
    """The events of a YAML file (one event, a list of events, or a mapping with an
    ``events:`` list), validated and as JSON-ready dicts; ``at`` is left out where the file
    leaves it out (the run fills in its next step).

    Raises:
        ConfigError: the file cannot be read or parsed, or an event is malformed: every
            problem, with its line and column where the file gives them, and its field.
    """
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from .config_errors import problems_from_validation_error
    from .config_problems import ConfigError, Problem, show_value
    from .events import Event
    from .yaml_positions import load_yaml_text

    source = str(path)
    text = _read_text(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        load_yaml_text(text, source)  # raises the located syntax error
        raise
    listed = isinstance(root, yaml.SequenceNode)
    if listed:
        # the project's YAML loader (positions, size limits) takes a mapping: the list goes
        # under `events:`, two spaces in, and its problems' positions are moved back
        body = "\n".join("" if _MARKER.match(line) else "  " + line
                         for line in text.splitlines())
        try:
            data, marks = load_yaml_text("events:\n" + body, source)
        except ConfigError as err:
            raise ConfigError(_unwrapped(err.problems), source) from None
    elif isinstance(root, yaml.MappingNode):
        data, marks = load_yaml_text(text, source)
    else:
        what = "the file is empty" if root is None else f"got {show_value(yaml.safe_load(text))}"
        raise ConfigError([Problem("", f"{what}: expected an event (a mapping with `kind:`), a "
                                   "list of events, or an `events:` list")], source)
    prefix: tuple[Any, ...] = ()
    items = data
    if "events" in data and "kind" not in data:
        prefix, items = ("events",), data["events"]
        if not isinstance(items, list):
            raise ConfigError([Problem("events", "expected a list of events", *(
                marks.locate_value(prefix) or (None, None)))], source)
    single = not prefix  # the file is one event
    events = [items] if single else list(items)
    if not events:
        raise ConfigError([Problem("" if listed else ".".join(prefix), "no event to send")],
                          source)
    # `at` may be left out (the run fills in its next step); any valid step stands in for it
    filled = [{"at": 1, **e} if isinstance(e, dict) and "at" not in e else e for e in events]
    model: Any = Event if single else list[Event]
    try:
        parsed = TypeAdapter(model).validate_python(filled[0] if single else filled)
    except ValidationError as err:
        problems = problems_from_validation_error(err, marks, loc_prefix=prefix, model=model)
        raise ConfigError(_unwrapped(problems) if listed else problems, source) from None
    out = []
    for given, event in zip(events, [parsed] if single else parsed, strict=True):
        dumped = event.model_dump(mode="json", by_alias=True, exclude_none=True)
        if "at" not in given:
            del dumped["at"]
        out.append(dumped)
    return out


def _read_text(path: Path) -> str:
    """The file's text, read within the project's limit on YAML files."""
    from .config_problems import ConfigError, Problem
    from .yaml_positions import MAX_FILE_BYTES, load_yaml

    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) <= MAX_FILE_BYTES:
            return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    load_yaml(path)  # raises the project's message: not found, too large, not UTF-8, ...
    raise ConfigError([Problem("", "cannot read the file")], str(path))


def _unwrapped(problems: list[Any]) -> list[Any]:
    """Problems of a listed event file read under ``events:`` (see ``load_event_file``), at
    their places in the file itself."""
    return [dataclasses.replace(
        p, path=p.path.removeprefix("events"),
        line=p.line - 1 if p.line is not None and p.line > 1 else p.line,
        column=p.column - 2 if p.column is not None and p.column > 2 else p.column)
        for p in problems]


def interview_event(args: argparse.Namespace) -> dict[str, Any]:
    """The interview event that ``populace interview``'s options describe (without ``at``:
    the run asks at its next step).

    Raises:
        UsageError: an option that makes no valid interview, named.
    """
    from pydantic import ValidationError

    from .events import parse_event

    questions: list[dict[str, Any]] = []
    for text in args.question:
        question: dict[str, Any] = {"text": text}
        if args.scale is not None:
            question.update(answer="scale", low=args.scale[0], high=args.scale[1])
        questions.append(question)
    selector: dict[str, Any] = {}
    ids = _agent_ids(args.agents)
    if ids is not None:
        selector["ids"] = ids
    if args.where:
        selector["where"] = _where(args.where)
    if args.sample is not None:
        selector["sample"] = args.sample
    event: dict[str, Any] = {"kind": "interview", "agents": selector, "questions": questions,
                             "remember": args.remember}
    for key in ("report", "name"):
        if getattr(args, key) is not None:
            event[key] = getattr(args, key)
    try:
        parse_event({"at": 1, **event})
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(p) for p in first["loc"] if p != "interview"]
        message = str((first.get("ctx") or {}).get("error") or first["msg"])
        raise UsageError(f"{_option(loc)}: {message}") from None
    return event


def _agent_ids(text: str) -> list[int] | None:
    """``--agents``: None for every agent, else the ids."""
    if text.strip() == "all":
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--agents {text!r}: give `all`, an agent id, or ids separated by "
                         "commas (e.g. 0,1,2); choose agents by attribute with --where") from None


def _where(conditions: list[str]) -> dict[str, Any]:
    """``--where`` conditions as an event's ``where`` mapping: ``a=x`` (or ``a=x,y``, any of)
    is a plain value (or list); comparisons become ``{op: value}`` mappings."""
    import yaml

    found: dict[str, dict[str, Any]] = {}
    for text in conditions:
        match = _WHERE.match(text)
        if match is None or not match.group(3):
            raise UsageError(f"--where {text!r}: write ATTRIBUTE=VALUE, or a comparison such "
                             "as age>=60 (operators: = != > >= < <=)")
        name, op, raw = match.group(1), _OPERATOR[match.group(2)], match.group(3)
        values = [yaml.safe_load(part.strip()) for part in raw.split(",")]
        if op in ("==", "!=") and len(values) > 1:
            op = "in" if op == "==" else "not_in"
        elif len(values) > 1:
            raise UsageError(f"--where {text!r}: {op} takes one value")
        found.setdefault(name, {})[op] = values if op in ("in", "not_in") else values[0]
    # one equality (or any-of) stays a plain value (or list), as an experiment writes it
    return {name: next(iter(ops.values())) if len(ops) == 1 and set(ops) & {"==", "in"}
            else ops for name, ops in found.items()}


def _option(loc: list[str]) -> str:
    """The ``populace interview`` option behind an interview field's location."""
    head = loc[0] if loc else ""
    if head == "agents":
        part = loc[1] if len(loc) > 1 else ""
        return {"ids": "--agents", "where": "--where", "sample": "--sample"}.get(part, "--agents")
    return {"questions": "--question/--scale", "report": "--report",
            "name": "--name"}.get(head, head or "interview")


# -- sending and waiting -------------------------------------------------------------------------


def send_commands(args: argparse.Namespace, url: str, ref: str | None,
                  specs: list[dict[str, Any]]) -> int:
    """Queue ``specs`` as ``args.command`` commands of the running run ``ref`` in ``url``;
    print their ids and, with ``args.wait``, what became of them. Returns the exit code.

    Raises:
        UsageError: the run is not running, or no process is writing it.
    """
    from populace.storage import Database
    from populace.storage.control import send_command

    db = Database(url, create=False)
    try:
        info = _running_run(db, ref)
        run_id, channel = int(info["id"]), _CHANNEL[args.command]
        sent = []
        for spec in specs:
            cid = send_command(db, run_id, channel, spec)
            sent.append(cid)
            print(f"command {cid} queued: {_describe(args.command, spec)} for run {run_id} "
                  f"({info['name']})")
        if args.wait is None:
            return 0
        deadline = time.monotonic() + max(0.0, args.wait)
        return max(_wait(db, run_id, cid, args, deadline) for cid in sent)
    finally:
        db.dispose()


def _running_run(db: Any, ref: str | None) -> dict[str, Any]:
    """The run ``ref`` (for none: the newest running run), if it is running and a live
    process writes it; else a UsageError that says what to do instead."""
    from populace.storage import StorageError
    from populace.storage.leases import holder_alive, lease_holders
    from populace.storage.runs import find_run

    if "control_commands" not in db.table_names():
        raise StorageError(f"{db.shown_url} has no control channel (control_commands): its "
                           "runs were written by a populace without steering")
    info = find_run(db, ref, prefer_status="running")
    run_id, status = int(info["id"]), info["status"]
    resume = f"`populace resume {run_id} --db {db.shown_url}`"
    what = f"run {run_id} ({info['name']})"
    if status != "running":
        after = ("" if status == "completed"
                 else f"; {resume} continues it, and takes commands while it runs")
        raise UsageError(f"{what} is {status}, not running: commands reach a running run "
                         f"only{after}")
    holder = lease_holders(db).get(run_id)
    if holder is None or not holder_alive(holder):
        # its process died without marking it: a queued command would wait for a resume
        raise UsageError(f"{what} has status running but no process is writing it (its "
                         f"process ended without marking it); {resume} continues it, and "
                         "takes commands while it runs")
    return info


def _describe(command: str, spec: dict[str, Any]) -> str:
    event = spec.get("event")
    if event is None:
        return command
    what = f"{event.get('kind', 'interview')} event"
    if event.get("name"):
        what += f" {event['name']!r}"
    if "at" in event:
        what += f" at {event['at']}"
    return what


def _wait(db: Any, run_id: int, cid: int, args: argparse.Namespace, deadline: float) -> int:
    """Wait for one command until ``deadline``; print what became of it; its exit code."""
    from populace.storage.control import wait_for_command

    try:
        row = wait_for_command(db, cid, max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        print(f"error: command {cid} was not applied within {args.wait:g} s: the run takes "
              "commands between steps, and applies an event at the step it names (a paused "
              "run: at its next step after `populace resume-live`). It stays queued.",
              file=sys.stderr)
        return 1
    if row["status"] == "refused":
        print(f"command {cid} refused: {row['error']}")
        return 1
    step = row["applied_step"]
    if args.command == "pause":
        print(f"command {cid} applied: the run is paused after step {step} "
              "(`populace resume-live` lets it go on)")
    elif args.command == "resume-live":
        print(f"command {cid} applied: the run goes on after step {step}")
    elif args.command == "stop":
        print(f"command {cid} applied: the run stops after step {step}")
    else:
        _print_event(db, run_id, cid, step, args.command == "interview")
    return 0


def _print_event(db: Any, run_id: int, cid: int, step: int, answers: bool) -> None:
    """What an applied event did, from the run's event log (and an interview's answers)."""
    from populace.storage import Run

    run = Run(db, run_id)
    events = run.events()
    rows = events[events["command_id"] == cid].sort_values("step")
    if rows.empty:  # cannot happen for an applied event: its row lands with the mark
        print(f"command {cid} applied at step {step}")
        return
    first = rows.iloc[0]
    print(f"command {cid} applied at step {step}: {first['kind']} event {first['name']!r}: "
          f"{_result_text(json.loads(first['result']))}")
    if answers:
        _print_answers(run, str(first["name"]), int(first["step"]))


def _result_text(result: dict[str, Any]) -> str:
    parts = []
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts) or "done"


def _print_answers(run: Any, event: str, step: int) -> None:
    """An interview's answers as a small table, with each scale question's mean."""
    table = run.interviews()
    mine = table[(table["event"] == event) & (table["step"] == step)]
    if mine.empty:
        print("no answers (no agent matched)")
        return
    cols = ["agent_id", "question", "source", "value", "text", "valid"]
    if mine["answer"].notna().any():
        cols.insert(5, "answer")
    shown = mine[cols].head(_SHOWN_ANSWERS).copy()
    shown["text"] = shown["text"].map(lambda t: t if t is None or len(t) <= 60
                                      else t[:57] + "...")
    print(shown.to_string(index=False))
    if len(mine) > _SHOWN_ANSWERS:
        print(f"... {len(mine) - _SHOWN_ANSWERS} more answers: "
              f"populace.storage.open_run({run.db.shown_url!r}, {run.id}).interviews()")
    for question, group in mine.groupby("question", sort=False):
        values = group["value"].dropna()
        if len(values):
            print(f"{question}: {len(group)} answers, {int(group['valid'].sum())} valid, "
                  f"mean {values.mean():.3g}")


__all__ = ["STEERING_COMMANDS", "UsageError", "add_parsers", "command_specs",
           "interview_event", "load_event_file", "send_commands"]
