"""`vptune push`: a per-task file and its model card to a model repository on the Hugging Face Hub."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.evaluate import TASK_FILE
from ..errors import VptuneError
from ..persistence import read_description
from .card import RunRecord, model_card, read_run
from .client import huggingface_hub, hub_errors
from .tasks import TASK_SUFFIX, hub_uri

CARD = "README.md"


@dataclass(frozen=True)
class Pushed:
    """Where a push landed: the commit's URL and the `hf://` name that loads the file."""

    commit_url: str
    uri: str


def push(
    source: str | Path,
    repo_id: str,
    *,
    path_in_repo: str = TASK_FILE,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
) -> Pushed:
    """Upload a per-task file (or a run folder's `task.safetensors`) and a model card in one commit.

    The repository is created if missing (`private` chooses its visibility then). The card
    (README.md) states the method, the backbone and its fingerprint, the input pipeline, the
    run's metrics when `source` is a run folder, and the VPT citation; it describes this one
    file, so a repository holds one task. Uses the user's Hugging Face token.
    Raises VptuneError for a file that is not a vptune per-task file and for Hub refusals.
    """
    source = Path(source)
    run: RunRecord | None = None
    if source.is_dir():
        run, source = read_run(source), source / TASK_FILE
        if not source.is_file():
            raise VptuneError(f"run folder '{source.parent}' has no {TASK_FILE} yet; finish the run first")
    if not path_in_repo.endswith(TASK_SUFFIX):
        raise VptuneError(f"--path-in-repo '{path_in_repo}' must end in {TASK_SUFFIX}, so that loaders find it")
    description = read_description(source)  # refuses anything but a vptune per-task file
    uri = hub_uri(repo_id, revision, path_in_repo)
    hub = huggingface_hub()
    card = model_card(description, uri, run).encode()
    operations = [hub.CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(source)),
                  hub.CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card)]
    api = hub.HfApi()
    with hub_errors(repo_id, "model", revision):
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, revision=revision,
                                   commit_message=commit_message or f"vptune push: {path_in_repo}")
    return Pushed(commit.commit_url, uri)
