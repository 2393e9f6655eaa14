"""Where vptune keeps files it can rebuild: converted weights, caches."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """vptune's cache folder, created on demand.

    ``$VPTUNE_CACHE`` if set, else ``$XDG_CACHE_HOME/vptune``, else
    ``~/.cache/vptune``.
    """
    override = os.environ.get("VPTUNE_CACHE")
    if override:
        path = Path(override).expanduser()
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vptune"
    path.mkdir(parents=True, exist_ok=True)
    return path
