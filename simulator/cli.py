"""The ``populace`` command line.

Commands:
    validate EXP.yaml          check an experiment and report every problem at once
    run EXP.yaml               run it, with a progress bar, into its database
                               (--replay-events DB: with the live events of a recorded run;
                               --set KEY.PATH=VALUE on run and validate: change any key)
    sweep SWEEP.yaml           run an experiment over a grid or sample of parameters x seeds,
                               in parallel, into one database (a restart skips finished runs)
    resume RUN                 continue a run that stopped, from its last checkpoint
    intervene RUN --file F     send events to a running run (applied at its next step)
    interview RUN --question Q ask a running run's agents, at its next step
    pause RUN, resume-live RUN hold a running run between steps; let it go on
    stop RUN                   end a running run after its current step (resume continues it)
    runs                       list the runs in a database (or in ./populace_runs)
    export RUN --format F      write a run's tables to Parquet or CSV files
    scenarios                  list the installed scenarios
    profiles generate EXP.yaml --out FILE
                               write a language-model biography for every agent

The steering commands (intervene ... stop) queue commands in the run's database; the run's
process takes them between steps (``cli_steering``). With ``--wait`` they report what the run
did with them.

Exit codes: 0 success, 1 run-time error (explained, no traceback; a steering command the run
refused, or did not take within --wait), 2 invalid experiment or usage (a steering command to a
run that is not running), 3 a run stopped by a ``stop`` command (``populace resume`` continues
it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from . import interrupts
from .cli_monitor import DEFAULT_PORT, MonitorProcess, require_monitor
from .cli_steering import (
    STEERING_COMMANDS,
    UsageError,
    add_parsers,
    command_specs,
    send_commands,
)
from .supervisor import supervise, supervised, watch_supervisor
from .version import package_version

DEFAULT_DIR = Path("populace_runs")
STOPPED = 3
"""The exit code of a run that a ``stop`` command ended (resumable)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="populace", description="Large-scale social simulation.")
    p.add_argument("--version", action="version", version=f"populace {package_version()}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check an experiment YAML file")
    v.add_argument("experiment", type=Path)
    _add_set(v)

    r = sub.add_parser("run", help="run an experiment")
    r.add_argument("experiment", type=Path)
    r.add_argument("--db", help="database URL or SQLite path (overrides storage.url)")
    r.add_argument("--steps", type=int, help="override the number of steps")
    r.add_argument("--seed", type=int, help="override the seed")
    _add_set(r)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--runtime", choices=["local", "ray"],
                   help="override runtime.type (ray: shards on Ray, see docs/ray.md)")
    r.add_argument("--shards", type=int, help="override runtime.shards")
    r.add_argument("--monitor", nargs="?", type=int, const=DEFAULT_PORT, metavar="PORT",
                   help=f"watch and steer the run in the web monitor at http://127.0.0.1:PORT "
                   f"(default {DEFAULT_PORT}); it stays up after the run until Ctrl-C (needs "
                   "the webui extra)")
    r.add_argument("--replay-events", metavar="SOURCE",
                   help="schedule the live events (sent by intervene, interview or from "
                   "Python) of a recorded run at the steps it applied them: the run name, "
                   "SQLite file or database URL of that run (see --replay-run)")
    r.add_argument("--replay-run", metavar="RUN",
                   help="the run of --replay-events' database whose events are replayed "
                   "(name or id; default: the newest)")

    s = sub.add_parser("resume", help="continue a run from its last checkpoint")
    s.add_argument("run", help="run name, id (with --db), or a SQLite file")
    s.add_argument("--db", help="database URL or SQLite path")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--runtime", choices=["local", "ray"],
                   help="continue on another runtime (e.g. local after the Ray cluster is gone)")
    s.add_argument("--shards", type=int, help="override runtime.shards")

    ls = sub.add_parser("runs", help="list runs")
    ls.add_argument("--db", help="database URL or SQLite path (default: ./populace_runs/*.sqlite)")

    e = sub.add_parser("export", help="export a run's tables")
    e.add_argument("run", help="run name, id (with --db), or a SQLite file")
    e.add_argument("--db", help="database URL or SQLite path")
    e.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument("--quiet", action="store_true", help="no progress bar")

    w = sub.add_parser(
        "sweep", help="run an experiment over parameters x seeds into one database",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run an experiment over a grid or a seeded random sample of parameters, "
        "each point\nwith several seeds, in worker processes (or Ray tasks), every run into "
        "one database.\nRunning it again skips completed runs and resumes unfinished ones. "
        "See docs/sweeps.md.",
        epilog="Read the results: populace.storage.open_sweep(DB, NAME) (one row per run and "
        "step).")
    w.add_argument("sweep", type=Path, help="the sweep YAML file")
    w.add_argument("--db", help="database URL or SQLite path (overrides storage:)")
    w.add_argument("--workers", type=int, help="runs at once (overrides workers:)")
    w.add_argument("--runtime", choices=["local", "ray"],
                   help="worker processes here, or Ray tasks (overrides runtime.type)")
    _add_set(w, what="the sweep file (e.g. --set seeds=5, --set set.steps=10)")
    w.add_argument("--dry-run", action="store_true",
                   help="validate and list the planned runs and their status; run nothing")
    w.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("scenarios", help="list installed scenarios")
    add_parsers(sub)
    _plugin_commands(sub)

    pr = sub.add_parser("profiles", help="language-model written agent profiles")
    prs = pr.add_subparsers(dest="profiles_command", required=True)
    g = prs.add_parser(
        "generate", help="write a short biography for every agent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build the experiment's population exactly as a run would and ask its "
        "`llm:` model\nfor a 2-4 sentence first-person biography of each agent, consistent "
        "with its\nattributes (which stay the source of truth). Answers are cached in the "
        "database;\nrunning the command again continues where it stopped.",
        epilog="The output has one row per agent: agent_id, every attribute, bio, error (bio "
        "is empty\nand error says why when no valid biography came). Use it as the population "
        "of an\nexperiment (row i is agent i):\n\n  population:\n    file: {path: "
        "profiles.parquet}\n")
    g.add_argument("experiment", type=Path)
    g.add_argument("--out", type=Path, required=True, help="output file: .parquet or .csv")
    g.add_argument("--limit", type=int, help="only the first N agents")
    g.add_argument("--batch", type=int, default=1000,
                   help="agents asked at once and written per chunk (default 1000)")
    g.add_argument("--db", help="database of the response cache (default: storage.url, else "
                   "populace_runs/NAME.sqlite)")
    g.add_argument("--template", type=Path, help="Jinja2 prompt template instead of the "
                   "built-in simulator/llm/templates/profile.j2")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _add_set(parser: argparse.ArgumentParser, what: str = "the experiment") -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        dest="assignments",
                        help=f"set any key of {what} by its dotted path, value as in YAML "
                        "(e.g. --set policy.params.backfire=0.2); repeatable; checked like "
                        "the file")


