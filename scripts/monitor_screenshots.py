"""Screenshots of every page of the web monitor, taken in headless Chromium (Debian's
``chromium``) for docs/images/monitor/. Run it with ``scripts/screenshots``.

What it photographs, all through real processes (``populace run``, ``populace monitor``, the
project's LLM test server):
- a LIVE run of ``scenarios/social/examples/llm_agents.yaml`` (10% language-model agents on the
  test server), while it runs: every page, after a live intervention posted
  ``<script>alert(1)</script>`` text (it must show literally) and an interview was answered;
- finished runs of the market and economy quick starts: their scenario pages;
- a 1M-agent run (``million.yaml``, 3 steps): overview, population, network and agents.

The runs' databases go to ``--work`` (kept between calls: a database already there is reused,
so a second call takes a minute, not five).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
POPULACE = [str(BIN / "python"), "-m", "populace.simulator.cli"]
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 1000}
MAX_HEIGHT = 5000  # pixels: a long page is cut here
PAGES = ("runs", "overview", "population", "network", "agents", "scenario", "controls")
EVENT = """\
kind: action
name: shout
agents: 3
action: create_post
args: {topic: 0, stance: 0.4, content: "<script>alert(1)</script> and **not bold**: agent text shows as written"}
"""


def log(text: str) -> None:
    print(f"screenshots: {text}", file=sys.stderr, flush=True)


@contextmanager
def process(argv: list[str], **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (in its own group), stopped with its children afterwards."""
    proc = subprocess.Popen(argv, cwd=REPO, start_new_session=True, **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def populace(*args: str) -> None:
    """Run a populace command to its end (its failure stops the script)."""
    log("populace " + " ".join(args))
    subprocess.run([*POPULACE, *args], cwd=REPO, check=True)


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def steps_done(db: Path) -> int:
    try:
        rows = query(db, "select steps_done from runs order by id desc limit 1")
    except sqlite3.Error:
        return 0
    return int(rows[0][0]) if rows else 0


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.5)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def finished(db: Path, experiment: str, *extra: str) -> Path:
    """``db`` holding a completed run of ``experiment`` (run now unless it is there)."""
    if db.exists() and query(db, "select count(*) from runs where status = 'completed'")[0][0]:
        log(f"reusing {db}")
        return db
    db.unlink(missing_ok=True)
    populace("run", experiment, "--db", str(db), "--quiet", *extra)
    return db


