"""``python -m space.deploy`` end to end against the Hub emulator: publish, publish again (nothing committed), then
download the Space and run it in a subprocess the way a Space runs it, with the models loaded from the emulator.

The published Space is self-contained: the subprocess runs ``python space/app.py`` from the downloaded snapshot,
with a fresh ``HF_HOME``, no ``PYTHONPATH`` and nothing of this checkout; every tab's API must answer with the
default model ``pneumonia_cnn`` fetched from the emulator.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
OWNER = "course-deploy"  # the emulator keeps state for the whole session: an owner of this file's own
SPACE = f"{OWNER}/xcxr"
MODEL_REPO = f"{OWNER}/xcxr-pneumonia_cnn"
STUDY_REPO = f"{OWNER}/xcxr-study1_finetuning-small-pneumonia_cnn"
DATASET = f"{OWNER}/xcxr-chest-xray-splits"
#: What the Space must never hold.
NOT_IN_SPACE = re.compile(r"^(tests|runs|models|train|benchmarks|\.ci)/|/results/|/checkpoint/|__pycache__")


def _front_matter(text: str) -> dict:
    m = re.match(r"\A---\n(.*?)\n---\n", text, re.S)
    assert m, text[:200]
    return yaml.safe_load(m.group(1))


def _writes(requests: list[dict]) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in requests if r["method"] in ("POST", "PUT", "DELETE")]


# --- no network --------------------------------------------------------------------------------------------------

def test_dry_run_lists_every_repo_and_uploads_nothing(hub, capsys):
    from space.deploy import main

    before = len(hub.requests)
    assert main([OWNER, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert len(hub.requests) == before, "a dry run must not contact the Hub"
    for repo in (MODEL_REPO, STUDY_REPO, DATASET, SPACE):
        assert re.search(rf"^(model|dataset|space) {re.escape(repo)}\b", out, re.M), repo
    assert "(app model pneumonia_cnn)" in out and "(app model study:study1_finetuning/small/pneumonia_cnn)" in out
    # one line per file: repo, path, size
    assert re.search(rf"^  {re.escape(MODEL_REPO)}  model\.safetensors  [\d.]+ kB$", out, re.M)
    assert re.search(rf"^  {re.escape(DATASET)}  chest_xray/test/NORMAL/\S+\.jpeg  [\d.]+ kB$", out, re.M)
    space_paths = re.findall(rf"^  {re.escape(SPACE)}  (\S+)  ", out, re.M)
    assert {"space/app.py", "space/hub_models.yaml", "lib/__init__.py", "README.md", "requirements.txt",
            "LICENSE", "pyproject.toml", "docs/screenshots/classify.png"} <= set(space_paths)
    assert any(p.startswith("examples/") for p in space_paths) and any(p.startswith("data/") for p in space_paths)
    assert not [p for p in space_paths if NOT_IN_SPACE.search(p)]
    assert not re.search(r"checkpoint/", out)
    assert re.search(r"^dry run: \d+ model repo\(s\), 1 dataset repo\(s\), 1 Space; .* nothing was uploaded$", out,
                     re.M)


def test_repo_names():
    from space.deploy import MAX_REPO_NAME, model_repo_name

    assert model_repo_name("xcxr", "pneumonia_cnn") == "xcxr-pneumonia_cnn"
    assert model_repo_name("xcxr", "study:study1_finetuning/small/pneumonia_cnn") == \
        "xcxr-study1_finetuning-small-pneumonia_cnn"
    assert model_repo_name("xcxr", "study:a b/c--d/..e") == "xcxr-a-b-c-d-.e"
    long1, long2 = (model_repo_name("xcxr", "study:" + "x" * 120 + s) for s in ("/a", "/b"))
    assert len(long1) <= MAX_REPO_NAME and len(long2) <= MAX_REPO_NAME and long1 != long2


@pytest.mark.parametrize("argv,message", [
    (["no/such owner", "--dry-run"], "owner"),
    ([OWNER, "--space", "bad--name", "--dry-run"], "not a repo name"),
])
def test_bad_names_exit_2(argv, message, capsys):
    from space.deploy import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_no_token_exits_2(hub, hf_cache, monkeypatch, capsys):
    import huggingface_hub.constants as hf_constants

    from space.deploy import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(hf_cache / "no-token"))
    before = len(hub.requests)
    with pytest.raises(SystemExit) as info:
        main([OWNER])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no Hugging Face token") and "--token" in err and "HF_TOKEN" in err
    assert len(hub.requests) == before


def test_unreachable_hub_is_a_one_line_error(hub, monkeypatch, capsys):
    import huggingface_hub.constants as hf_constants

    from space.deploy import main

    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    with pytest.raises(SystemExit) as info:
        main([OWNER, "--token", "hf_test"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: model repo {MODEL_REPO}: cannot reach the Hub") and len(err.splitlines()) == 1
    assert "hf_test" not in err


def test_refused_write_is_a_one_line_error(hub, monkeypatch, capsys):
    import huggingface_hub

    from space.deploy import main

    real = huggingface_hub.HfApi.create_repo

    def refuse(self, repo_id, **kw):  # the Hub's answer to a token without write access to the owner
        if kw.get("repo_type") == "dataset":
            import httpx2
            response = httpx2.Response(403, request=httpx2.Request("POST", f"{hub.url}/api/repos/create"))
            raise huggingface_hub.errors.HfHubHTTPError("403 Forbidden", response=response,
                                                        server_message="You don't have the rights to create a "
                                                                       "dataset under the namespace")
        return real(self, repo_id, **kw)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    with pytest.raises(SystemExit) as info:
        main(["course-deploy-refused", "--token", "hf_test_refused"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    line = err.splitlines()[-1]  # after the upload progress bars of the model repos
    assert line.startswith("error: dataset repo course-deploy-refused/xcxr-chest-xray-splits: the token may not "
                           "write there (403: You don't have the rights") and line.endswith("access to the owner")
    assert "hf_test_refused" not in err
    assert not hub.repo_exists("course-deploy-refused/xcxr", repo_type="space")  # the Space comes last


# --- the catalog side: names mapped to Hub repos -------------------------------------------------------------------

def test_hub_models_yaml_maps_app_names_to_repos(hub, hf_cache, tmp_path, monkeypatch):
    from space.catalog import ModelCatalog, hub_models_from_config, hub_repos_from_config

    monkeypatch.delenv("XCXR_HUB_MODELS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("models:\n  pneumonia_cnn: o/xcxr-pneumonia_cnn\n  study:s/v/m: o/xcxr-s-v-m\n")
    assert hub_models_from_config(mapping) == {"pneumonia_cnn": "o/xcxr-pneumonia_cnn", "study:s/v/m": "o/xcxr-s-v-m"}
    assert hub_repos_from_config(mapping) == ["o/xcxr-pneumonia_cnn", "o/xcxr-s-v-m"]
    listed = tmp_path / "list.yaml"
    listed.write_text("models: [a/b, c/d]\n")  # the old form keeps working
    assert hub_models_from_config(listed) == {"a/b": "a/b", "c/d": "c/d"}
    assert hub_repos_from_config(listed) == ["a/b", "c/d"]
    monkeypatch.setenv("XCXR_HUB_MODELS", "pneumonia_cnn=o/x, c/d ,")
    assert hub_models_from_config(mapping) == {"pneumonia_cnn": "o/x", "c/d": "c/d"}
    monkeypatch.delenv("XCXR_HUB_MODELS")

    # the default model's name resolves to its Hub repo when no local folder has that name
    local = ROOT / "models" / "pneumonia_cnn"
    repo = "course-deploy-catalog/xcxr-pneumonia_cnn"
    hub.add_files(repo, {n: (local / n).read_bytes() for n in ("config.json", "model.safetensors")})
    empty = tmp_path / "empty"
    empty.mkdir()
    cat = ModelCatalog(models_dir=empty, runs_dir=empty, studies_dir=empty, hub_repos={"pneumonia_cnn": repo})
    first = cat.entries()[0]
    assert (first.name, first.source, first.location) == ("pneumonia_cnn", "hub", repo)
    assert cat.default() == "pneumonia_cnn" and cat.names() == ["pneumonia_cnn"]
    from lib.models import load_model
    want = load_model(str(local)).state_dict()
    got = cat.get(None).state_dict()
    assert want.keys() == got.keys() and all((want[k] == got[k]).all() for k in want)
    # a local folder of the same name wins
    cat = ModelCatalog(models_dir=ROOT / "models", runs_dir=empty, studies_dir=empty,
                       hub_repos={"pneumonia_cnn": repo})
    assert {e.name: e.source for e in cat.entries()}["pneumonia_cnn"] == "bundled"


# --- a small tree: what changes is what is uploaded ----------------------------------------------------------------

def _tiny_checkout(root: Path) -> Path:
    from lib.models import create_model, save_model

    save_model(create_model("pneumonia_cnn", img_size=32), root / "models" / "tiny")
    card = '---\nlicense: mit\n---\nload_model("OWNER/NAME")  # …/OWNER/SPACE\n'
    (root / "models" / "tiny" / "README.md").write_text(card)
    (root / "models" / "tiny" / "checkpoint").mkdir()
    (root / "models" / "tiny" / "checkpoint" / "state.pt").write_bytes(b"training state")
    (root / "models" / "tiny" / "predictions").mkdir()
    (root / "models" / "tiny" / "predictions" / "p.npz").write_bytes(b"\x00npz")
    (root / "space").mkdir()
    (root / "space" / "app.py").write_text("print('app')\n")
    (root / "space" / "hub_models.yaml").write_text("models: [teacher/extra-model]\n")
    (root / "README.md").write_text("---\ntitle: t\nsdk: gradio\nmodels: []\n---\n# t\n"
                                    "![s](docs/s.png) [x](tests/x.py)\n")
    (root / "docs").mkdir()
    (root / "docs" / "s.png").write_bytes(b"\x89PNG fake")
    (root / "tests").mkdir()
    (root / "tests" / "x.py").write_text("")
    return root


def test_second_run_uploads_only_what_changed(hub, tmp_path):
    from space.deploy import deploy

    owner = "course-deploy-tiny"
    root = _tiny_checkout(tmp_path / "checkout")
    first = {r.repo_id: r for r in deploy(owner, root=root)}
    assert set(first) == {f"{owner}/xcxr-tiny", f"{owner}/xcxr"}  # no data/: no dataset repo
    model = hub.files(f"{owner}/xcxr-tiny")
    assert set(model) == {".gitattributes", "config.json", "model.safetensors", "README.md", "predictions/p.npz"}
    card = model["README.md"].decode()
    assert card == f'---\nlicense: mit\n---\nload_model("{owner}/xcxr-tiny")  # …/{owner}/xcxr\n'
    assert "OWNER/NAME" in (root / "models" / "tiny" / "README.md").read_text()  # the checkout is never edited
    space = hub.files(f"{owner}/xcxr", repo_type="space")
    assert set(space) == {".gitattributes", "README.md", "space/app.py", "space/hub_models.yaml", "docs/s.png"}
    assert yaml.safe_load(space["space/hub_models.yaml"])["models"] == {
        "teacher/extra-model": "teacher/extra-model", "tiny": f"{owner}/xcxr-tiny"}  # the checkout's list is kept
    heads = {r: hub.head(r, repo_type=first[r].repo_type) for r in first}

    again = deploy(owner, root=root)
    assert [(r.uploaded, r.deleted, r.commit) for r in again] == [([], [], None)] * 2
    assert {r.repo_id: hub.head(r.repo_id, repo_type=r.repo_type) for r in again} == heads

    (root / "space" / "app.py").write_text("print('app v2')\n")
    (root / "docs" / "s.png").unlink()
    (root / "README.md").write_text((root / "README.md").read_text().replace("![s](docs/s.png)", ""))
    (root / "space" / "new.py").write_text("")
    third = {r.repo_id: r for r in deploy(owner, root=root)}
    assert third[f"{owner}/xcxr-tiny"].commit is None
    sp = third[f"{owner}/xcxr"]
    assert sorted(sp.uploaded) == ["README.md", "space/app.py", "space/new.py"] and sp.deleted == ["docs/s.png"]
    commit = hub.commits(f"{owner}/xcxr", repo_type="space")[0]
    assert commit["oid"] == sp.commit and commit["parent"] == heads[f"{owner}/xcxr"]
    assert hub.files(f"{owner}/xcxr", repo_type="space")["space/app.py"] == b"print('app v2')\n"


# --- the whole project, then the Space run from its snapshot ------------------------------------------------------

def _call_every_tab(client, handle_file, image: Path) -> dict:
    """Call each tab's endpoint with the parameters ``view_api`` lists: an uploaded image where a file is asked
    for, the default model (``pneumonia_cnn``), the bundled examples as the split, few steps; defaults otherwise."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    overrides = {"split_name": "examples", "n_steps": 4, "top_k": 4}
    out = {}
    for name in ("/classify", "/heatmaps", "/filters", "/feature_maps", "/outcomes", "/report", "/trust"):
        assert name in api, f"{name} missing from the Space's API: {sorted(api)}"
        kwargs = {}
        for p in api[name]["parameters"]:
            pname = p["parameter_name"]
            if p["python_type"]["type"] == "filepath":
                kwargs[pname] = handle_file(str(image))
            elif pname in ("model", "name", "model_name"):
                assert p["parameter_default"] == "pneumonia_cnn", (name, p["parameter_default"])
                assert "study:study1_finetuning/small/pneumonia_cnn" in p["python_type"]["type"]
            elif pname in overrides and pname == "split_name":
                if overrides[pname] in p["python_type"]["type"]:
                    kwargs[pname] = overrides[pname]
            elif pname in overrides:
                kwargs[pname] = overrides[pname]
            elif not p["parameter_has_default"]:
                raise AssertionError(f"{name}: no value for the required parameter {pname!r}")
        out[name] = client.predict(api_name=name, **kwargs)
    return out