def _assignments(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set`` values as dotted overrides (a key given twice: the last wins)."""
    from .sweep import parse_assignment

    try:
        return dict(parse_assignment(a) for a in args.assignments)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _plugin_commands(sub: Any) -> None:
    """Commands that installed extras add (entry points ``populace.commands``: a function
    that adds its subparsers, each with a ``handler``), e.g. ``serve`` from the web interface;
    one whose extra is missing says how to install it."""
    for ep in entry_points(group="populace.commands"):
        try:
            register = ep.load()
        except ImportError as err:
            missing = sub.add_parser(ep.name, help=f"(needs an extra: {err.name})")
            missing.set_defaults(handler=_needs_extra(ep.name, str(err.name)))
            continue
        register(sub)


def _needs_extra(command: str, module: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        raise UsageError(f"populace {command} needs {module}, which is not installed: "
                         "pip install 'populace[webui]'")
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``populace`` command."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from sqlalchemy.exc import SQLAlchemyError

    from populace.storage import StorageError

    from .config_errors import ConfigError

    interrupts.reset()
    interrupts.install()
    try:
        try:
            return _dispatch(args)
        except Exception as err:  # a library may have wrapped a KeyboardInterrupt
            if interrupts.was_interrupted(err):
                raise KeyboardInterrupt from err
            raise
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    except UsageError as err:
        print(f"populace: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # only a run or a resume has committed steps to keep (set-up says more in _run)
        writes = args.command in ("run", "resume")
        sent = args.command in STEERING_COMMANDS and args.wait is not None
        print("interrupted" + (": committed steps are kept; `populace resume` continues the "
                               "run" if writes else "")
              + (": completed runs are kept; the same command again resumes the others"
                 if args.command == "sweep" else "")
              + (": commands sent stay queued; the run takes them between steps" if sent
                 else ""), file=sys.stderr)
        return 130
    except (StorageError, ValueError, OSError, KeyError, RuntimeError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SQLAlchemyError as err:
        if args.debug:
            raise
        print(f"error: {_database_message(err, args)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: still a message, the traceback with --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(err).__name__}: {err} (a bug in populace; run again "
              "with --debug for the traceback and report it)", file=sys.stderr)
        return 1


def _database_message(err: Exception, args: argparse.Namespace) -> str:
    """A database error the storage layer did not explain: the driver's first line, and where
    (an empty or foreign database is already a StorageError: storage.Database checks)."""
    text = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    from populace.storage import redact

    where = redact(str(getattr(args, "db", None) or getattr(args, "run", None) or "the database"))
    return f"database {where}: {text}"


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate":
        return _validate(args)
    if args.command == "run":
        return _run(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "resume":
        return _resume(args)
    if args.command == "runs":
        return _runs(args)
    if args.command == "export":
        return _export(args)
    if args.command == "scenarios":
        from .registry import available_scenarios

        print("\n".join(available_scenarios()))
        return 0
    if args.command == "profiles":
        return _profiles(args)
    handler = getattr(args, "handler", None)
    if handler is not None:  # a command an extra added
        return int(handler(args))
    if args.command in STEERING_COMMANDS:
        specs = command_specs(args)  # checked before any database is opened
        url, ref = _resolve(args.run, _url(args.db))
        return send_commands(args, url, ref, specs)
    raise AssertionError(args.command)


def _validate(args: argparse.Namespace) -> int:
    from .config import load_experiment

    exp = load_experiment(args.experiment, overrides=_assignments(args) or None)
    cfg = exp.config
    size = cfg.population.size if cfg.population.size is not None else "from file"
    duration = cfg.model_dump(mode="json", include={"step_duration"})["step_duration"]
    print(f"{args.experiment}: OK — experiment {cfg.name!r}, scenario {cfg.scenario.type}, "
          f"{size} agents, {cfg.steps} steps of {duration}, seed {cfg.seed}")
    return 0


def _url(db: str | None) -> str | None:
    if db is None:
        return None
    from populace.storage import database_url

    return database_url(db)


def _run(args: argparse.Namespace) -> int:
    from .config import load_experiment
    from .engine import Simulation

    overrides = _assignments(args)
    overrides.update({k: v for k, v in (("steps", args.steps), ("seed", args.seed))
                      if v is not None})
    changes = _runtime_changes(args)
    overrides.update({f"runtime.{k}": v for k, v in changes.items()})
    if args.replay_run is not None and args.replay_events is None:
        raise UsageError("--replay-run names a run of --replay-events' database: give "
                         "--replay-events SOURCE too")
    if args.monitor is not None:
        require_monitor()
    exp = load_experiment(args.experiment, overrides=overrides)
    _check_shards(changes, exp.config.runtime.type)
    url = _url(args.db) or exp.config.storage_url()
    if exp.config.runtime.type == "ray" and not supervised():
        return supervise(args.argv, url, exp.config.name, None)  # see supervisor.py
    if supervised():
        watch_supervisor()
    from .progress import SetupProgress

    sim = Simulation(exp, db_url=url)
    if args.replay_events is not None:
        _replay(sim, args.replay_events, args.replay_run)
    sim.stage_hook = SetupProgress(disable=args.quiet)
    print(f"populace: building {exp.config.name!r} ...", file=sys.stderr)
    try:
        sim.start()
    except BaseException as err:
        if not interrupts.was_interrupted(err):
            raise
        # the run row and step 0 are one transaction: interrupted before it, nothing exists
        print("\ninterrupted during set-up: no run was recorded (nothing to resume); run the "
              "same command again to start it", file=sys.stderr)
        return 130
    print(f"populace: run {sim.run_id} in {sim.db.shown_url} "  # type: ignore[union-attr]
          f"(set-up {sim.setup_s:.1f} s)", file=sys.stderr)
    if args.monitor is None:
        return _drive(sim, args.quiet)
    monitor = MonitorProcess(url, int(sim.run_id), args.monitor)  # type: ignore[arg-type]
    try:
        code = _drive(sim, args.quiet)
        monitor.linger()
        return code
    finally:
        monitor.close()


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepMismatchError, headline_table, load_sweep, run_sweep

    overrides = _assignments(args)
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.runtime is not None:
        overrides["runtime.type"] = args.runtime
    sweep = load_sweep(args.sweep, overrides=overrides or None, db=args.db)
    name, runs = sweep.spec.name, len(sweep.runs)
    print(f"populace: sweep {name!r}: {len(sweep.points)} parameter point"
          f"{'s' if len(sweep.points) != 1 else ''} x {len(sweep.seeds)} seed"
          f"{'s' if len(sweep.seeds) != 1 else ''} = {runs} runs of {sweep.experiment.name} "
          f"into {_shown(sweep.db_url)}", file=sys.stderr)
    if args.dry_run:
        status = _planned_status(sweep.db_url, name)
        for run in sweep.runs:
            shown = ", ".join(f"{k}={v!r}" for k, v in run.params.items()) or "-"
            print(f"{run.run_name}\t{status.get(run.run_name, 'planned')}\t{shown}")
        return 0
    # SIGTERM (a scheduler, `kill`) ends a sweep as Ctrl-C does: its runs end interrupted,
    # resumable, and no worker goes on alone
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_sweep(sweep, progress=not args.quiet)
    except SweepMismatchError as err:
        raise UsageError(str(err)) from None
    print(f"populace: sweep {name!r}: {report.text()}")
    table = headline_table(sweep)
    if len(table):
        print("final step, mean ± sd across seeds:")
        print(table.to_string(index=False))
    print(f"load it: populace.storage.open_sweep({_shown(sweep.db_url)!r}, {name!r})")
    return 1 if report.failed else 0


def _shown(url: str) -> str:
    from populace.storage import redact

    return redact(url.removeprefix("sqlite:///"))


def _interrupt(signum: int, frame: Any) -> None:
    interrupts.note()
    raise KeyboardInterrupt


def _planned_status(url: str, name: str) -> dict[str, str]:
    """Run name -> status of the sweep's runs already in the database (none when the database
    or the sweep is not there yet: a dry run creates nothing)."""
    from populace.storage import Database, StorageError
    from populace.storage.sweeps import find_sweep, sweep_progress

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return {}
    try:  # a database the sweep has not written yet (empty, or another program's): no status
        db = Database(url, create=False, read_only=True)
    except StorageError:
        return {}
    try:
        table = sweep_progress(db, int(find_sweep(db, name)["id"]))
    except StorageError:
        return {}
    finally:
        db.dispose()
    return dict(zip(table["run_name"], table["status"], strict=True))


def _replay(sim, source: str, run: str | None) -> None:  # type: ignore[no-untyped-def]
    """Schedule the live events of the recorded run ``run`` of ``source`` on ``sim`` (before
    it starts), saying how many; warn when the two experiments differ (then the re-run is not
    the recorded one)."""
    from populace.storage import Database, Run

    url, ref = _resolve(run, _url(source)) if run is not None else _resolve(source, None)
    db = Database(url, create=False, read_only=True)
    try:
        recorded_run = Run(db, ref)
        info, log = recorded_run.info, recorded_run.events()
    finally:
        db.dispose()
    count = sim.replay_events(url, int(info["id"]))
    late = int(((log["source"] != "yaml") & (log["step"] > sim.config.steps)).sum())
    # where the run is written, and how (storage, runtime), never changes its course
    recorded, current = dict(info["config"]), sim.experiment.to_dict()
    differ = sorted(k for k in set(recorded) | set(current)
                    if k not in ("name", "storage", "runtime")
                    and recorded.get(k) != current.get(k))
    print(f"populace: replaying {count} live event{'s' if count != 1 else ''} of run "
          f"{info['id']} ({info['name']}) in {db.shown_url}", file=sys.stderr)
    if differ:
        print(f"populace: warning: this experiment differs from run {info['id']}'s in "
              f"{', '.join(differ)}: the re-run replays its live events but will not repeat "
              "it exactly", file=sys.stderr)
    if late:
        print(f"populace: warning: {late} of its live event applications came after step "
              f"{sim.config.steps}, this run's last: they do not happen", file=sys.stderr)


def _drive(sim, quiet: bool) -> int:  # type: ignore[no-untyped-def]
    from .engine import RunStopped, resume_command
    from .llm.types import LLMStopError
    from .progress import ProgressBar

    bar = ProgressBar(sim, disable=quiet)
    t0 = time.perf_counter()
    try:
        run = sim.run(progress=bar.update)
    except LLMStopError as err:  # the model did not answer: the run is failed and resumable
        hint = f"\nresume it: {resume_command(sim.config.name, sim.db_url)}"
        print(f"error: {err}{hint if err.resumable else ''}", file=sys.stderr)
        return 1
    except RunStopped as stopped:  # marked "stopped"; its committed steps are kept
        bar.close()
        print(f"populace: run {sim.run_id} {stopped} (of {sim.config.steps}); continue it: "
              f"{resume_command(str(sim.run_id), sim.db_url)}", file=sys.stderr)
        return STOPPED
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    metrics = run.metrics()
    print(f"populace: run {run.id} {run.info['status']}: {run.info['steps_done']} steps in "
          f"{wall:.1f} s; database {sim.db.shown_url}")
    if len(metrics):
        from .registry import headline_metrics

        last = metrics.iloc[-1].dropna()
        print("final metrics: " + ", ".join(
            f"{k}={last[k]:.4g}" for k in headline_metrics(sim.config.scenario.type, last.index)))
    print(f"load it: populace.storage.open_run({sim.db.shown_url!r}, {run.id})")
    if sim.config.llm is None:
        return 0
    from .llm.summary import summary_from_metrics

    # fallbacks make a run look complete: say how many, and fail past the allowed share
    summary = summary_from_metrics(metrics, sim.config.llm.max_fallback_share)
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0


def _resolve(run: str, db: str | None) -> tuple[str, str | None]:
    """(database URL, run reference) from the RUN argument and --db."""
    from populace.storage import StorageError, database_url

    if db is not None:
        return database_url(db), run
    if "://" in run:
        return run, None
    path = Path(run)
    if path.suffix in (".sqlite", ".db", ".sqlite3") or path.is_file():
        if not path.is_file():
            raise StorageError(f"no run database at {path.resolve()}")
        return database_url(path), None
    guess = DEFAULT_DIR / f"{run}.sqlite"
    if guess.is_file():
        return database_url(guess), run
    raise StorageError(
        f"cannot find run {run!r}: no {guess}; give the database with --db URL "
        "or the path of its SQLite file (`populace runs` lists runs)"
    )


def _runtime_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The ``runtime:`` keys given on the command line (--runtime, --shards). Their values are
    checked where they are applied: by the experiment's validation (run) or by
    ``RuntimeConfig.updated`` (resume), each a ConfigError naming ``runtime.KEY``."""
    return {k: v for k, v in (("type", args.runtime), ("shards", args.shards)) if v is not None}


