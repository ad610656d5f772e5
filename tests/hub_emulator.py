"""In-process emulator of the Hugging Face Hub HTTP API, for tests.

The real Hub is unreachable from the test machines, so tests point the *real* ``huggingface_hub`` client (and
everything built on it: ``PyTorchModelHubMixin``, ``timm``'s ``hf-hub:`` loading, ``ModelCard.push_to_hub``) at this
emulator instead. It is a Starlette app served by uvicorn in a background thread on 127.0.0.1; repos, commits and
file contents are kept in memory.

What it implements (modelled on huggingface_hub 2.4.0: ``hf_api.py``, ``_commit_api.py``, ``lfs.py``,
``file_download.py``, ``utils/_http.py``):

* ``POST /api/repos/create`` (409 when the repo exists, so ``exist_ok=True`` works; a Space needs its ``sdk``, which
  its info reports), ``DELETE /api/repos/delete``,
  ``PUT /api/{type}s/{repo_id}/settings`` (visibility), ``GET /api/whoami-v2``.
* ``GET /api/{type}s/{repo_id}`` and ``.../revision/{rev}`` (``repo_info`` / ``model_info``, ``siblings`` with
  ``blobs=True`` metadata, ``cardData`` parsed from the README front matter).
* ``GET /api/{type}s/{repo_id}/tree/{rev}[/{path}]`` (``list_repo_tree`` / ``list_repo_files``, ``recursive`` and
  ``expand``), ``POST .../paths-info/{rev}``, ``GET .../refs``.
* ``POST /api/validate-yaml`` (model cards).
* Uploads: ``POST .../preupload/{rev}`` (upload mode from the repo's ``.gitattributes``, size and a binary sniff,
  like the Hub), the git-LFS batch API ``POST /{repo_id}.git/info/lfs/objects/batch`` with the ``basic`` transfer
  (``PUT`` of the object to this server, then ``verify``), and ``POST .../commit/{rev}`` receiving NDJSON
  (``header`` / ``file`` (base64) / ``lfsFile`` / ``deletedFile`` / ``deletedFolder``), ``create_pr=1`` and
  ``parentCommit`` included. Xet is *not* emulated: ``HF_HUB_DISABLE_XET=1`` is mandatory on the client side.
* Downloads: ``HEAD``/``GET /{repo_id}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (git blob sha1, or the
  sha256 for LFS files, plus ``X-Linked-Etag`` / ``X-Linked-Size``), ``Content-Length`` and ``Range`` support.
* Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and ``X-Error-Message``
  headers plus a JSON ``{"error": ...}`` body, which is what the client maps to ``RepositoryNotFoundError``,
  ``RevisionNotFoundError`` and ``RemoteEntryNotFoundError``.

Auth: any bearer token is accepted; writes without one get a 401, private repos read without one look missing.
Every request is logged in :attr:`HubEmulator.requests` (with the token it carried, if any).

Usage::

    with HubEmulator(port=port) as hub:      # or hub.start() / hub.stop()
        ...                                  # HF_ENDPOINT must equal hub.url *before* huggingface_hub is imported
        hub.files("someuser/tiny")           # {"config.json": b"...", "model.safetensors": b"...", ...}
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["HubEmulator", "free_port", "DEFAULT_GITATTRIBUTES"]

# The .gitattributes the Hub puts in the initial commit of every new model repo.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
        "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
        "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
        "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)

# Files at least this big are always stored through LFS (the Hub uses 10 MB).
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_TYPE_PREFIXES = {"datasets": "dataset", "spaces": "space", "kernels": "kernel"}
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space", "kernels": "kernel"}
_SPACE_SDKS = ("gradio", "docker", "static", "streamlit")
_YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class _File:
    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return _lfs_pointer(self.sha256, self.size)

    @property
    def blob_id(self) -> str:
        """git object id: of the content for regular files, of the LFS pointer for LFS files."""
        return _git_blob_sha1(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        """What the Hub sends as (linked) ETag: sha256 for LFS files, git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.blob_id

    @property
    def preupload_oid(self) -> str:
        """What the client compares with its local oid to skip unchanged files."""
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class _Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    timestamp: float
    files: dict[str, _File]


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: float
    branches: dict[str, str] = field(default_factory=dict)  # branch name (or refs/pr/N) -> commit oid
    commits: dict[str, _Commit] = field(default_factory=dict)
    next_pr: int = 1
    sdk: str | None = None  # Spaces only: gradio, docker, static, streamlit


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.body = body or {}

    def response(self, method: str) -> Response:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        if method == "HEAD":
            return Response(status_code=self.status, headers=headers)
        return JSONResponse({"error": self.message, **self.body}, status_code=self.status, headers=headers)


