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

import contextlib
import contextvars
import math
import sys
from typing import Any, Iterable, Iterator, Sequence

import gradio as gr

__all__ = ["LinkParams", "TRUE", "FALSE", "MAX_VALUE_CHARS", "collecting", "link_pending", "check_query", "main"]

#: While set (:func:`collecting`), warnings are appended to this list instead of shown as toasts (the link checker).
_COLLECT: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("xcxr_link_problems", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the warnings of :meth:`LinkParams.warn` (in this thread / context) into the yielded list, instead
    of showing them in a page: how ``python -m space.links check`` learns what a visitor would be told."""
    problems: list[str] = []
    token = _COLLECT.set(problems)
    try:
        yield problems
    finally:
        _COLLECT.reset(token)

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
        return (f"Link{where}: " + "; ".join(self.problems) + ". Those parts use the defaults; the rest of the link "
                "was applied.")

    def warn(self) -> None:
        """Show the problems as a warning toast in the page (nothing when there are none)."""
        text = self.message()
        if not text:
            return
        sink = _COLLECT.get()
        if sink is not None:
            sink.append(text)
        else:
            gr.Warning(text, duration=20)


def link_pending(request: Any, tab: str, opened: bool) -> bool:
    """True for a tab's "open" event fired by a deep link's own tab selection — before the link's parameters are
    set. The app opens the linked tab right after them (``space/app.py``, ``open_linked``), so this first run would
    compute, then show, the defaults' result (or finish after the right one). A click on the tab (``opened``: the
    tab has been shown before, or the page has no ``tab=``) is never held back.
    """
    if opened or request is None:
        return False
    try:
        linked = str(dict(request.query_params).get("tab") or "")
    except Exception:  # noqa: BLE001 - no query parameters to read: a plain open
        return False
    return linked.strip().lower().replace(" ", "_") == tab


# ------------------------------------------------------------------------------------ checking links of a course
def check_query(demo: Any, query: dict[str, str]) -> list[str]:
    """What a visitor opening a link with ``query`` would be warned about, or the error they would see, computed
    in process on the app ``demo`` (``space.app.build_app()``): the app's own link reading
    (:func:`space.app.read_link`) and the linked tab's ``on_link`` handler. ``[]``: the link opens what it says."""
    from .app import known_params, read_link

    ctx, specs = demo.xcxr_context, demo.xcxr_tabs
    if not query.get("tab"):
        return ["no tab= parameter: the link opens the first tab"]
    tab, _, _, params = read_link(ctx, query, known_params(specs))
    problems = list(params.problems)
    with collecting() as told:
        spec = specs.get(tab or "")
        if spec is not None and spec.on_link is not None:  # the linked tab reads its parameters, as in the app
            try:
                spec.on_link[0](dict(query))
            except gr.Error as e:
                problems.append(f"{tab} tab: {e.message}")
    return problems + told


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)


def _check(paths: list[str], app: str | None) -> int:
    from . import course

    links = [lk for path in paths for sheet in course.sheets(path) for lk in course.links_in(sheet)]
    for path in paths:  # the solutions' links are checked too
        for sheet in course.sheets(path):
            sol = course.solution_path(sheet)
            if sol.is_file():
                links += course.links_in(sol)
    if not links:
        print(f"no app links found in {', '.join(paths)}")
        return 1
    broken: list[str] = []
    if app:
        from gradio_client import Client

        try:
            client = Client(app, verbose=False)
        except Exception as e:  # noqa: BLE001 - unreachable, not a Gradio app, an old app without /check_link…
            print(f"error: cannot reach the app at {app} ({type(e).__name__}: {str(e)[:200]}); start it "
                  "(python -m space.app) or check the address", file=sys.stderr)
            return 2
        for lk in links:
            query = "&".join(f"{k}={v}" for k, v in lk.query.items())
            problems = client.predict(query, api_name="/check_link")
            if problems:
                broken.append(f"{lk.where()}: {lk.url}: {' | '.join(problems)}")
    else:
        import logging

        from .app import build_app

        logging.getLogger("space").setLevel(logging.WARNING)
        demo = build_app()
        demo.xcxr_context.catalog.wait_checked(60)
        for lk in links:
            problems = check_query(demo, lk.query)
            if problems:
                broken.append(f"{lk.where()}: {lk.url}: {' | '.join(problems)}")
    _print_lines(broken)
    where = f"against {app}" if app else "in process"
    print(f"{len(links)} links checked {where}: {len(broken)} broken", file=sys.stderr)
    return 1 if broken else 0


def _embedder() -> Any:
    """Render a link's view as PNG bytes (heatmaps and outcome links), for questions marked ``embed``."""
    from .app import make_context
    from .course import render_view

    ctx = make_context()

    def embed(link: Any) -> bytes | None:
        return render_view(ctx, link.query)
    return embed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m space.links check|moodle|gift|notebooks …`` (see ``--help``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m space.links",
                                 description="Check the app links of course sheets; export a sheet as a Moodle quiz "
                                             "(XML or GIFT); write the sheets' notebooks.")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="confirm that every app link of the sheets opens what it says; exit 1 with one "
                                     "line per broken link")
    c.add_argument("paths", nargs="+", help="sheets or folders of sheets (course/)")
    c.add_argument("--app", help="check against this running app (its /check_link API) instead of in process")
    m = sub.add_parser("moodle", help="print a sheet's questions as Moodle XML (Question bank → Import → Moodle XML)")
    m.add_argument("sheet")
    m.add_argument("--app", help="the address students open (your Space); default the local app")
    m.add_argument("--no-images", action="store_true", help="do not embed the views of 'embed' questions")
    g = sub.add_parser("gift", help="print a sheet's questions in Moodle's GIFT format")
    g.add_argument("sheet")
    g.add_argument("--app", help="the address students open (your Space); default the local app")
    n = sub.add_parser("notebooks", help="write course/notebooks/<sheet>.ipynb from each sheet (--check: only say "
                                         "which are out of date)")
    n.add_argument("paths", nargs="*", default=["course"])
    n.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    from . import course

    try:
        if a.command == "check":
            return _check(a.paths, a.app)
        if a.command == "moodle":
            embed = None if a.no_images else _embedder()
            print(course.moodle_xml(a.sheet, a.app, embed), end="")
            return 0
        if a.command == "gift":
            print(course.gift(a.sheet, a.app), end="")
            return 0
        stale = []
        for path in a.paths:
            for sheet in course.sheets(path):
                target = sheet.parent / "notebooks" / (sheet.stem + ".ipynb")
                text = course.notebook_text(sheet)
                if target.is_file() and target.read_text(encoding="utf-8") == text:
                    continue
                stale.append(str(target))
                if not a.check:
                    target.parent.mkdir(exist_ok=True)
                    target.write_text(text, encoding="utf-8")
        verb = "out of date" if a.check else "written"
        print("\n".join(f"{s} {verb}" for s in stale) or "notebooks up to date")
        return 1 if (stale and a.check) else 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
