"""The course pack in ``course/``: exercise sheets, the app links in them, their questions and answer keys, and the
Moodle / GIFT / notebook forms made from them. The command line is ``python -m space.links`` (:mod:`space.links`).

**A sheet** (``course/NN_name.md``) is Markdown for students: what to do, links into the app, ```` ```python ````
code cells (they become a notebook's cells, executed in CI) and questions::

    ### Question 2.3 (numerical)
    What is the test ROC AUC of `pneumonia_cnn`? Give three decimals.

A question's heading names its id and type: ``multiple choice`` (the choices are the ``- `` bullet list that ends
its text), ``numerical``, ``short answer`` or ``essay``; ``, embed`` after the type embeds the view of the
question's first app link as a picture in the Moodle export. Its text runs to the next heading.

**App links** are ordinary Markdown links to the app, written with the base :data:`APP_BASE` (the local app of
``python -m space.app``); ``--app URL`` rewrites them for another deployment (a course's own Space). Every link
whose query has a ``tab`` parameter, or whose address starts with the base, is checked.

**The teacher's solutions** (``course/solutions/NN_name.md``, same file name) answer each question under the same
heading (``### Question 2.3``) with an answer key in a fenced block::

    ```answer
    type: numerical
    answer: 0.986
    tolerance: 0.002
    fact: auc pneumonia_cnn test
    ```

``fact`` names a number or a word computed from the shipped models (:data:`FACTS`; a list of facts when several
must all give the answer); ``tests/test_course.py``
computes each one, so a retrained model that changes an answer fails CI instead of making a solution silently
wrong. Keys: ``answer`` (numerical), ``tolerance``; ``correct`` (multiple choice: the right choice's text);
``answers`` (short answer: accepted texts); ``feedback`` (shown after grading). The text after the block is the
explanation for the teacher (the Moodle export puts it in the general feedback / grader information).
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

__all__ = ["APP_BASE", "COURSE", "Link", "Question", "Answer", "sheets", "links_in", "questions", "answers",
           "rebase", "FACTS", "fact", "moodle_xml", "gift", "notebook", "notebook_text", "solution_path", "QUESTION_TYPES",
           "render_view"]

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"
#: The address the sheets' links are written with: the app started locally by ``python -m space.app``.
APP_BASE = "http://127.0.0.1:7860/"
#: Question types in headings → Moodle's type names.
QUESTION_TYPES = {"multiple choice": "multichoice", "numerical": "numerical", "short answer": "shortanswer",
                  "essay": "essay"}

_HEADING = re.compile(r"^### Question (\d+\.\d+) \(([a-z ]+?)(, embed)?\)\s*$")
_ANY_HEADING = re.compile(r"^#{1,6} ")
_MD_LINK = re.compile(r"\[([^\]]*)\]\((https?://[^)\s]+)\)")
_BARE = re.compile(r"(?<![(\[`])\bhttps?://[^\s)>\]`]+")


@dataclass(frozen=True)
class Link:
    """One app link of a sheet: where it is, its text and address, and its query parameters."""

    sheet: str
    line: int
    text: str
    url: str

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    def where(self) -> str:
        return f"{self.sheet}:{self.line}"


@dataclass
class Question:
    """A question of a sheet (``id`` like ``"2.3"``; ``kind`` a :data:`QUESTION_TYPES` value)."""

    sheet: str
    id: str
    kind: str
    text: str
    choices: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    embed: bool = False
    line: int = 0


@dataclass
class Answer:
    """A question's answer key from the solutions file."""

    id: str
    kind: str
    key: dict[str, Any]
    explanation: str = ""


