"""The course pack (course/): sheets, links into the app, teacher solutions, Moodle/GIFT export, notebooks.

* every graded answer of the solutions is recomputed from the shipped models (``fact:``): a retrained model that
  changes an answer fails here instead of silently making a solution wrong;
* ``python -m space.links check course/ --app URL`` passes against the launched app (every link opens what it says);
* each sheet exports to a Moodle XML quiz of the structure Moodle's importer expects;
* the notebooks are the sheets (regenerated = committed) and execute headless.
"""
from __future__ import annotations

import base64
import math
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, launched_app
from space import course
from space.links import main as links_main

SHEETS = course.sheets(ROOT / "course")


def _facts(key: dict) -> list[str]:
    f = key.get("fact")
    return [] if f is None else (list(f) if isinstance(f, list) else [f])


# ------------------------------------------------------------------------------------------------- the pack
def test_the_pack_has_four_sheets_with_24_app_links_and_questions():
    assert len(SHEETS) >= 4, SHEETS
    links = [lk for s in SHEETS for lk in course.links_in(s)]
    assert len(links) >= 24, len(links)
    for sheet in SHEETS:
        qs = course.questions(sheet)
        assert len(qs) >= 5, sheet.name
        assert course.solution_path(sheet).is_file(), f"{sheet.name} has no solutions file"
        assert any(lk.query.get("tab") for lk in course.links_in(sheet)), sheet.name


def test_every_graded_question_has_a_key_of_its_type_and_every_key_a_question():
    for sheet in SHEETS:
        qs = {q.id: q for q in course.questions(sheet)}
        keys = course.answers(sheet)
        assert set(keys) <= set(qs), f"{sheet.name}: solutions for questions the sheet does not have"
        for q in qs.values():
            if q.kind == "essay":
                continue
            assert q.id in keys and keys[q.id].kind == q.kind, f"{sheet.name} question {q.id}: no {q.kind} key"
            if q.kind == "multichoice":
                assert keys[q.id].key["correct"] in q.choices, (sheet.name, q.id)


@pytest.mark.parametrize("sheet", SHEETS, ids=lambda p: p.stem)
def test_the_solutions_numbers_are_those_of_the_shipped_models(sheet):
    for qid, ans in course.answers(sheet).items():
        for expression in _facts(ans.key):
            value = course.fact(expression)
            where = f"{sheet.name} question {qid} ({expression} = {value!r})"
            if ans.kind == "numerical":
                tol = float(ans.key.get("tolerance", 0))
                # the written answer is rounded to the digits asked for: within the tolerance of the model's value
                assert math.isclose(float(ans.key["answer"]), float(value), abs_tol=tol + 1e-9), where
            elif ans.kind == "multichoice":
                assert str(value) == str(ans.key["correct"]), where
            else:
                assert str(value) in [str(a) for a in ans.key["answers"]], where
    # numbers and ids always come from the models (a fact); a multiple choice may be conceptual (no fact)
    for qid, ans in course.answers(sheet).items():
        if ans.kind in ("numerical", "shortanswer"):
            assert _facts(ans.key), f"{sheet.name} question {qid}: a {ans.kind} answer needs a fact"


def test_a_changed_model_answer_is_caught(tmp_path):
    """The check above can fail: a solution whose number is not the model's is refused."""
    sheet = tmp_path / "01_x.md"
    sheet.write_text("# S\n\n### Question 1.1 (numerical)\nHow many test images?\n")
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "01_x.md").write_text(
        "### Question 1.1\n```answer\ntype: numerical\nanswer: 970\ntolerance: 0\nfact: images test\n```\n")
    key = course.answers(sheet)["1.1"]
    assert not math.isclose(key.key["answer"], course.fact(key.key["fact"]), abs_tol=0)