class HubEmulator:
    """Emulated Hugging Face Hub on ``http://127.0.0.1:{port}`` (see the module docstring)."""

    def __init__(self, port: int | None = None, *, username: str = "someuser", gitattributes: bool = True,
                 lfs_threshold: int = LFS_SIZE_THRESHOLD):
        self.host = "127.0.0.1"
        self._requested_port = port or 0
        self.port: int | None = port
        self.username = username
        self.gitattributes = gitattributes
        self.lfs_threshold = lfs_threshold
        self.requests: list[dict[str, Any]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lfs: dict[str, bytes] = {}  # sha256 -> content (uploaded LFS objects)
        self._lock = threading.RLock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("HubEmulator not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HubEmulator":
        if self._thread is not None:
            return self
        config = uvicorn.Config(self._asgi, host=self.host, port=self._requested_port, log_level="warning",
                                access_log=False, lifespan="off", interface="asgi3",
                                timeout_keep_alive=60)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="hub-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"Hub emulator failed to start on {self.host}:{self._requested_port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> "HubEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection / seeding (test side)
    def reset(self) -> None:
        """Forget all repos, LFS objects and logged requests."""
        with self._lock:
            self._repos.clear()
            self._lfs.clear()
            self.requests.clear()

    def repos(self) -> list[str]:
        with self._lock:
            return sorted(rid for _, rid in self._repos)

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return self._get_repo(repo_type, repo_id).private

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Commit sha that ``revision`` (branch or sha) points to."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return self._resolve(repo, revision).oid

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """``{path: content}`` of the repo at ``revision`` (includes the ``.gitattributes`` of the initial commit)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return {p: f.data for p, f in sorted(self._resolve(repo, revision).files.items())}

    def lfs_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> set[str]:
        """Paths stored through LFS at ``revision``."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return {p for p, f in self._resolve(repo, revision).files.items() if f.lfs}

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[dict[str, Any]]:
        """History of ``revision``, newest first: ``{"oid", "title", "description", "parent", "files"}``."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            out, commit = [], self._resolve(repo, revision)
            while commit is not None:
                out.append({"oid": commit.oid, "title": commit.title, "description": commit.description,
                            "parent": commit.parent, "files": sorted(commit.files)})
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return out

    @property
    def tokens_seen(self) -> set[str]:
        """Bearer tokens received so far."""
        with self._lock:
            return {r["token"] for r in self.requests if r["token"]}

    def add_files(self, repo_id: str, files: dict[str, bytes | str], *, message: str = "Seed files",
                  repo_type: str = "model", private: bool = False, lfs: set[str] | None = None) -> str:
        """Server-side commit (creates the repo if needed), bypassing HTTP. Returns the new commit sha.

        LFS storage is decided like for uploads unless ``lfs`` names the LFS paths explicitly.
        """
        with self._lock:
            if (repo_type, repo_id) not in self._repos:
                self._create_repo(repo_type, repo_id, private)
            repo = self._repos[(repo_type, repo_id)]
            head = self._resolve(repo, "main")
            new_files = dict(head.files)
            for path, content in files.items():
                data = content.encode() if isinstance(content, str) else bytes(content)
                is_lfs = (path in lfs) if lfs is not None else self._upload_mode(head.files, path, data[:512],
                                                                                 len(data)) == "lfs"
                new_files[path] = _File(data, is_lfs)
            return self._add_commit(repo, "main", new_files, message, "").oid

    # ------------------------------------------------------------------ state helpers (call with the lock held)
    def _new_oid(self) -> str:
        self._counter += 1
        return hashlib.sha1(f"{uuid.uuid4()}-{self._counter}".encode()).hexdigest()

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private, created=time.time())
        self._repos[(repo_type, repo_id)] = repo
        files = {".gitattributes": _File(DEFAULT_GITATTRIBUTES.encode(), False)} if self.gitattributes else {}
        commit = _Commit(self._new_oid(), None, "initial commit", "", time.time(), files)
        repo.commits[commit.oid] = commit
        repo.branches["main"] = commit.oid
        return repo

    def _get_repo(self, repo_type: str, repo_id: str, token: str | None = None, *, check_access: bool = False) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (check_access and repo.private and not token):
            raise _HubError(404 if repo is None else 401, "Repository not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        oid = repo.branches.get(revision)
        if oid is None and revision.startswith("refs/heads/"):
            oid = repo.branches.get(revision[len("refs/heads/"):])
        if oid is None and _SHA1_RE.match(revision) and revision in repo.commits:
            oid = revision
        if oid is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def _add_commit(self, repo: _Repo, branch: str, files: dict[str, _File], title: str, description: str,
                    parent: str | None = None) -> _Commit:
        parent = parent if parent is not None else repo.branches.get(branch)
        commit = _Commit(self._new_oid(), parent, title, description, time.time(), files)
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def _upload_mode(self, files: dict[str, _File], path: str, sample: bytes, size: int) -> str:
        if size >= self.lfs_threshold or b"\x00" in sample:
            return "lfs"
        attributes = files.get(".gitattributes")
        if attributes is not None:
            name = path.rsplit("/", 1)[-1]
            for line in attributes.data.decode(errors="replace").splitlines():
                parts = line.split()
                if len(parts) < 2 or parts[0].startswith("#") or "filter=lfs" not in parts[1:]:
                    continue
                pattern = parts[0].lstrip("/")
                target = path if "/" in pattern else name
                if fnmatch.fnmatchcase(target, pattern.replace("**/", "*")):
                    return "lfs"
        return "regular"

    def _last_commit(self, repo: _Repo, commit: _Commit, path: str) -> dict[str, str]:
        def state(c: _Commit):
            if path in c.files:
                return c.files[path].blob_id
            return tuple(sorted((p, f.blob_id) for p, f in c.files.items() if p.startswith(path + "/")))

        current = commit
        while current.parent is not None:
            parent = repo.commits[current.parent]
            if state(parent) != state(current):
                break
            current = parent
        return {"id": current.oid, "title": current.title, "date": _iso(current.timestamp)}

    def _entry(self, repo: _Repo, commit: _Commit, path: str, expand: bool) -> dict[str, Any] | None:
        f = commit.files.get(path)
        if f is not None:
            entry: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
        elif any(p.startswith(path + "/") for p in commit.files):
            tree = sorted((p, g.blob_id) for p, g in commit.files.items() if p.startswith(path + "/"))
            entry = {"type": "directory", "oid": hashlib.sha1(repr(tree).encode()).hexdigest(), "size": 0,
                     "path": path}
        else:
            return None
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path)
        return entry

    # ------------------------------------------------------------------ ASGI plumbing
    async def _asgi(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        raw = scope.get("raw_path") or scope["path"].encode()
        segments = [unquote(s) for s in raw.decode("latin-1").split("?", 1)[0].strip("/").split("/")]
        with self._lock:
            self.requests.append({"method": request.method, "path": scope["path"],
                                  "query": scope.get("query_string", b"").decode(), "token": token})
        try:
            body = await request.body()
            form = await request.form() if request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded") else None
            with self._lock:
                response = self._dispatch(request, segments, token, body, form)
        except _HubError as e:
            response = e.response(request.method)
        except Exception as e:  # pragma: no cover - bug in the emulator: make it visible in the client error
            traceback.print_exc()
            response = _HubError(400, f"Hub emulator error: {type(e).__name__}: {e}").response(request.method)
        await response(scope, receive, send)

    def _dispatch(self, request: Request, seg: list[str], token: str | None, body: bytes, form) -> Response:
        method = request.method
        base = str(request.base_url).rstrip("/")

        def json_body() -> Any:
            try:
                return json.loads(body or b"null")
            except ValueError:
                raise _HubError(400, "Invalid JSON body")

        def need_token() -> None:
            if not token:
                raise _HubError(401, "You must be authenticated to access this endpoint")

        # ---- /api/...
        if seg[0] == "api":
            rest = seg[1:]
            if rest == ["whoami-v2"] and method == "GET":
                need_token()
                return JSONResponse({"type": "user", "name": self.username, "fullname": self.username,
                                     "orgs": [], "auth": {"type": "access_token",
                                                          "accessToken": {"displayName": "test", "role": "write"}}})
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml(json_body() or {})
            if rest == ["repos", "create"] and method == "POST":
                need_token()
                return self._api_create_repo(json_body() or {}, base)
            if rest == ["repos", "delete"] and method == "DELETE":
                need_token()
                payload = json_body() or {}
                repo_id = f"{payload.get('organization') or self.username}/{payload['name']}"
                repo_type = payload.get("type") or "model"
                self._get_repo(repo_type, repo_id)
                del self._repos[(repo_type, repo_id)]
                return JSONResponse({})
            if len(rest) >= 3 and rest[0] in _API_TYPES:
                repo_type, repo_id, tail = _API_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                repo = self._get_repo(repo_type, repo_id, token, check_access=True)
                if method == "GET" and not tail:
                    return self._api_info(repo, "main", request)
                if method == "GET" and len(tail) == 2 and tail[0] == "revision":
                    return self._api_info(repo, tail[1], request)
                if method == "GET" and len(tail) >= 2 and tail[0] == "tree":
                    return self._api_tree(repo, tail[1], "/".join(tail[2:]).strip("/"), request)
                if method == "POST" and len(tail) == 2 and tail[0] == "paths-info":
                    commit = self._resolve(repo, tail[1])
                    paths = form.getlist("paths") if form is not None else (json_body() or {}).get("paths", [])
                    expand = str(form.get("expand") if form is not None else "").lower() == "true"
                    entries = [self._entry(repo, commit, p.strip("/"), expand) for p in paths]
                    return JSONResponse([e for e in entries if e is not None])
                if method == "GET" and tail == ["refs"]:
                    def ref(name: str, prefix: str) -> dict:
                        return {"name": name, "ref": f"{prefix}{name}", "targetCommit": repo.branches[name]}
                    return JSONResponse({
                        "branches": [ref(b, "refs/heads/") for b in repo.branches if not b.startswith("refs/")],
                        "converts": [], "tags": [],
                        "pullRequests": [{"name": b, "ref": b, "targetCommit": o}
                                         for b, o in repo.branches.items() if b.startswith("refs/pr/")]})
                if method == "PUT" and tail == ["settings"]:
                    need_token()
                    payload = json_body() or {}
                    if "private" in payload:
                        repo.private = bool(payload["private"])
                    if "visibility" in payload:
                        repo.private = payload["visibility"] == "private"
                    return JSONResponse({})
                if method == "POST" and len(tail) == 2 and tail[0] == "preupload":
                    need_token()
                    return self._api_preupload(repo, tail[1], json_body() or {})
                if method == "POST" and len(tail) == 2 and tail[0] == "commit":
                    need_token()
                    return self._api_commit(repo, tail[1], body, request, base)
            raise _HubError(404, f"Sorry, we can't find the page you are looking for: {request.url.path}")

        # ---- LFS object storage (the "S3" behind the batch API)
        if seg[0] == "__lfs":
            if method == "PUT" and len(seg) == 2:
                oid = seg[1]
                if hashlib.sha256(body).hexdigest() != oid:
                    raise _HubError(400, "LFS object content does not match its oid")
                self._lfs[oid] = body
                return Response(status_code=200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
            if method == "POST" and seg[1:] == ["verify"]:
                need_token()
                payload = json_body() or {}
                data = self._lfs.get(payload.get("oid", ""))
                if data is None or len(data) != payload.get("size"):
                    raise _HubError(404, "LFS object not found")
                return JSONResponse({})
            raise _HubError(404, "Not found")

        # ---- repo-level git / resolve URLs: [datasets/|spaces/]namespace/name(.git)/...
        repo_type = "model"
        if seg[0] in _TYPE_PREFIXES and len(seg) >= 3:
            repo_type, seg = _TYPE_PREFIXES[seg[0]], seg[1:]
        if len(seg) >= 2 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            need_token()
            repo = self._get_repo(repo_type, f"{seg[0]}/{seg[1][:-4]}", token, check_access=True)
            return self._lfs_batch(json_body() or {}, base)
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self._get_repo(repo_type, f"{seg[0]}/{seg[1]}", token, check_access=True)
            return self._resolve_file(repo, seg[3], "/".join(seg[4:]), request)
        raise _HubError(404, f"Sorry, we can't find the page you are looking for: {request.url.path}")

    # ------------------------------------------------------------------ endpoint handlers
    def _api_create_repo(self, payload: dict, base: str) -> Response:
        name = payload.get("name")
        if not name or "/" in name:
            raise _HubError(400, "Invalid repo name")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.username}/{name}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{base}/{prefix}{repo_id}"
        if (repo_type, repo_id) in self._repos:  # the Hub's 409 body carries the url too
            raise _HubError(409, f"You already created this {repo_type} repo", body={"url": url})
        sdk = payload.get("sdk")
        if repo_type == "space" and sdk not in _SPACE_SDKS:  # like the Hub: a Space needs its SDK
            raise _HubError(400, f"Invalid sdk {sdk!r} for a Space: one of {', '.join(_SPACE_SDKS)}")
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self._create_repo(repo_type, repo_id, private).sdk = sdk if repo_type == "space" else None
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    def _card_data(self, commit: _Commit) -> dict | None:
        readme = commit.files.get("README.md")
        if readme is None:
            return None
        match = _YAML_BLOCK.search(readme.data.decode(errors="replace"))
        if match is None:
            return None
        try:
            import yaml

            data = yaml.safe_load(match.group(2))
        except Exception:
            return None
        return data if isinstance(data, dict) else None

    def _api_info(self, repo: _Repo, revision: str, request: Request) -> Response:
        commit = self._resolve(repo, revision)
        blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path, f in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.lfs:
                    sibling["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": len(f.pointer)}
            siblings.append(sibling)
        card = self._card_data(commit)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": commit.oid, "lastModified": _iso(commit.timestamp),
            "createdAt": _iso(repo.created), "private": repo.private, "gated": False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": list((card or {}).get("tags") or []), "siblings": siblings,
            "usedStorage": sum(f.size for f in commit.files.values()),
        }
        if repo.repo_type == "space":
            info["sdk"] = repo.sdk or (card or {}).get("sdk")
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            if card:
                for key in ("library_name", "pipeline_tag"):
                    if card.get(key):
                        info[key] = card[key]
        if card is not None:
            info["cardData"] = card
        return JSONResponse(info)

    def _api_tree(self, repo: _Repo, revision: str, path: str, request: Request) -> Response:
        commit = self._resolve(repo, revision)
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        expand = request.query_params.get("expand", "").lower() in ("1", "true")
        prefix = path + "/" if path else ""
        if path and not any(p.startswith(prefix) for p in commit.files):
            raise _HubError(404, f"{path} does not exist on \"{revision}\"", "EntryNotFound",
                            {"X-Repo-Commit": commit.oid})
        names: set[str] = set()
        for p in commit.files:
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, depth + 1):
                names.add(prefix + "/".join(parts[:i]))
        entries = [self._entry(repo, commit, n, expand) for n in names]
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        return JSONResponse(entries)

    def _validate_yaml(self, payload: dict) -> Response:
        content = payload.get("content") or ""
        match = _YAML_BLOCK.search(content)
        if match is None:
            return JSONResponse({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata in repo "
                                                                        "card"}]})
        try:
            import yaml

            data = yaml.safe_load(match.group(2))
        except Exception as e:
            message = f"Invalid YAML in README.md front matter: {e}".replace("\n", " ")
            return JSONResponse({"error": message, "errors": [{"message": message}]}, status_code=400)
        if data is not None and not isinstance(data, dict):
            message = "README.md front matter must be a YAML mapping"
            return JSONResponse({"error": message, "errors": [{"message": message}]}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})

    def _api_preupload(self, repo: _Repo, revision: str, payload: dict) -> Response:
        commit = self._resolve(repo, revision)
        ignore = [ln.strip() for ln in (payload.get("gitIgnore") or "").splitlines()
                  if ln.strip() and not ln.strip().startswith("#")]
        out = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample") or "")
            name = path.rsplit("/", 1)[-1]
            should_ignore = any(fnmatch.fnmatchcase(path, pat.strip("/")) or fnmatch.fnmatchcase(name, pat)
                                for pat in ignore)
            existing = commit.files.get(path)
            out.append({"path": path, "uploadMode": self._upload_mode(commit.files, path, sample, size),
                        "shouldIgnore": should_ignore, "oid": existing.preupload_oid if existing else None})
        return JSONResponse({"files": out, "commitOid": commit.oid})

    def _lfs_batch(self, payload: dict, base: str) -> Response:
        if payload.get("operation") != "upload":
            raise _HubError(400, "Only the upload operation is emulated")
        if "basic" not in (payload.get("transfers") or ["basic"]):
            raise _HubError(400, "Only the basic transfer is emulated")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self._lfs:  # already-present objects get no actions: the client skips their upload
                entry["actions"] = {
                    "upload": {"href": f"{base}/__lfs/{oid}", "header": {}},
                    "verify": {"href": f"{base}/__lfs/verify", "header": {}},
                }
            objects.append(entry)
        return JSONResponse({"transfer": "basic", "objects": objects}, media_type="application/vnd.git-lfs+json")

    def _api_commit(self, repo: _Repo, revision: str, body: bytes, request: Request, base: str) -> Response:
        try:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        except ValueError:
            raise _HubError(400, "Invalid NDJSON commit payload")
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "The first line of a commit payload must be its header")
        header = lines[0]["value"]
        create_pr = request.query_params.get("create_pr") in ("1", "true", "True")
        base_commit = self._resolve(repo, revision)
        if not create_pr and revision not in repo.branches:
            raise _HubError(400 if _SHA1_RE.match(revision) else 404, f"Invalid rev id: {revision}",
                            None if _SHA1_RE.match(revision) else "RevisionNotFound")
        parent_commit = header.get("parentCommit")
        if parent_commit and parent_commit != base_commit.oid:
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")

        files = dict(base_commit.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = (value.get("path") or "").strip("/")
            if key == "file":
                content = value.get("content", "")
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                files[path] = _File(data, False)
            elif key == "lfsFile":
                data = self._lfs.get(value.get("oid", ""))
                if data is None or ("size" in value and len(data) != int(value["size"])):
                    raise _HubError(422, f"Your push was rejected because an LFS pointer pointed to a file that "
                                         f"does not exist: {path}")
                files[path] = _File(data, True)
            elif key == "deletedFile":
                if path not in files:
                    raise _HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path + "/")]
                if not doomed:
                    raise _HubError(404, "A folder with this name doesn't exist", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise _HubError(400, f"Unknown commit operation: {key!r}")

        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        pr_url = None
        if create_pr:
            num = repo.next_pr
            repo.next_pr += 1
            branch = f"refs/pr/{num}"
            commit = self._add_commit(repo, branch, files, header.get("summary", ""), header.get("description", ""),
                                      parent=base_commit.oid)
            pr_url = f"{base}/{prefix}{repo.repo_id}/discussions/{num}"
        else:
            commit = self._add_commit(repo, revision, files, header.get("summary", ""), header.get("description", ""))
        return JSONResponse({"success": True, "commitOid": commit.oid,
                             "commitUrl": f"{base}/{prefix}{repo.repo_id}/commit/{commit.oid}",
                             "pullRequestUrl": pr_url})

    def _resolve_file(self, repo: _Repo, revision: str, path: str, request: Request) -> Response:
        commit = self._resolve(repo, revision)
        f = commit.files.get(path)
        if f is None:
            raise _HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
        data, status = f.data, 200
        range_header = request.headers.get("range")
        if range_header:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if m is None or (not m.group(1) and not m.group(2)):
                raise _HubError(416, "Invalid range")
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else f.size - 1
            else:  # suffix range: last N bytes
                start, end = max(f.size - int(m.group(2)), 0), f.size - 1
            end = min(end, f.size - 1)
            if start >= f.size or start > end:
                raise _HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{f.size}"})
            data, status = f.data[start:end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        headers["Content-Length"] = str(len(data))
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type="application/octet-stream")
        return Response(content=data, status_code=status, headers=headers, media_type="application/octet-stream")


def _selftest() -> None:  # pragma: no cover - manual smoke test: python tests/hub_emulator.py
    with HubEmulator() as hub:
        print("emulator on", hub.url)


if __name__ == "__main__":  # pragma: no cover
    _selftest()
