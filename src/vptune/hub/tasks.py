"""Per-task files on the Hugging Face Hub, named `hf://OWNER/NAME[@REVISION][/PATH/IN/REPO.safetensors]`.

`task_file(uri)` downloads the file into the Hugging Face cache and returns its local path;
`vptune.load`, `vptune predict` and anything else that opens per-task files call it, so a
file from the Hub goes through the same safetensors-only loading and backbone-fingerprint
check as a local one. Without a path, the repository must hold exactly one `.safetensors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import VptuneError
from .client import describe, download, list_files

SCHEME = "hf://"
TASK_SUFFIX = ".safetensors"
_URI = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/]+))?(?:/(?P<path>.+))?$")


@dataclass(frozen=True)
class HubTask:
    """Where a per-task file sits on the Hub: a model repository, a revision and a file (None: the only one)."""

    repo_id: str
    revision: str | None = None
    path: str | None = None

    def uri(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{revision}" + (f"/{self.path}" if self.path else "")


def is_hub_uri(value: object) -> bool:
    """Whether `value` is a string naming a Hub file (`hf://...`)."""
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_hub_uri(uri: str) -> HubTask:
    """`hf://OWNER/NAME[@REVISION][/PATH]` as a HubTask; VptuneError for anything else."""
    match = _URI.match(uri)
    if not match:
        raise VptuneError(f"'{uri}' is not a Hub task; write hf://OWNER/NAME, hf://OWNER/NAME/FILE.safetensors "
                          "or hf://OWNER/NAME@REVISION/FILE.safetensors")
    return HubTask(match["repo"], match["revision"], match["path"])


def task_file(uri: str, *, cache_dir: str | Path | None = None) -> Path:
    """The local path of the per-task file `uri` names, downloaded into the Hugging Face cache if needed.

    Raises VptuneError when the repository, revision or file does not exist, when the name
    is not a `.safetensors` file, or when no file is named and the repository holds none or several.
    """
    task = parse_hub_uri(uri)
    path = task.path or _only_task_file(task)
    if not path.endswith(TASK_SUFFIX):
        raise VptuneError(f"'{uri}' names '{path}'; per-task files are {TASK_SUFFIX} files")
    return download(task.repo_id, path, revision=task.revision, cache_dir=cache_dir)


def _only_task_file(task: HubTask) -> str:
    files = [name for name in list_files(task.repo_id, revision=task.revision) if name.endswith(TASK_SUFFIX)]
    if len(files) == 1:
        return files[0]
    where = describe(task.repo_id, "model", task.revision)
    if not files:
        raise VptuneError(f"{where} holds no {TASK_SUFFIX} file; push one with `vptune push`")
    choices = ", ".join(HubTask(task.repo_id, task.revision, name).uri() for name in files[:5])
    raise VptuneError(f"{where} holds {len(files)} task files; name one: {choices}")