def _check_shards(changes: dict[str, Any], runtime_type: str | None) -> None:
    """--shards only means something on Ray: refuse it rather than ignore it."""
    if "shards" in changes and runtime_type != "ray":
        raise UsageError("--shards needs the Ray runtime: add --runtime ray (or set "
                         "runtime.type: ray in the experiment)")


def _resume(args: argparse.Namespace) -> int:
    from .engine import Simulation

    url, ref = _resolve(args.run, _url(args.db))
    changes = _runtime_changes(args)
    if not supervised():
        from populace.storage import Database
        from populace.storage.runs import find_run

        db = Database(url, create=False)
        try:
            info = find_run(db, ref)
        finally:
            db.dispose()
        from .runtime_config import RuntimeConfig

        # checked here, before a Ray run's supervisor starts a child to resume it
        runtime = RuntimeConfig.model_validate(info["config"].get("runtime") or {}).updated(
            changes, source="command line")
        _check_shards(changes, runtime.type)
        if runtime.type == "ray":
            return supervise(args.argv, url, info["name"], int(info["id"]))
    else:
        watch_supervisor()
    from .progress import SetupProgress

    sim = Simulation.resume(url, ref, runtime=changes or None,
                            stage_hook=SetupProgress(disable=args.quiet))
    print(f"populace: resuming run {sim.run_id} after step {sim.step} in "
          f"{sim.db.shown_url}", file=sys.stderr)  # type: ignore[union-attr]
    return _drive(sim, args.quiet)