def sheets(folder: str | Path = COURSE) -> list[Path]:
    """The sheets of a course folder (``NN_*.md``, sorted), or the file itself when ``folder`` is one."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.glob("[0-9][0-9]_*.md"))


def _is_app_link(url: str, base: str) -> bool:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if not parts.query:  # the app's address itself (in a sentence), not a view
        return False
    return url.startswith(base) or ("tab" in query and not parts.netloc.endswith(("github.com", "huggingface.co")))


def links_in(path: str | Path, base: str = APP_BASE) -> list[Link]:
    """Every app link of a Markdown file (Markdown links and bare addresses), with its line number."""
    path = Path(path)
    out: list[Link] = []
    fence = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fence = not fence
        found = [(m.group(1), m.group(2)) for m in _MD_LINK.finditer(line)]
        rest = _MD_LINK.sub("", line)
        found += [("", m.group(0).rstrip(".,;")) for m in _BARE.finditer(rest)]
        for text, url in found:
            if _is_app_link(url, base):
                out.append(Link(path.name, n, text, html.unescape(url)))
    return out


def questions(path: str | Path, base: str = APP_BASE) -> list[Question]:
    """The questions of a sheet, in order; ``ValueError`` naming the line of a malformed heading."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    all_links = links_in(path, base)
    out: list[Question] = []
    current: Question | None = None
    body: list[str] = []

    def close(end_line: int) -> None:
        if current is None:
            return
        text = "\n".join(body).strip()
        if current.kind == "multichoice":
            items = re.findall(r"^- (.+)$", text, flags=re.M)
            if len(items) < 2:
                raise ValueError(f"{path.name}:{current.line}: a multiple-choice question needs a '- ' list of at "
                                 "least two choices")
            current.choices = [i.strip() for i in items]
            text = re.sub(r"^- .+$\n?", "", text, flags=re.M).strip()
        current.text = text
        current.links = [lk for lk in all_links if current.line < lk.line < end_line]
        out.append(current)

    fence = False
    for n, line in enumerate(lines, start=1):
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and line.startswith("### Question"):
            m = _HEADING.match(line)
            if not m or m.group(2) not in QUESTION_TYPES:
                raise ValueError(f"{path.name}:{n}: write a question heading as '### Question N.M (type)' with a "
                                 f"type among {list(QUESTION_TYPES)}; got {line!r}")
            close(n)
            current = Question(path.name, m.group(1), QUESTION_TYPES[m.group(2)], "", embed=bool(m.group(3)), line=n)
            body = []
            continue
        if not fence and _ANY_HEADING.match(line) and current is not None:
            close(n)
            current, body = None, []
            continue
        if current is not None:
            if line.lstrip().startswith("```") or fence:
                close(n)
                current, body = None, []
                continue
            body.append(line)
    close(len(lines) + 1)
    ids = [q.id for q in out]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path.name}: question ids repeat: {ids}")
    return out


def solution_path(sheet: str | Path) -> Path:
    """The teacher's solutions of a sheet: ``solutions/<same name>`` next to it."""
    sheet = Path(sheet)
    return sheet.parent / "solutions" / sheet.name


def answers(sheet: str | Path) -> dict[str, Answer]:
    """The answer keys of a sheet's solutions file (``{question id: Answer}``; ``{}`` when there is none)."""
    import yaml

    path = solution_path(sheet)
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    out: dict[str, Answer] = {}
    for block in re.split(r"^### Question ", text, flags=re.M)[1:]:
        qid = block.split(None, 1)[0].strip()
        m = re.search(r"^```answer\n(.*?)^```\s*$", block, flags=re.M | re.S)
        explanation = block.split("\n", 1)[1] if "\n" in block else ""
        if m is None:
            out[qid] = Answer(qid, "essay", {}, explanation.strip())
            continue
        key = yaml.safe_load(m.group(1)) or {}
        if not isinstance(key, dict) or key.get("type") not in QUESTION_TYPES.values():
            raise ValueError(f"{path.name}: Question {qid}: the answer block needs 'type:' one of "
                             f"{sorted(QUESTION_TYPES.values())}")
        explanation = (block[:m.start()].split("\n", 1)[1] if "\n" in block[:m.start()] else "") + block[m.end():]
        out[qid] = Answer(qid, key["type"], key, explanation.strip())
    return out


def rebase(url: str, app: str | None) -> str:
    """``url`` with :data:`APP_BASE` replaced by ``app`` (a deployment's address), unchanged without ``app``."""
    if not app:
        return url
    app = app if app.endswith("/") else app + "/"
    return app + url[len(APP_BASE):] if url.startswith(APP_BASE) else url


# ------------------------------------------------------------------------------------------------------ facts
def _ctx() -> Any:
    from .app import make_context

    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = make_context()
    return _CONTEXT


_CONTEXT: Any = None


def _split_predictions(model: str, split: str) -> tuple[Any, Any, Any]:
    from lib.models import get_config

    from .evaluation import load_data, predict

    m = _ctx().model(model)
    ds = load_data(split, int(get_config(m)["img_size"]))
    return m, ds, predict(m, ds)


def _threshold(model: str, split: str, spec: str) -> float:
    from .evaluation import resolve_threshold

    return float(resolve_threshold(_ctx().model(model), model, split, spec)[0])


