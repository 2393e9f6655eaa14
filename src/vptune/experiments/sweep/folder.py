"""Who may write a sweep folder: a new or empty folder, or the same sweep again to finish it.

A sweep folder is recognised by its `sweep.yaml`, the settings it was started with. Rerunning
the same sweep (launcher and per-run runtime settings may change) finishes it; a folder of
other files, or a sweep that finished trials with other settings, is refused before anything
is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ...engine.trainer import RUNTIME_KEYS
from ...errors import VptuneError
from ...files import atomic_write, output_folder
from ..results_table import JSONL
from .spec import SweepSpec
from .trials import RESULT

SWEEP_FILE = "sweep.yaml"
# Where and how trials run; they do not change any result, so a rerun may change them.
LAUNCH_KEYS = ("launcher", "workers", "ray_address", "cpus_per_trial", "gpus_per_trial")
MAX_SHOWN = 5  # differences named in the refusal


def check_sweep_folder(spec: SweepSpec) -> None:
    """Raise VptuneError unless `spec.out` is missing, empty, or this same sweep's folder; writes nothing."""
    out = output_folder(spec.out, "--out", [spec.data])
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / SWEEP_FILE).is_file():
        raise VptuneError(f"--out '{spec.out}' holds files but no vptune sweep (no {SWEEP_FILE}); "
                          "pick a new or empty folder")
    try:
        recorded = yaml.safe_load((out / SWEEP_FILE).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise VptuneError(f"--out '{spec.out}' has a {SWEEP_FILE} vptune cannot read ({type(exc).__name__}); "
                          "pick another folder") from exc
    changed = _differences(_comparable(recorded), _comparable(_as_recorded(spec)))
    if changed and _finished_any(out):
        shown = "; ".join(changed[:MAX_SHOWN]) + (f"; {len(changed) - MAX_SHOWN} more" if len(changed) > MAX_SHOWN else "")
        raise VptuneError(f"--out '{spec.out}' holds a sweep with other settings ({shown}); rerun it "
                          f"with the settings of its {SWEEP_FILE} to finish it, or pick another --out")


def record_sweep(spec: SweepSpec) -> None:
    """Write the sweep's settings as `sweep.yaml` in its (existing) folder."""
    atomic_write(Path(spec.out) / SWEEP_FILE, yaml.safe_dump(_as_recorded(spec), sort_keys=False))


def _as_recorded(spec: SweepSpec) -> dict[str, Any]:
    # As the file holds it, so that a fresh spec compares equal to the one read back.
    return yaml.safe_load(yaml.safe_dump(dataclasses.asdict(spec), sort_keys=False))


def _comparable(values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        return {"sweep": values}
    kept = {key: value for key, value in values.items() if key not in (*LAUNCH_KEYS, "out")}
    if isinstance(kept.get("settings"), dict):
        kept["settings"] = {k: v for k, v in kept["settings"].items() if k not in RUNTIME_KEYS}
    return kept


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Each setting that differs, by its path in the recorded settings (`methods[0].grid.lr`)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in dict.fromkeys([*old, *new])
                for change in _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [change for index, (before, after) in enumerate(zip(old, new))
                for change in _differences(before, after, f"{path}[{index}]")]
    return [f"{path} {_short(old)} -> {_short(new)}"]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finished_any(out: Path) -> bool:
    """Whether the sweep in `out` has finished a trial (a kept record or a row in its table)."""
    table = out / JSONL
    return (table.is_file() and table.stat().st_size > 0) or any((out / "runs").rglob(RESULT))
