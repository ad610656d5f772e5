"""Deep links into the app: reading a link's query parameters, with a visible warning for every bad one.

A link such as ``/?tab=heatmaps&model=pneumonia_cnn&example=PNEUMONIA/person1071_virus_1774.jpeg&layer=…&scale=…``
opens a view with every control set. The app reads ``tab``, ``model`` and ``example`` (``space/app.py``); each tab
reads its own parameters in its ``on_link`` handler and writes them back into copied links through its
``link_extras`` (:class:`space.context.TabSpec`). Both go through :class:`LinkParams`, so a bad or stale value is
never silently ignored: it is left at the tab's default and named in a warning toast in the page ("Link: layer
'features.9' is not a layer of pneumonia_cnn; …").

Example (in a tab's ``on_link`` handler)::

    def from_link(q: dict) -> tuple:
        p = LinkParams(q, "heatmaps")
        scale = p.choice("scale", SCALES, default=SCALES[1])
        relu = p.boolean("relu", default=True)
        p.warn()
        return scale, relu
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import gradio as gr

__all__ = ["LinkParams", "TRUE", "FALSE", "MAX_VALUE_CHARS"]

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
#: A link parameter longer than this is refused (a link is typed or pasted by a teacher, never megabytes).
MAX_VALUE_CHARS = 300


def _short(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "…")


class LinkParams:
    """The query parameters of one link as seen by one tab; every accessor returns a valid value or the default,
    and records what was wrong (:attr:`problems`, shown by :meth:`warn`).

    Args:
        query: the page's query parameters (``request.query_params`` as a dict).
        tab: the tab id reading them (only named in messages).
    """

    def __init__(self, query: dict[str, str] | None, tab: str = "") -> None:
        self.query = dict(query or {})
        self.tab = tab
        self.problems: list[str] = []

    def has(self, name: str) -> bool:
        """Whether the link sets ``name`` (to a non-empty value)."""
        return bool(self.raw(name))

    def raw(self, name: str) -> str | None:
        """The parameter's text, or None when it is absent, empty or longer than :data:`MAX_VALUE_CHARS`."""
        value = self.query.get(name)
        if value is None or value == "":
            return None
        if len(str(value)) > MAX_VALUE_CHARS:
            self.problem(f"{name} is longer than {MAX_VALUE_CHARS} characters and was ignored")
            return None
        return str(value)

    def problem(self, text: str) -> None:
        """Record a problem (shown by :meth:`warn`)."""
        if text not in self.problems:
            self.problems.append(text)

    def choice(self, name: str, choices: Sequence[Any], default: Any = None, what: str | None = None,
               aliases: dict[str, Any] | None = None) -> Any:
        """The value of ``name`` if it is one of ``choices`` (or an alias of one, compared case-insensitively for
        strings), else ``default``."""
        value = self.raw(name)
        if value is None:
            return default
        if value in choices:
            return value
        folded = {str(c).lower(): c for c in choices}
        folded.update({k.lower(): v for k, v in (aliases or {}).items()})
        if value.lower() in folded:
            return folded[value.lower()]
        shown = ", ".join(str(c) for c in list(choices)[:8]) + (" …" if len(choices) > 8 else "")
        self.problem(f"{what or name} {_short(value)} is not one of: {shown}")
        return default

    def boolean(self, name: str, default: bool) -> bool:
        """``1/true/yes/on`` or ``0/false/no/off``; anything else → ``default`` and a problem."""
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        self.problem(f"{name} must be true or false, got {_short(value)}")
        return default

    def integer(self, name: str, lo: int, hi: int, default: int | None) -> int | None:
        """A whole number in ``[lo, hi]``, else ``default`` and a problem."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            n = int(value)
        except ValueError:
            self.problem(f"{name} must be a whole number, got {_short(value)}")
            return default
        if not lo <= n <= hi:
            self.problem(f"{name} must be between {lo} and {hi}, got {n}")
            return default
        return n

    def number(self, name: str, lo: float, hi: float, default: float | None) -> float | None:
        """A finite number in ``[lo, hi]``, else ``default`` and a problem."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            x = float(value)
        except ValueError:
            self.problem(f"{name} must be a number, got {_short(value)}")
            return default
        if not math.isfinite(x) or not lo <= x <= hi:
            self.problem(f"{name} must be between {lo:g} and {hi:g}, got {_short(value)}")
            return default
        return x

    def items(self, name: str, choices: Iterable[Any], sep: str = ",", limit: int = 16) -> list[Any] | None:
        """A ``sep``-separated list of choices (unknown ones dropped with a problem), or None when absent."""
        value = self.raw(name)
        if value is None:
            return None
        allowed = list(choices)
        out = []
        for part in [v.strip() for v in value.split(sep) if v.strip()][:limit]:
            if part in allowed:
                out.append(part)
            else:
                self.problem(f"{name}: {_short(part)} is not available")
        return out

    def message(self) -> str:
        """All problems in one sentence ('' when there are none)."""
        if not self.problems:
            return ""
        where = f" ({self.tab} tab)" if self.tab else ""
        return f"Link{where}: " + "; ".join(self.problems) + ". Those settings were left at their defaults."

    def warn(self) -> None:
        """Show the problems as a warning toast in the page (nothing when there are none)."""
        text = self.message()
        if text:
            gr.Warning(text, duration=20)
