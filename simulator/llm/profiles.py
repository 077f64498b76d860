"""Language-model written profiles: a short biography for every agent, from its attributes.

``populace profiles generate EXP.yaml --out profiles.parquet`` builds the experiment's population
exactly as a run would (same seed, same attributes), asks the experiment's ``llm:`` backend for a
2-4 sentence first-person biography of each agent, and writes one row per agent: ``agent_id``,
every attribute, ``bio`` and ``error``. The structured attributes stay the source of truth: the
prompt lists them and asks for a biography consistent with them; the biography only adds texture.

Use the file as the population of an experiment (file first: row ``i`` is agent ``i``, and the
``bio`` column becomes an attribute that language-model agents see in their profile)::

    population:
      file: {path: profiles.parquet}

Declared ``attributes`` may still be listed: the file's values win on its rows.

How it works:
    * Answers are JSON ``{"bio": "..."}`` (``ProfileAnswer``); its JSON schema is sent so that
      servers with structured output only produce valid JSON. Each answer is validated with
      pydantic; an invalid one gets one repair request. An agent whose biography still fails
      keeps ``bio`` null and says why in ``error`` (``invalid answer: ...`` or ``request failed:
      ...``); nothing is made up.
    * Every answer goes through the response cache (the ``llm_cache`` table of the database:
      ``--db``, else ``storage.url``, else ``populace_runs/<name>.sqlite``), so that asking again
      costs nothing.
    * Agents are asked ``--batch`` at a time and each batch is appended to the output file (CSV:
      in place; Parquet: one row group per batch into a temporary file that replaces the output
      when the command ends, Ctrl-C included; after a hard kill the Parquet output keeps its
      previous rows, and the lost batches come back from the cache). Running the command again
      continues after the agents already in the file; agents whose request failed (server
      down) are asked again, invalid answers are final (the cache holds them); a complete file
      is only reported on. ``--limit N`` asks only for agents ``0 .. N-1``.
    * At the end a diversity report (``diversity_report``) checks that the biographies do not
      collapse into one voice (distinct n-grams, word-set overlap, duplicates, lengths).

Core objects:
    generate_profiles: the whole command as a function; returns a ``ProfileReport``.
    ProfilesInterrupted: the ``KeyboardInterrupt`` raised after the written batches were saved.

The parts of the command live in sibling modules (their public names that callers use are
importable from here too):
    profile_prompts: ProfilePrompts, the Jinja2 prompt template (``templates/profile.j2`` or
        ``--template``).
    profile_requests: ProfileAnswer, the answer's pydantic model; requests, repairs and the
        response cache.
    profile_files: the output file (checking what is there, writing batch by batch).
    profile_diversity: diversity_report / DiversityReport, how varied a set of biographies is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from populace.storage import Database, database_url

from ..population import build_population
from ..rng import RngStreams
from .profile_diversity import COLLAPSE_WARNING, DiversityReport, diversity_report
from .profile_files import (
    EXTRA_COLUMNS,
    CsvOut,
    ParquetOut,
    open_writer,
    output_format,
    read_existing,
)
from .profile_prompts import DEFAULT_TEMPLATE, ProfilePrompts
from .profile_requests import INVALID, REQUEST_FAILED, ProfileAnswer, ProfileAsker, ask_profiles

if TYPE_CHECKING:
    from ..config import Experiment

__all__ = [
    "COLLAPSE_WARNING",
    "DEFAULT_TEMPLATE",
    "INVALID",
    "REQUEST_FAILED",
    "DiversityReport",
    "ProfileAnswer",
    "ProfilePrompts",
    "ProfileReport",
    "ProfilesInterrupted",
    "diversity_report",
    "generate_profiles",
]


class ProfilesInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``generate_profiles``: the batches written so far are kept in ``out``."""

    def __init__(self, out: Path, rows: int) -> None:
        super().__init__(f"interrupted: {rows} agents are kept in {out}")
        self.out, self.rows = out, rows


