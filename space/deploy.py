"""Publish the app to the Hugging Face Hub with one command: the models, the bundled data splits and the Space.

    python -m space.deploy OWNER                    # token from HF_TOKEN or `hf auth login`
    python -m space.deploy OWNER --dry-run          # list what would be uploaded (repo, path, size); no network
    python -m space.deploy OWNER --space NAME       # another Space name (default: xcxr); repos are named NAME-…
    python -m space.deploy OWNER --token hf_…       # a write token for OWNER (a user or an organisation)

What it creates (``NAME`` = the Space name, ``xcxr`` by default), models and data first, the Space last:

* one **model repo** per shipped model (:func:`space.catalog.shipped_models`): ``models/<model>/`` becomes
  ``OWNER/NAME-<model>`` and a study's best model ``studies/<study>/results/<variant>/best/<model>/`` becomes
  ``OWNER/NAME-<study>-<variant>-<model>``. The folder's files go up as they are (config, weights, card, metrics,
  history, figures, ``predictions/``), never ``checkpoint/``; in the uploaded model card the placeholders
  ``OWNER/NAME`` and ``OWNER/SPACE`` (:data:`lib.reporting.MODEL_REPO_PLACEHOLDER`, ``CODE_REPO_PLACEHOLDER``)
  become the real repo ids. Files in the checkout are never changed.
* one **dataset repo** ``OWNER/NAME-chest-xray-splits``: ``data/chest_xray/{val,test}/…`` with a dataset card
  (licence, task, source and citation from ``data/README.md``; the ``val``/``test`` folders as splits).
* the **Space** ``OWNER/NAME`` (Gradio): ``lib/``, ``space/``, ``examples/``, ``data/``, ``requirements.txt`` (its
  runtime part), ``LICENSE``, ``pyproject.toml`` and the files ``README.md`` links to (screenshots, figures, the
  studies' write-ups); not ``tests/``, ``runs/``, ``models/``, study results or ``.ci``. Its ``README.md`` front
  matter lists the published ``models``/``datasets`` and ``preload_from_hub`` (the model repos are in the Space's
  cache when it wakes), and a generated ``space/hub_models.yaml`` maps the app's model names to the repos
  (``pneumonia_cnn: OWNER/NAME-pneumonia_cnn``), so ``?model=pneumonia_cnn`` opens the same model on the Space as
  in a local clone.

**Idempotent.** Before committing to a repo the command lists the repo's files at its current commit (``git``
blob id, or the sha256 of an LFS file) and compares them with the local content: only new or changed files are
uploaded, files the repo has and the plan has not are deleted (so the Space's data splits equal the local ones),
and a repo with no difference gets no commit at all. The commit names the commit it was compared with
(``parent_commit``), so a change made on the Hub in the meantime fails the run instead of being overwritten.

Errors (no token, a refused token, an unreachable Hub, a name the Hub does not allow) end with ``error: …`` and
exit status 2, like ``python -m train``.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python space/deploy.py` puts space/ first on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from lib.errors import XcxrError, XcxrValueError  # noqa: E402
from lib.models.hub import PRIVATE_PATTERNS, HubAuthError  # noqa: E402
from lib.reporting import CODE_REPO_PLACEHOLDER, MODEL_REPO_PLACEHOLDER  # noqa: E402
from space.catalog import hub_models_from_config, shipped_models  # noqa: E402

__all__ = ["DeployError", "RepoPlan", "RepoResult", "FileToUpload", "plan", "deploy", "main", "model_repo_name",
           "DEFAULT_SPACE", "DATASET_SUFFIX", "SPACE_DIRS", "SPACE_FILES"]

log = logging.getLogger("space.deploy")

#: The Space's name when ``--space`` is not given; every repo's name starts with the Space's name.
DEFAULT_SPACE = "xcxr"
#: The dataset repo is ``OWNER/<space>-<DATASET_SUFFIX>``.
DATASET_SUFFIX = "chest-xray-splits"
#: Folders of the checkout the Space runs from (everything in them, less caches and hidden files).
SPACE_DIRS = ("lib", "space", "examples", "data")
#: Single files of the checkout the Space needs (``README.md`` is rewritten, see :func:`space_readme`).
SPACE_FILES = ("requirements.txt", "LICENSE", "pyproject.toml")
#: Never uploaded to the Space, even when ``README.md`` links into them.
_SPACE_EXCLUDED_TOP = {"tests", "runs", "models", ".ci", ".git", "benchmarks", "train"}
_EXCLUDED_PARTS = {"__pycache__", "checkpoint", "results", ".ipynb_checkpoints"}
_SKIPPED_NAMES = {"train_args.lock"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".tmp")
#: The longest repo name the Hub accepts.
MAX_REPO_NAME = 96
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_OWNER_OK = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FRONT_MATTER = re.compile(r"\A---\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


class DeployError(XcxrError, RuntimeError):
    """Publishing failed (the Hub refused, cannot be reached, or the local tree is not deployable); says why."""


# -- the plan: what goes where (no network) -------------------------------------------------------------------------

@dataclass(frozen=True)
class FileToUpload:
    """One file of a repo: ``path`` in the repo, its content from ``source`` (a local file) or ``data`` (generated
    or rewritten)."""

    path: str
    source: Path | None = None
    data: bytes | None = None

    def content(self) -> bytes:
        return self.data if self.data is not None else self.source.read_bytes()  # type: ignore[union-attr]

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.source.stat().st_size  # type: ignore[union-attr]


@dataclass
class RepoPlan:
    """One repo to publish: its id and type (``"model"``, ``"dataset"`` or ``"space"``), its files and, for a
    model repo, the name the app lists the model under."""

    repo_id: str
    repo_type: str
    files: list[FileToUpload] = field(default_factory=list)
    model_name: str | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def url_path(self) -> str:
        return {"model": "", "dataset": "datasets/", "space": "spaces/"}[self.repo_type] + self.repo_id


def _check_name(repo_id: str) -> str:
    owner, _, name = repo_id.partition("/")
    if not _OWNER_OK.match(owner):
        raise XcxrValueError(f"owner {owner!r} is not a Hub user or organisation name (letters, digits and '-')")
    if not (_NAME_OK.match(name) and len(name) <= MAX_REPO_NAME and "--" not in name and ".." not in name
            and not name.endswith((".", "-", ".git"))):
        raise XcxrValueError(f"{repo_id!r} is not a repo name the Hub accepts (letters, digits, '-', '_', '.'; at "
                             f"most {MAX_REPO_NAME} characters; no '--' or '..')")
    return repo_id


def model_repo_name(prefix: str, model_name: str) -> str:
    """The repo name (without owner) of the app's model ``model_name``: ``pneumonia_cnn`` → ``xcxr-pneumonia_cnn``,
    ``study:study1_finetuning/small/pneumonia_cnn`` → ``xcxr-study1_finetuning-small-pneumonia_cnn``.

    Characters the Hub does not allow become ``-``; a name over 96 characters is cut and ends with a short hash of
    the full name, so two long names never meet.

    Example:
        >>> model_repo_name("xcxr", "study:study1_finetuning/small/pneumonia_cnn")
        'xcxr-study1_finetuning-small-pneumonia_cnn'
    """
    slug = model_name.split(":", 1)[1] if model_name.startswith("study:") else model_name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", slug.replace("/", "-"))
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", f"{prefix}-{slug}")).strip("-.")
    if len(name) > MAX_REPO_NAME:
        digest = hashlib.sha1(model_name.encode()).hexdigest()[:8]
        name = name[: MAX_REPO_NAME - 9].rstrip("-.") + "-" + digest
    return name


def _walk(folder: Path, base: Path) -> list[tuple[str, Path]]:
    """``(path relative to base, file)`` for the regular files under ``folder``, sorted; no symlinks, hidden files,
    caches, ``checkpoint/`` training state or temporary files."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):  # os.walk does not follow symlinked folders
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _EXCLUDED_PARTS
                             and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith(".") or name in _SKIPPED_NAMES or name.endswith(_SKIPPED_SUFFIXES) or p.is_symlink() \
                    or not p.is_file():
                continue
            out.append((p.relative_to(base).as_posix(), p))
    return out