def _metrics(model: str, split: str, spec: str) -> dict[str, Any]:
    from lib.metrics import evaluate_predictions

    _, _, pred = _split_predictions(model, split)
    return evaluate_predictions(pred.label, pred.probability, _threshold(model, split, spec), pred.patient_id)


def _outcome_list(model: str, split: str, spec: str, outcome: str) -> list[str]:
    from lib.explain import image_ids, outcomes

    _, ds, pred = _split_predictions(model, split)
    ids = image_ids(ds)
    return [ids[i] for i in outcomes(pred, _threshold(model, split, spec))[outcome.upper()]]


def _example_probability(model: str, example: str) -> float:
    import torch

    from lib.models import predict_proba

    from .context import load_image

    m = _ctx().model(model)
    small, _ = load_image(_ctx(), None, example, m, original=False)
    return float(predict_proba(m, torch.from_numpy(small)[None, None])[0])


def _predicted(model: str, example: str) -> str:
    from lib.models import get_config

    cfg = get_config(_ctx().model(model))
    return cfg["labels"][int(_example_probability(model, example) >= float(cfg.get("threshold", 0.5)))]


def _parameters(model: str) -> int:
    from lib.models import count_parameters

    return int(count_parameters(_ctx().model(model)))


def _count_images(split: str, label: str = "") -> int:
    from .evaluation import load_data

    ds = load_data(split, 28)
    if not label:
        return len(ds)
    return int((ds.labels == list(ds.classes).index(label)).sum())


def _feature_size(model: str, stage: str) -> int:
    import torch

    from lib.explain import feature_maps, prepare
    from lib.models import get_config

    m = _ctx().model(model)
    size = int(get_config(m)["img_size"])
    stages = feature_maps(m, prepare(m, torch.zeros(1, 1, size, size, dtype=torch.uint8)), top_k=1)
    return int(stages[int(stage) - 1].maps.shape[-1])


def _gradcam_size(model: str) -> int:
    import torch

    from lib.explain import gradcam, prepare
    from lib.models import get_config

    m = _ctx().model(model)
    size = int(get_config(m)["img_size"])
    return int(gradcam(m, prepare(m, torch.zeros(1, 1, size, size, dtype=torch.uint8)), upsample=None).shape[-1])


def _best(models: str, split: str, threshold: str, name: str) -> str:
    scores = {m: _metrics(m, split, threshold)[name] for m in models.split(",")}
    return max(scores, key=scores.get)


#: Facts a solution can name (``fact: NAME ARG…``): each computed from the shipped models and bundled data.
FACTS: dict[str, Callable[..., Any]] = {
    "auc": lambda model, split: _metrics(model, split, "0.5")["auc"],
    "metric": lambda model, split, threshold, name: _metrics(model, split, threshold)[name],
    "patient_metric": lambda model, split, threshold, name: _metrics(model, split, threshold)["per_patient"][name],
    "threshold": lambda model, spec: _threshold(model, "test", spec),
    "count": lambda model, split, threshold, outcome: len(_outcome_list(model, split, threshold, outcome)),
    "outcome_image": lambda model, split, threshold, outcome, rank: _outcome_list(model, split, threshold,
                                                                                 outcome)[int(rank) - 1],
    "probability": _example_probability,
    "predicted": _predicted,
    "parameters": _parameters,
    "images": _count_images,
    "feature_size": _feature_size,
    "gradcam_size": _gradcam_size,
    "best": _best,
}


def fact(expression: str) -> Any:
    """The value of a solution's ``fact:`` (``"auc pneumonia_cnn test"``)."""
    name, *args = expression.split()
    if name not in FACTS:
        raise ValueError(f"unknown fact {name!r}; known: {sorted(FACTS)}")
    return FACTS[name](*args)