@dataclass
class ProfileReport:
    """What ``generate_profiles`` did.

    Attributes:
        out: the output file.
        agents: agents the file should hold (the population, or the first ``limit``).
        rows: rows in the file now.
        written: rows written by this call.
        kept: rows that were in the file already and were kept.
        counts: this call's requests: ``requests`` (repairs included), ``cache_hits``,
            ``invalid`` (answers that did not validate), ``repairs``, ``repaired``,
            ``request_errors`` (requests that failed for good), ``failed`` (agents written
            without a bio).
        failed_invalid, failed_requests: rows of the file without a bio, by cause (rows whose
            request failed are asked again by the next call).
        diversity: the diversity of every bio in the file.
        wall_s: seconds.
        cache: the database of the response cache (None when nothing had to be asked).
    """

    out: Path
    agents: int
    rows: int
    written: int
    kept: int
    counts: dict[str, int]
    failed_invalid: int
    failed_requests: int
    diversity: DiversityReport
    wall_s: float
    cache: str | None = None
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The report as the command prints it."""
        c = self.counts
        done = (f"profiles: {self.rows} agents in {self.out} ({self.written} written now, "
                f"{self.kept} already there) in {self.wall_s:.1f} s")
        lines = [done, *self.notes]
        if self.written:
            lines.append(
                f"requests: {c['requests']} ({c['cache_hits']} from the cache"
                f"{f' in {self.cache}' if self.cache else ''}), {c['invalid']} invalid answers, "
                f"{c['repairs']} repairs ({c['repaired']} repaired), {c['request_errors']} "
                f"request errors")
        if self.failed_invalid or self.failed_requests:
            lines.append(
                f"without a bio: {self.failed_invalid + self.failed_requests} agents "
                f"({self.failed_invalid} invalid answers, {self.failed_requests} failed requests"
                f"{': run the command again to ask those again' if self.failed_requests else ''}"
                "); their `error` column says why")
        lines += self.diversity.lines()
        lines.append(f"use it: population: {{file: {{path: {self.out}}}}}  (a relative path "
                     "is read from the experiment file's folder)")
        return "\n".join(lines)


def generate_profiles(exp: Experiment, out: str | Path, *, limit: int | None = None,
                      batch: int = 1000, db_url: str | None = None,
                      template: str | Path | None = None,
                      progress: Callable[[str], None] | None = None) -> ProfileReport:
    """Write a biography for every agent of ``exp``'s population into ``out``.

    Args:
        exp: the experiment (its ``llm:`` section names the model; its population is built
            exactly as a run of it builds it).
        out: output file, ``.parquet`` (or ``.pq``) or ``.csv``; its agents are not asked again.
        limit: only the first ``limit`` agents (ids ``0 .. limit-1``).
        batch: agents asked at once and written per chunk.
        db_url: database of the response cache (default: the experiment's ``storage_url()``).
        template: prompt template instead of ``templates/profile.j2``.
        progress: called with a line of text after every chunk.

    Returns:
        The report (counts and diversity); ``report.text()`` is what the command prints.

    Raises:
        ValueError: no ``llm:`` section, a replay backend, a bad ``out`` extension or template,
            or an output file written for another population.
        ProfilesInterrupted: on Ctrl-C, after the chunks written so far were saved.
    """
    t0 = time.perf_counter()
    cfg = exp.config
    llm = cfg.llm
    if llm is None:
        raise ValueError(
            f"experiment {cfg.name!r} has no `llm:` section: profiles are written by the model "
            "it names; add e.g. llm: {backend: openai, model: NAME, endpoints: [{base_url: "
            "'http://127.0.0.1:8000/v1'}]}")
    if llm.backend == "replay":
        raise ValueError("llm.backend replay answers only the requests of a recorded run; "
                         "profiles need backend openai or vllm (answers are cached anyway)")
    out = Path(out)
    fmt = output_format(out)
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")

    population = build_population(cfg.population, RngStreams(cfg.seed).get("population"),
                                  exp.base_dir)
    attrs = population.attributes
    clash = [c for c in EXTRA_COLUMNS if c in attrs.columns]
    if clash:
        raise ValueError(
            f"the population of {cfg.name!r} already has column(s) {', '.join(clash)} (is "
            "population.file a profiles file?); generate profiles from the experiment whose "
            "population has only the attributes")
    n = len(attrs) if limit is None else min(limit, len(attrs))
    columns = ["agent_id", *map(str, attrs.columns), "bio", "error"]

    existing = read_existing(out, fmt, columns, attrs)
    # agents without a bio are asked again unless their answer was invalid (that is final:
    # the cache would give the same answer); those are the ones whose request failed
    retry = (existing["bio"].isna()
             & ~existing["error"].astype("string").str.startswith(INVALID).fillna(False)
             & (existing["agent_id"] < n))
    kept = existing[~retry]
    done = set(kept["agent_id"].tolist())
    todo = [i for i in range(n) if i not in done]
    counts = dict.fromkeys(("requests", "cache_hits", "invalid", "repairs", "repaired",
                            "request_errors", "failed"), 0)
    notes: list[str] = []
    bios: list[Any] = kept["bio"].tolist()
    errors: list[Any] = kept["error"].tolist()
    written = 0
    cache_shown: str | None = None

    if todo:
        prompts = ProfilePrompts(Path(template) if template is not None else None, {
            "experiment": cfg.name, "scenario": cfg.scenario.type,
            "attribute_names": [str(c) for c in attrs.columns]})
        db = Database(database_url(db_url) if db_url else cfg.storage_url())
        cache_shown = db.shown_url
        asker: ProfileAsker | None = None
        writer: ParquetOut | CsvOut | None = None
        try:
            asker = ProfileAsker(llm, db, cfg.seed, exp.base_dir)
            writer = open_writer(fmt, out, columns, attrs, existing if retry.any() else None, kept,
                             batch)
            for start in range(0, len(todo), batch):
                agents = todo[start:start + batch]
                frame = ask_profiles(agents, attrs, prompts, asker, llm, cfg.seed, counts)
                writer.write(frame)
                written += len(frame)
                bios += frame["bio"].tolist()
                errors += frame["error"].tolist()
                if progress is not None:
                    elapsed = time.perf_counter() - t0
                    progress(f"profiles: {written}/{len(todo)} agents, {elapsed:.1f} s "
                             f"({written / max(elapsed, 1e-9):.1f}/s); cache hits "
                             f"{counts['cache_hits']}, repairs {counts['repairs']}, without a "
                             f"bio {counts['failed']}")
        except KeyboardInterrupt as exc:
            if writer is not None:
                writer.close()
            raise ProfilesInterrupted(out, len(kept) + written) from exc
        finally:
            if writer is not None:
                writer.close()
            if asker is not None:
                asker.close()
            db.dispose()
    else:
        notes.append(f"nothing to do: the {n} agents asked for are all in {out}")

    err = pd.Series(errors, dtype="string")
    no_bio = pd.Series(bios, dtype="string").isna()
    return ProfileReport(
        out=out, agents=n, rows=len(kept) + written, written=written, kept=len(kept),
        counts=counts,
        failed_invalid=int((no_bio & ~err.str.startswith(REQUEST_FAILED).fillna(False)).sum()),
        failed_requests=int((no_bio & err.str.startswith(REQUEST_FAILED).fillna(False)).sum()),
        diversity=diversity_report(bios, seed=cfg.seed), wall_s=time.perf_counter() - t0,
        cache=cache_shown, notes=notes)