def _replace_placeholders(text: str, model_repo: str | None, space_id: str) -> str:
    if model_repo is not None:
        text = text.replace(MODEL_REPO_PLACEHOLDER, model_repo)
    return text.replace(CODE_REPO_PLACEHOLDER, space_id)


def _model_files(folder: Path, repo_id: str, space_id: str) -> list[FileToUpload]:
    files = []
    for rel, p in _walk(folder, folder):
        if any(Path(rel).match(pat) for pat in PRIVATE_PATTERNS):  # training state (_walk skips checkpoint/ too)
            continue
        if rel == "README.md":  # the model card: its usage snippet names the real repos
            text = p.read_text(encoding="utf-8")
            files.append(FileToUpload(rel, data=_replace_placeholders(text, repo_id, space_id).encode()))
        else:
            files.append(FileToUpload(rel, source=p))
    return files


def _split_front_matter(text: str) -> tuple[dict, str]:
    m = _FRONT_MATTER.match(text)
    if m is None:
        return {}, text
    data = yaml.safe_load(m.group(1)) or {}
    if not isinstance(data, dict):
        raise DeployError("README.md: its YAML front matter is not a mapping")
    return data, text[m.end():]


def _with_front_matter(meta: dict, body: str) -> str:
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=False)
    return f"---\n{head}---\n{body if body.startswith(chr(10)) else chr(10) + body}"


