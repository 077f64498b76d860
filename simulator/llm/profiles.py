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
    ProfileAnswer: the answer's pydantic model.
    ProfilePrompts: the Jinja2 prompt template (``templates/profile.j2`` or ``--template``).
    diversity_report / DiversityReport: how varied a set of biographies is.
    ProfilesInterrupted: the ``KeyboardInterrupt`` raised after the written batches were saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..population import build_population
from ..rng import RngStreams
from .answers import parse_decision, repair_messages
from .backends import ResponseCache, make_backend
from .types import Backend, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from populace.storage import Database

    from ..config import Experiment
    from .config import LLMConfig

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "profile.j2"
REQUEST_FAILED = "request failed: "
INVALID = "invalid answer: "
EXTRA_COLUMNS = ("agent_id", "bio", "error")
DISTINCT2_MIN = 0.3
DUPLICATES_MAX = 0.01
COLLAPSE_WARNING = "personas are collapsing into one voice"

__all__ = [
    "DEFAULT_TEMPLATE",
    "DiversityReport",
    "ProfileAnswer",
    "ProfilePrompts",
    "ProfileReport",
    "ProfilesInterrupted",
    "diversity_report",
    "generate_profiles",
]


class ProfileAnswer(BaseModel):
    """The model's answer: one biography."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    bio: str = Field(min_length=20, max_length=800,
                     description="2 to 4 sentences in the first person, consistent with the "
                     "attributes")


class ProfilesInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``generate_profiles``: the batches written so far are kept in ``out``."""

    def __init__(self, out: Path, rows: int) -> None:
        super().__init__(f"interrupted: {rows} agents are kept in {out}")
        self.out, self.rows = out, rows


# ------------------------------------------------------------------------------------- prompts


class ProfilePrompts:
    """The profile prompt: a Jinja2 template with a shared ``system`` block and a ``user`` block.

    Args:
        path: the template file (default ``templates/profile.j2`` next to this module).
        shared: variables of every prompt (``experiment``, ``scenario``, ``attribute_names``);
            the ``system`` block sees only these, as it is rendered once for every agent.

    Raises:
        ValueError: a missing template, a syntax error, or an undefined variable (StrictUndefined).
    """

    def __init__(self, path: Path | None, shared: dict[str, Any]) -> None:
        self.path = Path(path) if path is not None else DEFAULT_TEMPLATE
        if not self.path.is_file():
            raise ValueError(f"profile template {self.path} does not exist (--template)")
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.path.parent)),
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
        try:
            self.template = env.get_template(self.path.name)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"profile template {self.path}, line {exc.lineno}: "
                             f"{exc.message}") from exc
        self.shared = dict(shared)
        self.system = ""
        if "user" in self.template.blocks and "system" in self.template.blocks:
            self.system = self._render("system", self.shared, what="the system block (shared "
                                       "by every agent: it may use only "
                                       f"{', '.join(sorted(self.shared))})")

    def _render(self, block: str | None, variables: dict[str, Any], what: str) -> str:
        try:
            if block is None:
                return self.template.render(variables).strip()
            ctx = self.template.new_context(variables)
            return "".join(self.template.blocks[block](ctx)).strip()
        except jinja2.TemplateError as exc:
            raise ValueError(f"profile template {self.path}, {what}: {exc}") from exc

    def messages(self, agent_id: int, attributes: dict[str, Any]) -> list[dict[str, str]]:
        """The chat messages for one agent (system part first when the template has one)."""
        variables = {**self.shared, "agent_id": agent_id, "attributes": attributes}
        block = "user" if "user" in self.template.blocks else None
        user = self._render(block, variables, what=f"agent {agent_id}")
        if self.system:
            return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        return [{"role": "user", "content": user}]