class Monitor:
    """``populace monitor DB`` on a port, and a browser to photograph its pages."""

    def __init__(self, browser: Browser, db: Path, port: int, out: Path, prefix: str) -> None:
        self.browser, self.db, self.port, self.out, self.prefix = browser, db, port, out, prefix

    def __enter__(self) -> Monitor:
        self.proc = subprocess.Popen([*POPULACE, "monitor", str(self.db), "--port",
                                      str(self.port)], cwd=REPO, start_new_session=True)
        page = self.browser.new_page()
        wait_for(lambda: self._up(page), f"the monitor on port {self.port}", 120)
        page.close()
        return self

    def _up(self, page: Page) -> bool:
        try:
            return page.goto(f"http://127.0.0.1:{self.port}/_stcore/health").ok
        except Exception:  # not listening yet
            return False

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)

    def shoot(self, path: str, name: str, act: Callable[[Page], None] | None = None,
              settle_ms: int = 3000) -> Path:
        """Open page ``path``, do ``act``, wait until Streamlit is idle, save the picture."""
        page = self.browser.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{self.port}/{path}")
        page.wait_for_selector("[data-testid='stSidebar']", timeout=60_000)
        idle(page)
        if act is not None:
            act(page)
            idle(page)
        page.wait_for_timeout(settle_ms)
        idle(page)
        # Streamlit scrolls inside its own container, so a "full page" picture is the window:
        # grow the window to the content first
        height = page.evaluate(
            "() => { const m = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
            " return m ? m.scrollHeight + 160 : 1000 }")
        page.set_viewport_size({"width": VIEWPORT["width"],
                                "height": int(min(max(height, VIEWPORT["height"]), MAX_HEIGHT))})
        page.wait_for_timeout(1500)
        idle(page)
        target = self.out / f"{self.prefix}-{name}.png"
        page.screenshot(path=str(target), full_page=True)
        page.close()
        log(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
        return target


def idle(page: Page, timeout_ms: int = 60_000) -> None:
    """Wait while Streamlit says it is running the script."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
        ".includes('Running')", timeout=timeout_ms)


def fill(label: str, value: object) -> Callable[[Page], None]:
    """Type ``value`` into the input labelled ``label`` and submit it."""
    def act(page: Page) -> None:
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        idle(page)
    return act


def write(label: str, text: str) -> Callable[[Page], None]:
    """Write ``text`` into the text area whose label starts with ``label``; Ctrl+Enter sends."""
    def act(page: Page) -> None:
        box = page.get_by_label(label, exact=False).first
        box.fill(text)
        box.press("Control+Enter")
        idle(page)
    return act


def choose(label: str, option: str) -> Callable[[Page], None]:
    """Pick ``option`` in the select box labelled ``label``."""
    def act(page: Page) -> None:
        page.get_by_label(label, exact=False).first.click()
        page.get_by_role("option", name=option, exact=True).click()
        idle(page)
    return act


def click(text: str) -> Callable[[Page], None]:
    """Click the first element showing ``text`` (a tab, an expander)."""
    def act(page: Page) -> None:
        page.get_by_text(text, exact=False).first.click()
        idle(page)
    return act


def steps(*acts: Callable[[Page], None]) -> Callable[[Page], None]:
    def act(page: Page) -> None:
        for a in acts:
            a(page)
    return act


def live_run(browser: Browser, work: Path, out: Path) -> None:
    """The LLM quick start while it runs, steered from the command line."""
    db = work / "live.sqlite"
    db.unlink(missing_ok=True)
    server = [str(BIN / "python"), "-m", "populace.simulator.testing.llm_server",
              "--port", "8011", "--latency", "0.05"]
    with process(server):
        wait_for(lambda: listening(8011), "the LLM test server", 60)
        with process([*POPULACE, "run", "scenarios/social/examples/llm_agents.yaml",
                      "--steps", "2000", "--db", str(db), "--quiet"]) as run:
            live_pages(browser, db, run, work, out)


def live_pages(browser: Browser, db: Path, run: subprocess.Popen[bytes], work: Path,
               out: Path) -> None:
    """Steer the live run from the command line, then photograph every page while it runs."""
    def going() -> bool:
        if run.poll() is not None:
            raise RuntimeError(f"the live run ended with exit code {run.returncode}")
        return steps_done(db) >= 3

    wait_for(going, "three steps of the live run")
    (work / "shout.yaml").write_text(EVENT)
    populace("intervene", "llm_agents", "--db", str(db), "--file",
             str(work / "shout.yaml"), "--wait", "120")
    asked = query(db, "select agent_id from llm_calls where kind = 'decision' "
                  "order by id limit 1")[0][0]
    populace("interview", "llm_agents", "--db", str(db), "--agents", str(asked),
             "--question", "How do you feel about the news on your feed today?",
             "--name", "mood", "--wait", "120")
    # a cascade that fits a picture, and the step of the live intervention's post
    root = query(db, "select root_id from posts where post_id != root_id group by root_id "
                 "having count(*) between 6 and 20 order by count(*) desc limit 1")[0][0]
    shout = query(db, "select step from posts where content like '<script>%'")[0][0]
    acts = {"network": choose("Colour by", "opinion"),
            # agent-written text shows as written: the <script> post, in the table browser
            "scenario": steps(fill("Original post id", root),
                              write("Conditions on its columns", f"author_id=3\nstep={shout}")),
            "agents": steps(fill("Agent id", asked), click("Model exchanges"),
                            click("decision · valid"))}
    with Monitor(browser, db, 8521, out, "live") as m:
        for name in PAGES:
            m.shoot(name, name, acts.get(name))
        m.shoot("agents", "agents-memories", steps(fill("Agent id", asked),
                                                   click("Memories")))
    assert run.poll() is None, "the live run ended before its screenshots"
    populace("stop", "llm_agents", "--db", str(db), "--wait", "120")


def scenario_runs(browser: Browser, work: Path, out: Path) -> None:
    market = finished(work / "market.sqlite", "scenarios/market/examples/quickstart.yaml")
    with Monitor(browser, market, 8522, out, "market") as m:
        m.shoot("scenario", "scenario")
        m.shoot("network", "network")
    economy = finished(work / "economy.sqlite", "scenarios/economy/examples/macro.yaml")
    with Monitor(browser, economy, 8523, out, "economy") as m:
        m.shoot("scenario", "scenario")
    clinic = finished(work / "clinic.sqlite", "scenarios/clinic/examples/hospital_day.yaml")
    with Monitor(browser, clinic, 8525, out, "clinic") as m:
        m.shoot("scenario", "scenario", settle_ms=6000)


def million(browser: Browser, work: Path, out: Path) -> None:
    db = finished(work / "million.sqlite", "scenarios/social/examples/million.yaml",
                  "--steps", "3")
    with Monitor(browser, db, 8524, out, "million") as m:
        for name in ("overview", "population"):
            m.shoot(name, name)
        m.shoot("network", "network", steps(fill("Around agent (empty: a sample)", 0),
                                            choose("Colour by", "age")))
        busy = query(db, "select agent_id from actions group by agent_id "
                     "order by count(*) desc, agent_id limit 1")[0][0]
        m.shoot("agents", "agents", fill("Agent id", busy))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "monitor")
    parser.add_argument("--work", type=Path, default=Path("/tmp/populace-screenshots"))
    parser.add_argument("--only", choices=["live", "scenarios", "million"], action="append",
                        help="take only these sets (repeatable; default: all)")
    args = parser.parse_args()
    # a terminated script still stops the runs, servers and monitors it started
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    sets = {"live": live_run, "scenarios": scenario_runs, "million": million}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--headless"])
        try:
            for name in args.only or list(sets):
                sets[name](browser, args.work, args.out)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