# ------------------------------------------------------------------------------------------- a view as a PNG
def render_view(ctx: Any, query: dict[str, str]) -> bytes | None:
    """The images a Heatmaps or Outcomes link shows, side by side as PNG bytes (``None`` for other tabs): the tab's
    own "Reproduce in Python" code run from the repository root — the embedded picture of a Moodle question is
    exactly what the app shows. Missing parameters take the tabs' defaults."""
    import contextlib
    import os

    import numpy as np

    from lib.explain import to_png_bytes

    from .links import TRUE
    from .tabs import heatmaps, outcomes

    tab, model = query.get("tab"), query.get("model") or ctx.default_model
    if tab == "heatmaps" and query.get("example"):
        code = heatmaps.snippet(ctx, None, model, query.get("layer") or heatmaps.DEFAULT_LAYER,
                                query.get("relu", "true").lower() in TRUE, query.get("upsample") or "bilinear",
                                query.get("scale") or heatmaps.DEFAULT_SCALE, query.get("method") or "saliency",
                                query["example"])
    elif tab == "outcomes" and query.get("outcome"):
        code = outcomes.snippet(ctx, model, query.get("split") or "test", query.get("threshold") or "model",
                                query["outcome"], int(query.get("index") or 1))
    else:
        return None
    namespace: dict[str, Any] = {}
    with contextlib.chdir(REPO):
        exec(compile(code, f"<{tab} view>", "exec"), namespace)  # noqa: S102 - our own generated code
    images = [np.asarray(a) for a in namespace["shown"]]
    height = max(a.shape[0] for a in images)
    gap = np.full((height, 8, 3), 255, np.uint8)
    row = []
    for a in images:
        pad = np.full((height - a.shape[0], a.shape[1], 3), 255, np.uint8)
        row += [np.concatenate([a, pad]), gap]
    return to_png_bytes(np.concatenate(row[:-1], axis=1))


# ------------------------------------------------------------------------------------------------ Moodle, GIFT
def _html(markdown_text: str, app: str | None) -> str:
    from markdown_it import MarkdownIt

    text = _MD_LINK.sub(lambda m: f"[{m.group(1)}]({rebase(m.group(2), app)})", markdown_text)
    return MarkdownIt("commonmark").render(text).strip()


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _title(sheet: Path) -> str:
    for line in sheet.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return sheet.stem


def _question_name(q: Question) -> str:
    first = _MD_LINK.sub(lambda m: m.group(1), q.text.split("\n", 1)[0])   # a link → its text
    first = re.sub(r"https?://\S+", "", re.sub(r"[`*]", "", first)).strip()
    return f"{q.id} {first[:60]}".strip()


#: What an embedded view shows, under the picture.
_EMBED_CAPTIONS = {
    "heatmaps": "The view in the app. Left to right: Grad-CAM of the first class (NORMAL), of the second class "
                "(PNEUMONIA), and the saliency map of the predicted class; each with its colour bar.",
    "outcomes": "The view in the app: Grad-CAM of the first class (NORMAL) and of the second class (PNEUMONIA), "
                "on one shared colour scale.",
}


def moodle_xml(sheet: str | Path, app: str | None = None, embed: Callable[[Link], bytes | None] | None = None) -> str:
    """The sheet's questions as a Moodle XML quiz (``<quiz>``: a category, then one ``<question>`` per question).

    Graded types (multiple choice, numerical, short answer) take their key from the solutions file; a question
    without a key is exported as an essay. Links point at ``app`` (default: :data:`APP_BASE`). ``embed(link)``
    renders a view as PNG bytes for questions marked ``embed`` (a base64 ``<file>`` in the question text).
    """
    sheet = Path(sheet)
    keys = answers(sheet)
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<quiz>",
           '  <question type="category">',
           f"    <category><text>$course$/top/Explainable X-rays/{html.escape(_title(sheet))}</text></category>",
           "  </question>"]
    for q in questions(sheet):
        key = keys.get(q.id)
        kind = key.kind if key is not None and key.key else "essay"
        if kind != "essay" and kind != q.kind:
            raise ValueError(f"{sheet.name}: Question {q.id} is {q.kind} in the sheet but {kind} in the solutions")
        text = _html(q.text, app)
        links = "".join(f'<p><a href="{html.escape(rebase(lk.url, app))}" target="_blank">Open in the app: '
                        f"{html.escape(lk.text or 'view')}</a></p>" for lk in q.links if lk.text == "")
        files = []
        if q.embed and q.links and embed is not None:
            png = embed(q.links[0])
            if png:
                fname = f"view_{q.id.replace('.', '_')}.png"
                caption = _EMBED_CAPTIONS.get(q.links[0].query.get("tab", ""), "The view in the app.")
                text += (f'<p><img src="@@PLUGINFILE@@/{fname}" alt="the view in the app"><br>'
                         f"<em>{html.escape(caption)}</em></p>")
                files.append(f'      <file name="{fname}" path="/" encoding="base64">'
                             f"{base64.b64encode(png).decode()}</file>")
        explanation = _html(key.explanation, app) if key is not None and key.explanation else ""
        out += [f'  <question type="{kind}">',
                f"    <name><text>{html.escape(_question_name(q))}</text></name>",
                '    <questiontext format="html">',
                f"      <text>{_cdata(text + links)}</text>", *files,
                "    </questiontext>",
                f'    <generalfeedback format="html"><text>{_cdata(explanation)}</text></generalfeedback>',
                "    <defaultgrade>1</defaultgrade>", "    <penalty>0.3333333</penalty>", "    <hidden>0</hidden>"]
        out += _moodle_answers(q, kind, key, explanation)
        out.append("  </question>")
    out.append("</quiz>")
    return "\n".join(out) + "\n"