def _shown(value: Any) -> Any:
    """An attribute value as the prompt shows it (None: left out)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else round(value, 2)
    return value


# ----------------------------------------------------------------------------------- diversity


_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words(text: str) -> list[str]:
    """Lowercase word tokens (letters and digits; inner apostrophes kept)."""
    return _TOKEN.findall(text.lower())


@dataclass
class DiversityReport:
    """How varied a set of biographies is.

    Attributes:
        bios: how many biographies were measured (missing ones are not counted).
        distinct_1, distinct_2, distinct_3: distinct n-grams / all n-grams over every bio
            (lowercase word tokens, n-grams within one bio); 1 means no n-gram repeats.
        mean_jaccard: mean Jaccard similarity of the word sets of every pair in a seeded
            sample of ``jaccard_sample`` bios (0: no shared words, 1: same words).
        duplicate_share: share of bios whose text (whitespace normalised) occurs more than once.
        mean_words, min_words, max_words: length in words.
    """

    bios: int
    distinct_1: float
    distinct_2: float
    distinct_3: float
    mean_jaccard: float
    jaccard_sample: int
    duplicate_share: float
    mean_words: float
    min_words: int
    max_words: int

    @property
    def warning(self) -> str | None:
        """The collapse warning, or None when the biographies look varied enough."""
        reasons = []
        if self.distinct_2 < DISTINCT2_MIN:
            reasons.append(f"distinct-2 {self.distinct_2:.3f} < {DISTINCT2_MIN}")
        if self.duplicate_share > DUPLICATES_MAX:
            reasons.append(f"duplicates {self.duplicate_share:.1%} > {DUPLICATES_MAX:.0%}")
        if not reasons:
            return None
        return (f"warning: {COLLAPSE_WARNING} ({', '.join(reasons)}); vary the prompt, raise "
                "the temperature, or add attributes")

    def lines(self) -> list[str]:
        """The report as printed."""
        if self.bios == 0:
            return ["diversity: no biographies to measure"]
        out = [
            f"diversity of {self.bios} bios: distinct-1 {self.distinct_1:.3f}, distinct-2 "
            f"{self.distinct_2:.3f}, distinct-3 {self.distinct_3:.3f}; mean pairwise Jaccard "
            f"{self.mean_jaccard:.3f} (sample of {self.jaccard_sample}); duplicates "
            f"{self.duplicate_share:.1%}",
            f"length: {self.mean_words:.1f} words on average (min {self.min_words}, max "
            f"{self.max_words})",
        ]
        if self.warning:
            out.append(self.warning)
        return out


def diversity_report(bios: Sequence[str | None], *, sample: int = 500,
                     seed: int = 0) -> DiversityReport:
    """Measure how varied ``bios`` are (missing entries are skipped).

    Args:
        bios: the biographies.
        sample: most bios in the pairwise Jaccard sample (all pairs of the sample are compared).
        seed: seed of the sample.
    """
    texts = [b for b in bios if isinstance(b, str)]
    nan = float("nan")
    if not texts:
        return DiversityReport(0, nan, nan, nan, nan, 0, nan, nan, 0, 0)
    tokens = [words(t) for t in texts]
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    flat = np.empty(int(lengths.sum()), dtype=object)
    flat[:] = list(itertools.chain.from_iterable(tokens))
    ids, vocab = pd.factorize(flat)
    d1, d2, d3 = (_distinct(ids.astype(np.int64), lengths, len(vocab), n) for n in (1, 2, 3))
    jaccard, n_sample = _mean_jaccard(tokens, sample, seed)
    normal = pd.Series([" ".join(t.split()) for t in texts])
    return DiversityReport(
        bios=len(texts), distinct_1=d1, distinct_2=d2, distinct_3=d3, mean_jaccard=jaccard,
        jaccard_sample=n_sample, duplicate_share=float(normal.duplicated(keep=False).mean()),
        mean_words=float(lengths.mean()), min_words=int(lengths.min()),
        max_words=int(lengths.max()))


def _distinct(ids: np.ndarray, lengths: np.ndarray, size: int, n: int) -> float:
    """Distinct n-grams / n-grams, n-grams never crossing from one bio into the next.

    ``ids`` are the words of every bio one after the other (as integers below ``size``).
    """
    m = len(ids) - n + 1
    if m <= 0:
        return float("nan")
    doc = np.repeat(np.arange(len(lengths)), lengths)
    inside = doc[:m] == doc[n - 1:]  # first and last word in one bio: all of them are
    total = int(inside.sum())
    if total == 0:
        return float("nan")
    if max(size, 1) ** n < 2**62:  # pack each n-gram into one integer exactly
        code = ids[:m].copy()
        for k in range(1, n):
            code = code * size + ids[k:k + m]
        grams = pd.unique(code[inside])
    else:  # a vocabulary above 2 million words: compare the n-grams as rows
        rows = np.stack([ids[k:k + m] for k in range(n)], axis=1)[inside]
        grams = np.unique(rows, axis=0)
    return len(grams) / total


def _mean_jaccard(tokens: list[list[str]], sample: int, seed: int) -> tuple[float, int]:
    """Mean Jaccard similarity of word sets over every pair of a seeded sample."""
    n = len(tokens)
    if n < 2 or sample < 2:
        return float("nan"), min(n, max(sample, 0))
    picked = (np.random.default_rng(seed).choice(n, size=sample, replace=False)
              if n > sample else np.arange(n))
    sets = [set(tokens[i]) for i in picked]
    vocab = {w: j for j, w in enumerate(sorted(set().union(*sets)))}
    member = np.zeros((len(sets), max(len(vocab), 1)), dtype=np.float32)
    for row, s in enumerate(sets):
        member[row, [vocab[w] for w in s]] = 1.0
    shared = member @ member.T
    sizes = member.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - shared
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.where(union > 0, shared / union, 1.0)
    upper = np.triu_indices(len(sets), k=1)
    return float(similarity[upper].mean()), len(sets)


# -------------------------------------------------------------------------------------- report


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


# -------------------------------------------------------------------------------- the command


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
    fmt = _format(out)
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

    existing = _read_existing(out, fmt, columns, attrs)
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
        from populace.storage import Database, database_url

        db = Database(database_url(db_url) if db_url else cfg.storage_url())
        cache_shown = db.shown_url
        asker: _Asker | None = None
        writer: _ParquetOut | _CsvOut | None = None
        try:
            asker = _Asker(llm, db, cfg.seed, exp.base_dir)
            writer = _writer(fmt, out, columns, attrs, existing if retry.any() else None, kept,
                             batch)
            for start in range(0, len(todo), batch):
                agents = todo[start:start + batch]
                frame = _chunk(agents, attrs, prompts, asker, llm, cfg.seed, counts)
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


def _format(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ValueError(f"--out {out}: the file must end in .parquet or .csv")


def _chunk(agents: list[int], attrs: pd.DataFrame, prompts: ProfilePrompts, asker: _Asker,
           llm: LLMConfig, seed: int, counts: dict[str, int]) -> pd.DataFrame:
    """Ask for the bios of ``agents`` (one batch, then one batch of repairs); their rows."""
    rows = attrs.iloc[agents].reset_index(drop=True)
    records = rows.to_dict("records")
    adapter: TypeAdapter[ProfileAnswer] = TypeAdapter(ProfileAnswer)
    schema = adapter.json_schema() if llm.structured_output else None

    def request(messages: list[dict[str, str]], agent: int, attempt: int) -> ChatRequest:
        # a sampling seed per (seed, agent, attempt): agents with the same attributes still
        # get their own request (and answer), and a re-run asks exactly the same
        sampling_seed = zlib.crc32(f"{seed}:profile:{agent}:{attempt}".encode()) & 0x7FFFFFFF
        return ChatRequest(messages=messages, model=llm.model, schema=schema,
                           temperature=llm.temperature, max_tokens=llm.max_tokens,
                           top_p=llm.top_p, seed=sampling_seed, key=agent)

    requests = []
    for agent, record in zip(agents, records, strict=True):
        shown = {str(k): v for k, v in ((k, _shown(v)) for k, v in record.items())
                 if v is not None}
        requests.append(request(prompts.messages(agent, shown), agent, 0))
    answers = asker.send(requests, counts)
    bios: list[str | None] = [None] * len(agents)
    errors: list[str | None] = [None] * len(agents)
    to_repair: list[tuple[int, ChatRequest, str, str]] = []
    for i, (req, resp) in enumerate(zip(requests, answers, strict=True)):
        if resp.error is not None:
            counts["request_errors"] += 1
            errors[i] = REQUEST_FAILED + resp.error
            continue
        answer, problem = parse_decision(resp.text, adapter)
        if answer is not None:
            bios[i] = answer.bio  # type: ignore[attr-defined]
        else:
            counts["invalid"] += 1
            to_repair.append((i, req, resp.text, problem or "invalid"))
    if to_repair:
        fixes = [request(repair_messages(req.messages, text, problem, schema), req.key, 1)
                 for _, req, text, problem in to_repair]
        counts["repairs"] += len(fixes)
        for (i, _, _, problem), resp in zip(to_repair, asker.send(fixes, counts), strict=True):
            if resp.error is not None:
                counts["request_errors"] += 1
                errors[i] = f"{REQUEST_FAILED}{resp.error} (repair of: {problem})"
                continue
            answer, again = parse_decision(resp.text, adapter)
            if answer is not None:
                counts["repaired"] += 1
                bios[i] = answer.bio  # type: ignore[attr-defined]
            else:
                counts["invalid"] += 1
                errors[i] = f"{INVALID}{problem}; after a repair request: {again or 'invalid'}"
    counts["failed"] += sum(b is None for b in bios)
    frame = rows.copy()
    frame.insert(0, "agent_id", np.asarray(agents, dtype=np.int64))
    frame["bio"] = pd.Series(bios, dtype=object)
    frame["error"] = pd.Series(errors, dtype=object)
    return frame


class _Asker:
    """The backend in its own event loop, behind the response cache."""

    def __init__(self, llm: LLMConfig, db: Database, seed: int, base_dir: Path) -> None:
        self.db = db
        self.backend: Backend = make_backend(llm, db, seed, base_dir)
        self.cache = ResponseCache(db) if llm.cache else None
        self.loop = asyncio.new_event_loop()

    def send(self, requests: list[ChatRequest], counts: dict[str, int]) -> list[ChatResponse]:
        """Answers from the cache where it has them, the backend for the rest; new answers
        are stored in the cache (one transaction)."""
        hashes = [r.prompt_hash() for r in requests]
        cached = self.cache.lookup(hashes) if self.cache is not None else {}
        misses = [i for i, h in enumerate(hashes) if h not in cached]
        fresh = self.loop.run_until_complete(self.backend.generate([requests[i] for i in misses]))
        out: list[ChatResponse] = [cached.get(h) for h in hashes]  # type: ignore[misc]
        new: dict[str, ChatResponse] = {}
        for i, resp in zip(misses, fresh, strict=True):
            out[i] = resp
            if resp.error is None and resp.source == "model":
                new.setdefault(hashes[i], resp)
        if self.cache is not None and new:
            rows = list(new.items())
            with self.db.transaction() as conn:
                self.db.insert_columns(conn, "llm_cache", 0, {
                    "step": [0] * len(rows), "prompt_hash": [h for h, _ in rows],
                    "model": [requests[0].model] * len(rows),
                    "response": [r.text for _, r in rows],
                    "prompt_tokens": [r.prompt_tokens for _, r in rows],
                    "completion_tokens": [r.completion_tokens for _, r in rows]})
        counts["requests"] += len(requests)
        counts["cache_hits"] += len(requests) - len(misses)
        return out

    def close(self) -> None:
        """Cancel what is still in flight (after Ctrl-C), close the connections and the loop."""
        loop = self.loop
        if loop.is_closed():
            return
        with contextlib.suppress(Exception):
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self.backend.close())
        loop.close()


# ------------------------------------------------------------------------------ the output file


def _read_existing(out: Path, fmt: str, columns: list[str], attrs: pd.DataFrame) -> pd.DataFrame:
    """The rows already in ``out`` (empty when there is none), checked against the population."""
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    if not out.exists() or out.stat().st_size == 0:
        return empty
    try:
        frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    except pd.errors.EmptyDataError:
        return empty
    except Exception as exc:  # pyarrow and pandas raise many unrelated types
        raise ValueError(f"cannot read the existing output file {out} ({exc}); delete it or "
                         "choose another --out") from exc
    frame.columns = [str(c) for c in frame.columns]
    if list(frame.columns) != columns:
        raise ValueError(
            f"{out} has the columns {', '.join(frame.columns)} but this experiment's profiles "
            f"have {', '.join(columns)}: it was written for another population; choose another "
            "--out, or delete the file to start again")
    if len(frame) == 0:
        return empty
    ids = pd.to_numeric(frame["agent_id"], errors="coerce")
    bad = ids.isna() | (ids < 0) | (ids >= len(attrs)) | (ids % 1 != 0)
    if bad.any():
        raise ValueError(f"{out} has agent_id {frame['agent_id'].iloc[int(bad.argmax())]!r}, "
                         f"which is not an agent of this population (0..{len(attrs) - 1})")
    ids = ids.astype(np.int64)
    if ids.duplicated().any():
        raise ValueError(f"{out} has agent_id {int(ids[ids.duplicated()].iloc[0])} twice")
    frame["agent_id"] = ids
    mine = attrs.iloc[ids.to_numpy()].reset_index(drop=True)
    for col in attrs.columns:
        same = _same_values(mine[col], frame[col].reset_index(drop=True))
        if not same.all():
            row = int(np.argmin(same))
            raise ValueError(
                f"{out} was written for another population: agent {int(ids.iloc[row])} has "
                f"{col}={frame[col].iloc[row]!r} there but {mine[col].iloc[row]!r} in this "
                "experiment (did the seed or the population section change?); choose another "
                "--out, or delete the file to start again")
    return frame


def _same_values(mine: pd.Series, theirs: pd.Series) -> np.ndarray:
    """Element-wise equality that survives a CSV round trip (missing == missing)."""
    gone = mine.isna().to_numpy() & theirs.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(mine.dtype) or pd.api.types.is_bool_dtype(mine.dtype):
        a = pd.to_numeric(mine, errors="coerce").astype("float64").to_numpy()
        b = pd.to_numeric(theirs, errors="coerce").astype("float64").to_numpy()
        with np.errstate(invalid="ignore"):
            close = np.isclose(a, b, rtol=1e-9, atol=0.0)
        return gone | close
    a = mine.astype("string").fillna("\x00").to_numpy()
    b = theirs.astype("string").fillna("\x00").to_numpy()
    return gone | (a == b)


def _arrow_schema(columns: list[str], attrs: pd.DataFrame) -> Any:
    import pyarrow as pa

    layout = attrs.copy()
    layout.columns = [str(c) for c in layout.columns]
    layout.insert(0, "agent_id", np.arange(len(layout), dtype=np.int64))
    layout["bio"] = pd.Series([""] * len(layout), dtype=object)
    layout["error"] = pd.Series([""] * len(layout), dtype=object)
    schema = pa.Schema.from_pandas(layout[columns], preserve_index=False)
    return schema


class _ParquetOut:
    """Rows into a temporary Parquet file (one row group per chunk) that replaces ``out`` when
    closed; the rows kept from ``out`` go first."""

    def __init__(self, out: Path, columns: list[str], attrs: pd.DataFrame,
                 kept: pd.DataFrame, batch: int) -> None:
        import pyarrow.parquet as pq

        self.out = out
        self.columns = columns
        self.schema = _arrow_schema(columns, attrs)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = out.with_name(f".{out.name}.partial")
        self.writer: Any = pq.ParquetWriter(str(self.tmp), self.schema)
        self.rows = 0
        for start in range(0, len(kept), batch):
            self.write(kept.iloc[start:start + batch])

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        table = pa.Table.from_pandas(frame[self.columns].reset_index(drop=True),
                                     schema=self.schema, preserve_index=False)
        self.writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        writer.close()
        if self.rows == 0 and not self.out.exists():  # failed before the first chunk
            self.tmp.unlink()
            return
        os.replace(self.tmp, self.out)
        _sort_if_needed(self.out, "parquet", self.schema)


class _CsvOut:
    """Rows appended to ``out`` chunk by chunk (each chunk one write)."""

    def __init__(self, out: Path, columns: list[str], kept: pd.DataFrame,
                 rewrite: bool) -> None:
        self.out = out
        self.columns = columns
        out.parent.mkdir(parents=True, exist_ok=True)
        if rewrite:  # rows whose request failed are dropped, to be asked again
            _atomic_csv(kept[columns], out)
        self.header = not out.exists() or out.stat().st_size == 0
        self.closed = False

    def write(self, frame: pd.DataFrame) -> None:
        text = frame[self.columns].to_csv(index=False, header=self.header, lineterminator="\n")
        with open(self.out, "a", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self.header = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            _sort_if_needed(self.out, "csv", None)


def _writer(fmt: str, out: Path, columns: list[str], attrs: pd.DataFrame,
            existing: pd.DataFrame | None, kept: pd.DataFrame,
            batch: int) -> _ParquetOut | _CsvOut:
    if fmt == "parquet":
        return _ParquetOut(out, columns, attrs, kept, batch)
    return _CsvOut(out, columns, kept, rewrite=existing is not None)


def _atomic_csv(frame: pd.DataFrame, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.partial")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, out)


def _sort_if_needed(out: Path, fmt: str, schema: Any) -> None:
    """Row ``i`` must be agent ``i`` for the file to serve as a population: re-sort by
    ``agent_id`` when agents asked again were appended after later ones."""
    if not out.exists() or out.stat().st_size == 0:
        return
    frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    if frame["agent_id"].is_monotonic_increasing:
        return
    frame = frame.sort_values("agent_id", kind="stable").reset_index(drop=True)
    if fmt == "csv":
        _atomic_csv(frame, out)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = out.with_name(f".{out.name}.partial")
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), str(tmp))
    os.replace(tmp, out)