def dataset_card(repo_id: str, space_id: str, attribution: str, splits: dict[str, int]) -> str:
    """The dataset repo's ``README.md``: front matter (licence, task, splits as configs) + ``data/README.md``'s
    attribution + how to load it + citations."""
    meta = {
        "license": "cc-by-4.0",
        "task_categories": ["image-classification"],
        "tags": ["medical-imaging", "chest-x-ray", "pneumonia", "xcxr"],
        "pretty_name": "Chest X-ray pneumonia (Kermany et al. 2018): validation and test splits, 224 px",
        "size_categories": ["1K<n<10K"],
        "configs": [{"config_name": "default", "data_files": [
            {"split": {"val": "validation"}.get(s, s), "path": f"chest_xray/{s}/*/*"} for s in splits]}],
    }
    counts = ", ".join(f"{s}: {n} images" for s, n in splits.items())
    body = attribution.split("\n", 1)[1].strip() if attribution.startswith("# ") else attribution.strip()
    return _with_front_matter(meta, f"""
# Chest X-ray pneumonia — the course's validation and test splits

The validation and test splits of the paediatric chest X-rays (NORMAL vs PNEUMONIA) that the teaching app
[{space_id}](https://huggingface.co/spaces/{space_id}) evaluates its models on ({counts}). Class folders:
`chest_xray/<split>/<NORMAL|PNEUMONIA>/<file>.jpeg`; the file names are the original ones and carry the patient id
(`person123_…`, `IM-0001-…`). **Not for diagnosis**: a teaching data set.

```python
from datasets import load_dataset
ds = load_dataset("{repo_id}")          # splits "validation" and "test"; label from the class folder
```

## Provenance (the repository's `data/README.md`)

{body}

## Citation

```bibtex
@article{{kermany2018identifying,
  title   = {{Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep Learning}},
  author  = {{Kermany, Daniel S. and Goldbaum, Michael and Cai, Wenjia and others}},
  journal = {{Cell}}, volume = {{172}}, number = {{5}}, pages = {{1122--1131}}, year = {{2018}},
  doi     = {{10.1016/j.cell.2018.02.010}}
}}
@misc{{kermany2018data,
  title     = {{Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification}},
  author    = {{Kermany, Daniel and Zhang, Kang and Goldbaum, Michael}},
  publisher = {{Mendeley Data}}, version = {{2}}, year = {{2018}}, doi = {{10.17632/rscbjbr9sj.2}}
}}
```
""")


def space_readme(text: str, space_id: str, model_repos: list[str], dataset_repos: list[str]) -> str:
    """The project ``README.md`` for the Space: its front matter's ``models``, ``datasets`` and
    ``preload_from_hub`` set to the published repos (``preload_from_hub``: ``- REPO_ID`` downloads the whole repo
    into the Space's cache at build time; see https://huggingface.co/docs/hub/spaces-config-reference), and
    ``OWNER/SPACE`` replaced by the Space's id."""
    meta, body = _split_front_matter(text)
    meta.setdefault("sdk", "gradio")  # what makes it a Gradio Space at all, should the README lack it
    meta.setdefault("app_file", "space/app.py")
    meta["models"] = list(model_repos)
    meta["datasets"] = list(dataset_repos)
    meta["preload_from_hub"] = list(model_repos)
    return _with_front_matter(meta, _replace_placeholders(body, None, space_id))


