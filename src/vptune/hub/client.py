"""Files on the Hugging Face Hub through `huggingface_hub`, with its errors as one-line VptuneErrors.

Downloads go through `hf_hub_download`: they land in the user's Hugging Face cache
(`HF_HOME` / `HF_HUB_CACHE`, or `cache_dir`), are reused from there, honour `HF_ENDPOINT`,
`HF_HUB_OFFLINE` and the user's token (`HF_TOKEN` or `hf auth login`), and show its progress
bars. A connection that drops mid-file is resumed with an HTTP range request inside the
same call; a download that is stopped (Ctrl-C, a killed process) starts that file again on
the next call, because huggingface_hub 1.31 and later discard partial files (its issue
#4196). Finished files are never downloaded twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from ..errors import VptuneError

INSTALL_HINT = "pip install 'vptune[hub]' (or huggingface_hub)"


def huggingface_hub() -> ModuleType:
    """The `huggingface_hub` module, or VptuneError naming how to install it."""
    try:
        import huggingface_hub as module
    except ImportError:
        raise VptuneError(f"this needs huggingface_hub; {INSTALL_HINT}") from None
    return module


def download(repo_id: str, filename: str, *, repo_type: str = "model", revision: str | None = None,
             cache_dir: str | Path | None = None) -> Path:
    """The local path of `filename` from the Hub repository, downloaded into the cache unless already there."""
    hub = huggingface_hub()
    with hub_errors(repo_id, repo_type, revision, filename):
        return Path(hub.hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                        cache_dir=cache_dir))


def list_files(repo_id: str, *, repo_type: str = "model", revision: str | None = None) -> list[str]:
    """Every file of the Hub repository at `revision`."""
    hub = huggingface_hub()
    with hub_errors(repo_id, repo_type, revision):
        return hub.HfApi().list_repo_files(repo_id, repo_type=repo_type, revision=revision)


def file_ids(repo_id: str, *, repo_type: str = "model", revision: str | None = None) -> dict[str, str]:
    """Every file of the Hub repository at `revision` with its blob id, which changes when the file does."""
    hub = huggingface_hub()
    with hub_errors(repo_id, repo_type, revision):
        entries = hub.HfApi().list_repo_tree(repo_id, repo_type=repo_type, revision=revision, recursive=True)
        return {entry.path: entry.blob_id for entry in entries if isinstance(entry, hub.hf_api.RepoFile)}


def describe(repo_id: str, repo_type: str, revision: str | None = None) -> str:
    """`dataset XiN0919/VTAB-1k@main`, as error messages name a repository."""
    return f"{repo_type} {repo_id}" + (f"@{revision}" if revision else "")


@contextmanager
def hub_errors(repo_id: str, repo_type: str, revision: str | None, filename: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions raised in the block into one-line VptuneErrors."""
    hub = huggingface_hub()
    errors = hub.errors
    where = describe(repo_id, repo_type, revision)
    try:
        yield
    except errors.GatedRepoError:
        raise VptuneError(f"{where} is gated: accept its terms on the Hub, then log in (hf auth login or "
                          "HF_TOKEN)") from None
    except errors.RepositoryNotFoundError:
        raise VptuneError(f"{where} does not exist or needs a login: check the name, or log in (hf auth login "
                          "or HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise VptuneError(f"{where}: revision '{revision}' does not exist; pass a branch, tag or commit of "
                          "that repository") from None
    except errors.RemoteEntryNotFoundError:
        raise VptuneError(f"{where} has no file '{filename}'") from None
    except errors.LocalEntryNotFoundError:
        raise VptuneError(f"cannot reach the Hub at {hub.constants.ENDPOINT} (or HF_HUB_OFFLINE is set) and "
                          f"'{filename}' of {where} is not in the cache yet; check the network or HF_ENDPOINT")
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = "; log in (hf auth login or HF_TOKEN) with a token that may do this" if status in (401, 403) else ""
        raise VptuneError(f"the Hub answered {status} for {where}{hint}: {_first_line(exc)}") from None
    except (OSError, ValueError) as exc:
        # A full disk, a bad repo id.
        raise VptuneError(f"{where}: {_first_line(exc)}") from None
    except Exception as exc:
        # huggingface_hub lets its HTTP client's connection errors through (httpx, or httpx2 in 2.x).
        if type(exc).__module__.split(".")[0] not in ("httpx", "httpx2"):
            raise
        raise VptuneError(f"cannot reach the Hub at {hub.constants.ENDPOINT} for {where} ({_first_line(exc)}); "
                          "check the network or HF_ENDPOINT") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def show_progress(show: bool) -> None:
    """Turn huggingface_hub's download progress bars on or off (HF_HUB_DISABLE_PROGRESS_BARS still wins)."""
    utils = huggingface_hub().utils
    utils.enable_progress_bars() if show else utils.disable_progress_bars()