def test_malformed_sheets_are_refused_with_the_line(tmp_path):
    bad = tmp_path / "01_bad.md"
    bad.write_text("# S\n\n### Question 1 (numerical)\ntext\n")
    with pytest.raises(ValueError, match="01_bad.md:3"):
        course.questions(bad)
    bad.write_text("# S\n\n### Question 1.1 (multiple choice)\nOnly one choice?\n- yes\n")
    with pytest.raises(ValueError, match="at least two choices"):
        course.questions(bad)


# ----------------------------------------------------------------------------------------------- the links
@pytest.fixture(scope="module")
def app():
    with launched_app() as demo:
        demo.xcxr_context.catalog.wait_checked(60)
        yield demo


def test_every_link_of_the_pack_opens_what_it_says_on_the_running_app(app, capsys):
    assert links_main(["check", str(ROOT / "course"), "--app", app.local_url]) == 0, capsys.readouterr().out
    err = capsys.readouterr().err
    assert "links checked against" in err and ": 0 broken" in err


def test_broken_links_are_reported_one_line_each(app, tmp_path, capsys):
    sheet = tmp_path / "01_broken.md"
    base = course.APP_BASE
    sheet.write_text(
        "# Broken\n\n"
        f"[a]({base}?tab=heatmaps&model=no_such_model)\n"
        f"[b]({base}?tab=classify&example=PNEUMONIA/not_there.jpeg)\n"
        f"[c]({base}?tab=outcomes&model=pneumonia_cnn&split=test&threshold=gmean&outcome=FP&index=1"
        "&image=NORMAL/IM-0011-0001-0002.jpeg)\n"
        f"[d]({base}?tab=report&model=pneumonia_cnn&split=test&threshold=1.7)\n"
        f"[e]({base}?tab=outcomes&model=pneumonia_cnn&rev=0000000000)\n"
        f"[ok]({base}?tab=outcomes&model=pneumonia_cnn&split=test&threshold=gmean&outcome=FP&index=1)\n")
    assert links_main(["check", str(sheet), "--app", app.local_url]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    by_line = {}
    for line in lines:
        by_line.setdefault(int(line.split(":", 2)[1]), []).append(line)
    assert sorted(by_line) == [3, 4, 5, 6, 7], lines  # one line per broken link; the good one (line 8) is not listed
    assert all(len(v) == 1 for v in by_line.values()), lines
    assert "no_such_model" in by_line[3][0]
    assert "not_there" in by_line[4][0]
    assert "NORMAL/IM-0011-0001-0002.jpeg" in " ".join(by_line[5])
    assert "threshold" in " ".join(by_line[6])
    assert "retrained" in " ".join(by_line[7])


# ------------------------------------------------------------------------------------------------- Moodle
def _check_quiz(xml: str) -> list[ET.Element]:
    root = ET.fromstring(xml)
    assert root.tag == "quiz"
    questions = [q for q in root.findall("question") if q.get("type") != "category"]
    assert questions
    for q in questions:
        kind = q.get("type")
        assert kind in {"multichoice", "numerical", "shortanswer", "essay"}
        assert (q.findtext("name/text") or "").strip(), ET.tostring(q)[:200]
        assert (q.findtext("questiontext/text") or "").strip()
        assert q.find("questiontext").get("format") == "html"
        answers = q.findall("answer")
        if kind == "essay":
            assert not answers
            continue
        fractions = [float(a.get("fraction")) for a in answers]
        assert all((a.findtext("text") or "").strip() for a in answers)
        if kind == "multichoice":
            assert len(answers) >= 2 and sum(f for f in fractions if f > 0) == 100
        else:
            assert max(fractions) == 100
        if kind == "numerical":
            float(answers[0].findtext("text"))
            float(answers[0].findtext("tolerance"))
    return questions


@pytest.mark.parametrize("sheet", SHEETS, ids=lambda p: p.stem)
def test_each_sheet_exports_a_moodle_quiz(sheet):
    app = "https://teacher-xcxr.hf.space"
    xml = course.moodle_xml(sheet, app)
    questions = _check_quiz(xml)
    assert len(questions) == len(course.questions(sheet))
    graded = {q.id for q in course.questions(sheet) if q.kind != "essay"}
    assert sum(q.get("type") != "essay" for q in questions) == len(graded)
    # links point at the teacher's Space, none at the local default
    texts = " ".join(q.findtext("questiontext/text") for q in questions)
    if any(q.links for q in course.questions(sheet)):
        assert app in texts
    assert course.APP_BASE not in texts


def test_embedded_views_are_base64_files_moodle_can_import():
    sheet = next(s for s in SHEETS if any(q.embed for q in course.questions(s)))
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 16
    xml = course.moodle_xml(sheet, None, embed=lambda link: png)
    embedded = [q for q in _check_quiz(xml) if q.find("questiontext/file") is not None]
    assert embedded
    for q in embedded:
        f = q.find("questiontext/file")
        assert f.get("encoding") == "base64" and f.get("path") == "/"
        assert base64.b64decode(f.text) == png
        assert f"@@PLUGINFILE@@/{f.get('name')}" in q.findtext("questiontext/text")


def test_gift_export_has_every_question():
    for sheet in SHEETS:
        text = course.gift(sheet, "https://teacher-xcxr.hf.space")
        assert text.count("\n::") + text.startswith("::") == len(course.questions(sheet))
        assert "teacher-xcxr.hf.space" in text or not any(q.links for q in course.questions(sheet))


def test_the_moodle_command_prints_xml(capsys):
    assert links_main(["moodle", str(SHEETS[0]), "--no-images", "--app", "https://x.hf.space"]) == 0
    _check_quiz(capsys.readouterr().out)


# ----------------------------------------------------------------------------------------------- notebooks
def test_the_notebooks_are_the_sheets(capsys):
    assert links_main(["notebooks", str(ROOT / "course"), "--check"]) == 0, capsys.readouterr().out
    assert len(list((ROOT / "course" / "notebooks").glob("*.ipynb"))) == len(SHEETS)


@pytest.mark.parametrize("sheet", SHEETS, ids=lambda p: p.stem)
def test_the_notebooks_execute(sheet):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    path = ROOT / "course" / "notebooks" / (sheet.stem + ".ipynb")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    ran = [c for c in nb.cells if c.cell_type == "code" and "skip-execution" not in c.metadata.get("tags", [])]
    assert ran and all(c.get("execution_count") for c in ran)


def test_an_embedded_view_is_what_the_app_shows():
    """The picture of an ``embed`` question is the tab's own view: its "Reproduce in Python" code, run."""
    import io

    import numpy as np
    from PIL import Image

    from space.app import make_context
    from space.tabs.heatmaps import heatmaps_for
    from space.context import load_image

    ctx = make_context()
    q = {"tab": "heatmaps", "model": "pneumonia_cnn", "example": "PNEUMONIA/person1071_virus_1774.jpeg",
         "scale": "per_map"}
    png = course.render_view(ctx, q)
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    m = ctx.model("pneumonia_cnn")
    grey, _ = load_image(ctx, None, q["example"], m, original=False)
    left, middle, right, _ = heatmaps_for(m, grey, None, True, "bilinear", "per_map", "saliency")
    assert np.array_equal(shown[:left.shape[0], :left.shape[1]], left)
    assert shown.shape[1] == left.shape[1] + middle.shape[1] + right.shape[1] + 16
    assert course.render_view(ctx, {"tab": "trust"}) is None


def test_the_command_says_what_is_wrong(capsys, tmp_path):
    assert links_main(["check", str(ROOT / "course"), "--app", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the app at http://127.0.0.1:9" in capsys.readouterr().err
    assert links_main(["moodle", str(tmp_path / "missing.md")]) == 2
    assert "missing.md" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert links_main(["check", str(tmp_path / "empty")]) == 1
    assert "no app links" in capsys.readouterr().out