def hub_models_yaml(mapping: dict[str, str], space_id: str) -> str:
    """The Space's ``space/hub_models.yaml``: ``models:`` maps each app model name to its Hub repo."""
    head = (f"# Written by `python -m space.deploy` for the Space {space_id}: the app's model names -> the Hub repos\n"
            "# they were published to, so deep links (?model=pneumonia_cnn) name the same models as in a local clone.\n"
            "# Read by space/catalog.py (hub_models_from_config); XCXR_HUB_MODELS replaces it when set.\n")
    return head + yaml.safe_dump({"models": dict(mapping)}, sort_keys=False, allow_unicode=True, width=1000)


def _readme_links(readme: str, root: Path) -> list[tuple[str, Path]]:
    """Local files ``README.md`` links to (screenshots, figures, write-ups), those the Space may hold."""
    out = {}
    for target in _LINK.findall(readme):
        target = target.split("#", 1)[0].split("?", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
            continue
        p = (root / target)
        try:
            rel = p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:  # ../ out of the checkout
            continue
        parts = rel.split("/")
        if parts[0] in _SPACE_EXCLUDED_TOP or _EXCLUDED_PARTS & set(parts) or p.is_symlink() or not p.is_file():
            continue
        out[rel] = root / rel
    return sorted(out.items())


def _requirements(text: str) -> str:
    """The runtime part of ``requirements.txt`` (up to its ``# Tests`` section): what the Space installs."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip().lower().startswith("# tests"):
            return "".join(lines[:i]).rstrip("\n") + "\n"
    return text


def plan(owner: str, space: str = DEFAULT_SPACE, root: str | os.PathLike = ROOT) -> list[RepoPlan]:
    """What :func:`deploy` publishes from the checkout ``root``, without any network: the model repos, the dataset
    repo, then the Space (see the module docstring).

    Example:
        >>> [p.repo_id for p in plan("someuser")]                     # doctest: +NORMALIZE_WHITESPACE
        ['someuser/xcxr-pneumonia_cnn', 'someuser/xcxr-study1_finetuning-small-pneumonia_cnn', …,
         'someuser/xcxr-chest-xray-splits', 'someuser/xcxr']
    """
    root = Path(root)
    space_id = _check_name(f"{owner}/{space}")
    plans: list[RepoPlan] = []
    mapping: dict[str, str] = {}
    for name, folder in shipped_models(root / "models", root / "studies").items():
        repo_id = _check_name(f"{owner}/{model_repo_name(space, name)}")
        if repo_id in mapping.values():
            other = next(n for n, r in mapping.items() if r == repo_id)
            raise DeployError(f"models {other!r} and {name!r} would both be published as {repo_id}; rename one")
        mapping[name] = repo_id
        plans.append(RepoPlan(repo_id, "model", _model_files(folder, repo_id, space_id), model_name=name))
    if not plans:
        raise DeployError(f"no model to publish: no models/*/config.json or studies/*/results/*/best/*/ in "
                          f"{root.name}/")

    data = root / "data"
    dataset_ids: list[str] = []
    if (data / "chest_xray").is_dir():
        dataset_id = _check_name(f"{owner}/{space}-{DATASET_SUFFIX}")
        images = _walk(data / "chest_xray", data)
        splits = {s.name: sum(1 for r, _ in images if r.startswith(f"chest_xray/{s.name}/"))
                  for s in sorted((data / "chest_xray").iterdir()) if s.is_dir() and not s.name.startswith(".")}
        attribution = (data / "README.md").read_text(encoding="utf-8") if (data / "README.md").is_file() else ""
        card = dataset_card(dataset_id, space_id, attribution, splits)
        plans.append(RepoPlan(dataset_id, "dataset",
                              [FileToUpload("README.md", data=card.encode()),
                               *(FileToUpload(r, source=p) for r, p in images)]))
        dataset_ids.append(dataset_id)

    files: dict[str, FileToUpload] = {}
    for d in SPACE_DIRS:
        if (root / d).is_dir():
            for rel, p in _walk(root / d, root):
                files[rel] = FileToUpload(rel, source=p)
    for name in SPACE_FILES:
        if (root / name).is_file():
            files[name] = FileToUpload(name, source=root / name)
    if "requirements.txt" in files:
        files["requirements.txt"] = FileToUpload(
            "requirements.txt", data=_requirements((root / "requirements.txt").read_text()).encode())
    if "pyproject.toml" in files:  # its install comment names the Space
        files["pyproject.toml"] = FileToUpload("pyproject.toml", data=_replace_placeholders(
            (root / "pyproject.toml").read_text(), None, space_id).encode())
    readme = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").is_file() else ""
    for rel, p in _readme_links(readme, root):
        files.setdefault(rel, FileToUpload(rel, source=p))
    model_ids = [p.repo_id for p in plans if p.repo_type == "model"]
    files["README.md"] = FileToUpload("README.md", data=space_readme(readme, space_id, model_ids,
                                                                    dataset_ids).encode())
    # the checkout's own Hub models stay listed; the published ones are listed under the app's names
    # (the file alone: XCXR_HUB_MODELS of this shell is not the Space's)
    listed = {**hub_models_from_config(root / "space" / "hub_models.yaml", use_env=False), **mapping}
    files["space/hub_models.yaml"] = FileToUpload("space/hub_models.yaml",
                                                  data=hub_models_yaml(listed, space_id).encode())
    if "space/app.py" not in files:
        raise DeployError(f"{root.name}/space/app.py is missing: run the command from a checkout of this project")
    plans.append(RepoPlan(space_id, "space", sorted(files.values(), key=lambda f: f.path)))
    return plans


# -- publishing ------------------------------------------------------------------------------------------------------

@dataclass
class RepoResult:
    """What :func:`deploy` did to one repo: the files it uploaded and deleted, and the new commit (``None``: the
    repo already held exactly these files, nothing was committed)."""

    repo_id: str
    repo_type: str
    files: int
    uploaded: list[str]
    deleted: list[str]
    commit: str | None
    url: str


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _unchanged(remote: Any, data: bytes) -> bool:
    """Whether the repo's file ``remote`` (a ``RepoFile`` of ``list_repo_tree``) holds ``data``: an LFS file is
    compared by sha256, a regular one by its git blob id."""
    if remote.size != len(data):
        return False
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        sha = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        return sha == hashlib.sha256(data).hexdigest()
    return remote.blob_id == _git_blob_id(data)


def _hub_error(e: Exception, what: str) -> DeployError:
    """One line saying what the Hub (or the network) answered; never the token."""
    from huggingface_hub.errors import HfHubHTTPError
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        msg = ((getattr(e, "server_message", None) or str(e)).strip().splitlines() or ["no message"])[0]
        if status == 401:
            return DeployError(f"{what}: the Hub refused the token (401: {msg}); pass a write token with --token, "
                               "set HF_TOKEN or run `hf auth login`")
        if status == 403:
            return DeployError(f"{what}: the token may not write there (403: {msg}); use a token with write access "
                               "to the owner")
        if status == 412:
            return DeployError(f"{what}: the repo changed on the Hub while publishing; run the command again")
        return DeployError(f"{what}: the Hub answered with an error ({status}: {msg})")
    text = " ".join(str(e).split()) or type(e).__name__
    return DeployError(f"{what}: cannot reach the Hub at {_endpoint()} ({text[:200]})")


def _endpoint() -> str:
    from huggingface_hub import constants
    return constants.ENDPOINT


def _publish(api: Any, p: RepoPlan) -> RepoResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    kw: dict[str, Any] = {"space_sdk": "gradio"} if p.repo_type == "space" else {}
    api.create_repo(p.repo_id, repo_type=p.repo_type, exist_ok=True, **kw)
    head = api.repo_info(p.repo_id, repo_type=p.repo_type).sha
    try:
        remote = {f.path: f for f in api.list_repo_tree(p.repo_id, repo_type=p.repo_type, revision=head,
                                                        recursive=True) if hasattr(f, "blob_id")}
    except (EntryNotFoundError, RevisionNotFoundError):  # a repo without any commit yet
        remote = {}
    ops: list[Any] = []
    uploaded = []
    for f in p.files:
        data = f.content()
        if f.path in remote and _unchanged(remote[f.path], data):
            continue
        ops.append(CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=data))
        uploaded.append(f.path)
    keep = {f.path for f in p.files} | {".gitattributes"}
    deleted = sorted(path for path in remote if path not in keep)
    ops += [CommitOperationDelete(path_in_repo=path) for path in deleted]
    commit = None
    if ops:
        summary = f"{len(uploaded)} file(s) added or changed, {len(deleted)} deleted"
        info = api.create_commit(p.repo_id, ops, repo_type=p.repo_type, parent_commit=head,
                                 commit_message="Publish with python -m space.deploy",
                                 commit_description=summary)
        commit = info.oid
    return RepoResult(p.repo_id, p.repo_type, len(p.files), uploaded, deleted, commit,
                      f"{_endpoint()}/{p.url_path}")


def deploy(owner: str, space: str = DEFAULT_SPACE, token: str | None = None, root: str | os.PathLike = ROOT,
           report: Callable[[RepoResult], None] | None = None) -> list[RepoResult]:
    """Publish the models, the data splits and the Space of the checkout ``root`` under ``owner`` (see the module
    docstring); returns what was done to each repo. Running it again with nothing changed commits nothing.

    The token comes from ``token``, ``HF_TOKEN`` or ``hf auth login``; it is never printed.

    Raises:
        HubAuthError: no token.
        DeployError: the Hub refused or cannot be reached; the local tree has nothing to publish.
    """
    from huggingface_hub import HfApi, get_token

    plans = plan(owner, space, root)
    token = token or get_token()
    if not token:
        raise HubAuthError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login` (a token with "
                           f"write access to {owner})")
    api = HfApi(token=token)
    results = []
    for p in plans:
        try:
            res = _publish(api, p)
        except XcxrError:
            raise
        except Exception as e:  # noqa: BLE001 - the Hub's or the network's answer becomes one line
            if not _is_network_or_hub_error(e):
                raise
            raise _hub_error(e, f"{p.repo_type} repo {p.repo_id}") from e
        results.append(res)
        if report is not None:
            report(res)
    return results


def _is_network_or_hub_error(e: Exception) -> bool:
    """An answer of the Hub or a failure to reach it (not a bug of ours): ``HfHubHTTPError`` or a transport error
    of the HTTP client huggingface_hub uses (``httpx``; ``httpx2`` in huggingface_hub 2.x)."""
    from huggingface_hub.errors import HfHubHTTPError
    kinds: list[type] = [HfHubHTTPError, ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        try:
            kinds.append(__import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return isinstance(e, tuple(kinds))


# -- command line ----------------------------------------------------------------------------------------------------

def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _print_plan(plans: list[RepoPlan]) -> None:
    for p in plans:
        label = f" (app model {p.model_name})" if p.model_name else ""
        print(f"{p.repo_type} {p.repo_id}{label}: {len(p.files)} files, {_size(p.size)}")
        for f in p.files:
            print(f"  {p.repo_id}  {f.path}  {_size(f.size)}")
    kinds = {t: sum(1 for p in plans if p.repo_type == t) for t in ("model", "dataset", "space")}
    print(f"dry run: {kinds['model']} model repo(s), {kinds['dataset']} dataset repo(s), {kinds['space']} Space; "
          f"{sum(len(p.files) for p in plans)} files, {_size(sum(p.size for p in plans))}; nothing was uploaded")


def _print_result(r: RepoResult) -> None:
    if r.commit is None:
        print(f"{r.repo_type} {r.repo_id}: unchanged ({r.files} files) {r.url}")
    else:
        print(f"{r.repo_type} {r.repo_id}: {len(r.uploaded)} uploaded, {len(r.deleted)} deleted of {r.files} files, "
              f"commit {r.commit[:10]} {r.url}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m space.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("owner", metavar="OWNER", help="Hub user or organisation the repos are created under")
    p.add_argument("--space", default=DEFAULT_SPACE, metavar="NAME",
                   help=f"the Space's name (default: {DEFAULT_SPACE}); the model and dataset repos are named NAME-…")
    p.add_argument("--dry-run", action="store_true", help="list the repos and files (path, size); no network")
    p.add_argument("--token", default=None, help="Hugging Face token with write access to OWNER (default: HF_TOKEN, "
                   "else the one `hf auth login` saved); never printed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        if a.dry_run:
            _print_plan(plan(a.owner, a.space))
            return 0
        results = deploy(a.owner, a.space, token=a.token, report=_print_result)
    except XcxrError as e:  # the input, the token or the Hub: the message says what to change
        parser.exit(2, f"error: {e}\n")
    except PermissionError as e:  # the machine: a file of the checkout this user may not read
        parser.exit(2, f"error: {e}\n")
    changed = sum(1 for r in results if r.commit)
    print(f"published: {changed} of {len(results)} repos changed; the Space: {results[-1].url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
