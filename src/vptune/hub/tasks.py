"""Per-task files on the Hugging Face Hub, named `hf://OWNER/NAME[@REVISION][/PATH/IN/REPO.safetensors]`.

The names follow huggingface_hub's URI grammar (`hf://[TYPE/]ID[@REVISION][/PATH]`, parsed by its
`parse_hf_uri`); task files live in model repositories. `task_file(uri)` downloads the file into
the Hugging Face cache and returns its local path; `vptune.load`, `vptune predict`, `vptune info`
and anything else that opens per-task files call it, so a file from the Hub goes through the same
safetensors-only loading and backbone-fingerprint check as a local one. Without a path, the
repository must hold exactly one `.safetensors` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import VptuneError
from .client import describe, download, huggingface_hub, list_files

SCHEME = "hf://"
TASK_SUFFIX = ".safetensors"


def is_hub_uri(value: object) -> bool:
    """Whether `value` is a string naming a Hub location (`hf://...`)."""
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_hub_uri(uri: str) -> Any:
    """`uri` as huggingface_hub's `HfUri` of a model repository; VptuneError for anything else."""
    hub = huggingface_hub()
    try:
        parsed = hub.parse_hf_uri(uri)
    except hub.errors.HfUriError as exc:
        raise VptuneError(f"{exc}".strip().rstrip(".") + "; write hf://OWNER/NAME or "
                          "hf://OWNER/NAME[@REVISION]/FILE.safetensors") from None
    if parsed.type != "model":
        raise VptuneError(f"'{uri}' names a {parsed.type}; per-task files live in model repositories "
                          "(hf://OWNER/NAME/FILE.safetensors)")
    return parsed


def hub_uri(repo_id: str, revision: str | None = None, path: str = "") -> str:
    """The `hf://` name of a file (or, without `path`, of the repository) of a model repository."""
    return huggingface_hub().HfUri(type="model", id=repo_id, revision=revision, path_in_repo=path).to_uri()


def task_file(uri: str, *, cache_dir: str | Path | None = None) -> Path:
    """The local path of the per-task file `uri` names, downloaded into the Hugging Face cache if needed.

    Raises VptuneError when the repository, revision or file does not exist, when the name
    is not a `.safetensors` file, or when no file is named and the repository holds none or several.
    """
    task = parse_hub_uri(uri)
    path = task.path_in_repo or _only_task_file(task.id, task.revision)
    if not path.endswith(TASK_SUFFIX):
        raise VptuneError(f"'{uri}' names '{path}'; per-task files are {TASK_SUFFIX} files")
    return download(task.id, path, revision=task.revision, cache_dir=cache_dir)


def _only_task_file(repo_id: str, revision: str | None) -> str:
    files = [name for name in list_files(repo_id, revision=revision) if name.endswith(TASK_SUFFIX)]
    if len(files) == 1:
        return files[0]
    where = describe(repo_id, "model", revision)
    if not files:
        raise VptuneError(f"{where} holds no {TASK_SUFFIX} file; push one with `vptune push`")
    choices = ", ".join(hub_uri(repo_id, revision, name) for name in files[:5])
    raise VptuneError(f"{where} holds {len(files)} task files; name one: {choices}")