def test_deploy_twice_then_run_the_space_from_the_hub(hub, tmp_path, hf_cache):
    from gradio_client import Client, handle_file
    from huggingface_hub import snapshot_download

    from space.deploy import deploy, plan

    t0 = time.monotonic()
    planned = plan(OWNER)
    results = deploy(OWNER)
    assert [r.repo_id for r in results] == [p.repo_id for p in planned] and results[-1].repo_id == SPACE
    assert all(r.commit for r in results)
    assert {MODEL_REPO, STUDY_REPO} <= {r.repo_id for r in results if r.repo_type == "model"}

    # model repos: the folder's files, the card's placeholders replaced in the uploaded copy only
    local = ROOT / "models" / "pneumonia_cnn"
    files = hub.files(MODEL_REPO)
    assert files["model.safetensors"] == (local / "model.safetensors").read_bytes()
    assert files["config.json"] == (local / "config.json").read_bytes()
    assert not [p for p in files if p.startswith("checkpoint/")]
    want = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()
            and not p.relative_to(local).as_posix().startswith("checkpoint/")}
    assert set(files) - {".gitattributes"} == want
    card = files["README.md"].decode()
    assert "OWNER/NAME" not in card and "OWNER/SPACE" not in card and f'load_model("{MODEL_REPO}")' in card
    assert "OWNER/NAME" in (local / "README.md").read_text()

    # the dataset repo: every bundled image, and a card with the licence, the task and the source
    ds = hub.files(DATASET, repo_type="dataset")
    images = sorted(p.relative_to(ROOT / "data").as_posix() for p in (ROOT / "data" / "chest_xray").rglob("*.jpeg"))
    assert sorted(p for p in ds if p.endswith(".jpeg")) == images
    meta = _front_matter(ds["README.md"].decode())
    assert meta["license"] == "cc-by-4.0" and meta["task_categories"] == ["image-classification"]
    assert {d["split"] for d in meta["configs"][0]["data_files"]} == {"validation", "test"}
    assert "doi:10.17632/rscbjbr9sj.2" in ds["README.md"].decode()

    # the Space: code, examples, data; README front matter and hub_models.yaml name the published repos
    sp = hub.files(SPACE, repo_type="space")
    assert not [p for p in sp if NOT_IN_SPACE.search(p)]
    assert {"space/app.py", "lib/models/hub.py", "requirements.txt", "LICENSE", "pyproject.toml"} <= set(sp)
    assert sum(p.startswith("data/chest_xray/") for p in sp) == len(images)
    meta = _front_matter(sp["README.md"].decode())
    model_ids = [r.repo_id for r in results if r.repo_type == "model"]
    assert meta["models"] == model_ids and meta["preload_from_hub"] == model_ids and meta["datasets"] == [DATASET]
    assert meta["sdk"] == "gradio" and meta["app_file"] == "space/app.py"
    mapping = yaml.safe_load(sp["space/hub_models.yaml"])["models"]
    assert mapping["pneumonia_cnn"] == MODEL_REPO
    assert mapping["study:study1_finetuning/small/pneumonia_cnn"] == STUDY_REPO
    assert hub.repo_exists(SPACE, repo_type="space")

    # again: nothing changed, so nothing is uploaded and no repo gets a commit
    heads = {r.repo_id: hub.head(r.repo_id, repo_type=r.repo_type) for r in results}
    before = len(hub.requests)
    again = deploy(OWNER)
    assert [(r.repo_id, r.uploaded, r.deleted, r.commit) for r in again] == \
        [(r.repo_id, [], [], None) for r in results]
    assert {r.repo_id: hub.head(r.repo_id, repo_type=r.repo_type) for r in again} == heads
    writes = _writes(hub.requests[before:])
    assert all(w == "POST /api/repos/create" for w in writes), writes  # create_repo(exist_ok=True) only
    t_deploy = time.monotonic() - t0

    # the Space as a Space runs it: its own snapshot, a fresh HF_HOME, nothing of this checkout
    snap = Path(snapshot_download(SPACE, repo_type="space", local_dir=tmp_path / "space"))
    shutil.rmtree(snap / ".cache", ignore_errors=True)  # the download's own metadata
    assert not (snap / "models").exists() and (snap / "space" / "app.py").is_file()
    home = tmp_path / "space_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "XCXR_", "GRADIO_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home / "hf"), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(home / "gradio"), PYTHONPATH="",
               XCXR_CACHE_DIR=str(home / "xcxr"), MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    port = free_port()
    log_path = tmp_path / "space.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "space/app.py", "--port", str(port)], cwd=snap, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the Space exited:\n{log_path.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"the Space did not start:\n{log_path.read_text()[-3000:]}"
                time.sleep(0.5)
        client = Client(url, verbose=False)
        example = sorted((snap / "examples" / "chest_xray_test" / "PNEUMONIA").glob("*.jpeg"))[0]
        out = _call_every_tab(client, handle_file, example)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # the default model came from the emulator into the Space's own cache, and it is the checkout's model
    assert (home / "hf" / "hub" / f"models--{MODEL_REPO.replace('/', '--')}").is_dir()
    from lib.data import load_grey
    from lib.models import get_config, load_model, predict_proba
    import torch

    model = load_model(str(local))
    p = float(predict_proba(model, torch.from_numpy(load_grey(example, get_config(model)["img_size"]))[None, None])[0])
    probs = {c["label"]: c["confidence"] for c in out["/classify"]["confidences"]}
    assert probs["PNEUMONIA"] == pytest.approx(p, abs=1e-6)
    assert len(out["/heatmaps"]) >= 3 and len(out["/feature_maps"]) >= 1
    gallery, _ = out["/filters"]
    assert len(gallery) == len(model_ids)  # every published model, loaded from the emulator
    counts = out["/outcomes"][0]
    assert sum(counts.values()) > 0
    metrics = out["/report"][0]
    assert "threshold" in metrics
    assert out["/trust"][0]["randomisation"]
    assert "Traceback" not in log_path.read_text()
    assert t_deploy < 60, f"publishing twice took {t_deploy:.0f} s"
