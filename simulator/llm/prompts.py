"""Prompt templates (Jinja2), per scenario and role, overridable by users.

Core objects:
    PromptBuilder: renders the shared system part once (again when what it shows changes) and
        each agent's part per step.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jinja2


class PromptBuilder:
    """Finds ``[<role>.]system.j2`` and ``[<role>.]agent.j2`` in the user's folder first, then in
    the scenario's; renders with StrictUndefined so a misspelt variable is an error, not "".

    Args:
        scenario_dir: the scenario's default templates.
        user_dir: the experiment's override folder, if any.
        role: the policy part's role.
    """

    def __init__(self, scenario_dir: Path | None, user_dir: Path | None, role: str) -> None:
        folders = [str(d) for d in (user_dir, scenario_dir) if d is not None]
        if not folders:
            raise ValueError("no prompt templates: the scenario has none and no "
                             "policy params.templates folder was given")
        if user_dir is not None and not user_dir.is_dir():
            raise ValueError(f"prompt template folder {user_dir.resolve()} does not exist "
                             "(policy params.templates)")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders), undefined=jinja2.StrictUndefined,
            autoescape=False, trim_blocks=False, keep_trailing_newline=False)
        self.system = self._template("system", role)
        self.agent = self._template("agent", role)
        self._system: tuple[dict[str, Any], str] | None = None

    def _template(self, part: str, role: str) -> jinja2.Template:
        try:
            return self.env.select_template([f"{role}.{part}.j2", f"{part}.j2"])
        except jinja2.TemplatesNotFound as exc:
            raise ValueError(f"no {part} prompt template ({role}.{part}.j2 or {part}.j2) in "
                             f"{', '.join(self.env.loader.searchpath)}") from exc  # type: ignore[union-attr]

    def system_text(self, shared: dict[str, Any]) -> str:
        """The shared system part (identical for every agent): rendered once, and again when
        the shared variables change (a parameter event changed what the scenario shows)."""
        if self._system is None or self._system[0] != shared:
            self._system = (copy.deepcopy(shared), self.system.render(**shared).strip())
        return self._system[1]

    def agent_text(self, shared: dict[str, Any], context: dict[str, Any]) -> str:
        """One agent's part of the prompt."""
        return self.agent.render(**shared, **context).strip()