def _runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from populace.storage import Database, list_runs

    urls = [_url(args.db)] if args.db else [
        f"sqlite:///{p}" for p in sorted(DEFAULT_DIR.glob("*.sqlite"))]
    if not urls:
        print(f"no runs: {DEFAULT_DIR}/ has no databases (use --db URL)")
        return 0
    frames = []
    for url in urls:
        db = Database(url, create=False, read_only=True)
        frame = list_runs(db)
        frame.insert(0, "database", db.shown_url)
        frames.append(frame)
        db.dispose()
    table = pd.concat(frames, ignore_index=True)
    table["steps"] = table["steps_done"].astype(str) + "/" + table["steps_planned"].astype(str)
    table["wall_s"] = table["wall_s"].round(2)
    cols = ["database", "id", "name", "scenario", "status", "seed", "n_agents", "steps", "wall_s",
            "updated_at"]
    if (table["writer"] != "").any():  # who writes the runs being written now (their lease)
        cols.append("writer")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].to_string(index=False))
    return 0


def _export(args: argparse.Namespace) -> int:
    from populace.storage import export_run, open_run

    url, ref = _resolve(args.run, _url(args.db))
    run = open_run(url, ref)
    files = export_run(run, args.format, args.out, progress=False if args.quiet else None)
    for f in files:
        print(f)
    info = files.run_info
    if info["status"] == "running":  # a snapshot of a run still being written
        print(f"populace: run {info['id']} has status running: the export is one snapshot, "
              f"steps 0-{info['steps_done']} of {info['steps_planned']} in every table",
              file=sys.stderr)
    return 0


def _profiles(args: argparse.Namespace) -> int:
    from .config import load_experiment
    from .llm.profiles import generate_profiles

    exp = load_experiment(args.experiment)
    try:
        report = generate_profiles(
            exp, args.out, limit=args.limit, batch=args.batch, db_url=_url(args.db),
            template=args.template,
            progress=None if args.quiet else lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt as exc:
        kept = f"{exc.rows} agents are kept in {exc.out}" if hasattr(exc, "rows") else (
            "nothing was written")
        print(f"interrupted: {kept}; run the same command again to continue", file=sys.stderr)
        return 130
    print(report.text())
    if report.written and report.counts["failed"] == report.written:
        print("error: no agent got a biography (see the `error` column and the counts above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