def _feedback(key: Answer | None) -> str:
    return html.escape(str((key.key if key else {}).get("feedback", "")))


def _moodle_answers(q: Question, kind: str, key: Answer | None, explanation: str) -> list[str]:
    if kind == "essay":
        return ["    <responseformat>editor</responseformat>", "    <responserequired>1</responserequired>",
                "    <responsefieldlines>10</responsefieldlines>",
                f'    <graderinfo format="html"><text>{_cdata(explanation)}</text></graderinfo>']
    assert key is not None
    if kind == "multichoice":
        correct = str(key.key.get("correct"))
        if correct not in q.choices:
            raise ValueError(f"{q.sheet}: Question {q.id}: the correct choice {correct!r} is not among {q.choices}")
        lines = ["    <single>true</single>", "    <shuffleanswers>true</shuffleanswers>",
                 "    <answernumbering>abc</answernumbering>"]
        for c in q.choices:
            fraction = 100 if c == correct else 0
            lines.append(f'    <answer fraction="{fraction}" format="html"><text>{_cdata(_html(c, None))}</text>'
                         f"<feedback><text>{_feedback(key) if fraction else ''}</text></feedback></answer>")
        return lines
    if kind == "numerical":
        value, tol = float(key.key["answer"]), float(key.key.get("tolerance", 0))
        return [f'    <answer fraction="100"><text>{value:g}</text><tolerance>{tol:g}</tolerance>'
                f"<feedback><text>{_feedback(key)}</text></feedback></answer>"]
    accepted = [str(a) for a in key.key.get("answers", [])]
    if not accepted:
        raise ValueError(f"{q.sheet}: Question {q.id}: a short-answer key needs 'answers:' (a list)")
    return ["    <usecase>0</usecase>"] + [
        f'    <answer fraction="100"><text>{html.escape(a)}</text><feedback><text>{_feedback(key)}</text>'
        "</feedback></answer>" for a in accepted]


def _gift_escape(text: str) -> str:
    return re.sub(r"([~=#{}:])", r"\\\1", text)


def gift(sheet: str | Path, app: str | None = None) -> str:
    """The sheet's questions in Moodle's GIFT text format (no embedded pictures: GIFT has none)."""
    sheet = Path(sheet)
    keys = answers(sheet)
    out = [f"$CATEGORY: $course$/top/Explainable X-rays/{_title(sheet)}", ""]
    for q in questions(sheet):
        key = keys.get(q.id)
        kind = key.kind if key is not None and key.key else "essay"
        links = " ".join(f'<a href\\="{rebase(lk.url, app)}">Open in the app</a>' for lk in q.links if not lk.text)
        text = _gift_escape(_html(q.text, app)) + (" " + links if links else "")
        if kind == "multichoice":
            correct = str(key.key.get("correct"))
            body = " ".join(("=" if c == correct else "~") + _gift_escape(c) for c in q.choices)
        elif kind == "numerical":
            body = f"#{float(key.key['answer']):g}:{float(key.key.get('tolerance', 0)):g}"
        elif kind == "shortanswer":
            body = " ".join("=" + _gift_escape(str(a)) for a in key.key.get("answers", []))
        else:
            body = ""
        out += [f"::{_gift_escape(_question_name(q))}::[html]{text} {{{body}}}", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- notebooks
def notebook(sheet: str | Path) -> Any:
    """The sheet as a Jupyter notebook (``nbformat`` object): Markdown cells and its ```` ```python ```` cells,
    through jupytext's Markdown reader — the sheet is the one source; ``course/notebooks/`` holds the result."""
    import jupytext

    nb = jupytext.reads(Path(sheet).read_text(encoding="utf-8"), fmt="md")
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)
    for i, cell in enumerate(nb.cells):  # stable ids (nbformat's are random): the same sheet, the same file
        cell["id"] = f"cell-{i:03d}"
    return nb


def notebook_text(sheet: str | Path) -> str:
    """:func:`notebook` as the JSON text written to ``course/notebooks/<sheet>.ipynb``."""
    import nbformat

    return nbformat.writes(notebook(sheet)) + "\n"
