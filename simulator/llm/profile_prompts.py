"""The prompt of ``populace profiles generate``: one chat request per agent from a Jinja2 template.

Core objects:
    ProfilePrompts: the template (``templates/profile.j2`` or ``--template``), with a ``system``
        block shared by every agent and a ``user`` block that lists the agent's attributes.
    prompt_attributes: an agent's attribute row as the prompt shows it (missing values left
        out, floats rounded).
    DEFAULT_TEMPLATE: the template shipped with Populace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "profile.j2"

__all__ = ["DEFAULT_TEMPLATE", "ProfilePrompts", "prompt_attributes"]


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


def prompt_attributes(record: Mapping[Any, Any]) -> dict[str, Any]:
    """The attributes of one agent as its prompt lists them: names as text, missing values
    (None, NA, NaN) left out, integral floats as ints and other floats to two decimals."""
    shown = ((str(key), _shown(value)) for key, value in record.items())
    return {key: value for key, value in shown if value is not None}
