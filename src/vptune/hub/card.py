"""The model card `vptune push` writes: what the task file is, what it needs, how it scored, how to cite VPT."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .client import huggingface_hub

VPT_BIBTEX = """@inproceedings{jia2022vpt,
  title={Visual Prompt Tuning},
  author={Jia, Menglin and Tang, Luming and Chen, Bor-Chun and Cardie, Claire and Belongie, Serge and Hariharan, Bharath and Lim, Ser-Nam},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2022}
}"""


@dataclass
class RunRecord:
    """What a run folder says about how its task file was made and how it scored."""

    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] | None = None


def read_run(run_dir: Path) -> RunRecord:
    """The run's config.yaml and summary.json, and its test metrics when a sweep scored it (result.json)."""
    record = RunRecord()
    if (run_dir / "config.yaml").is_file():
        record.config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    if (run_dir / "summary.json").is_file():
        record.summary = json.loads((run_dir / "summary.json").read_text())
    if (run_dir / "result.json").is_file():
        record.test = json.loads((run_dir / "result.json").read_text()).get("test")
    return record


def model_card(description: dict[str, Any], uri: str, run: RunRecord | None = None) -> str:
    """The README.md of a repository holding the per-task file `uri` (its vptune description given)."""
    task_type = description.get("task_type", "classification")
    metadata = huggingface_hub().ModelCardData(
        library_name="vptune",
        pipeline_tag="image-segmentation" if task_type == "segmentation" else "image-classification",
        tags=["vptune", "visual-prompt-tuning", "parameter-efficient-fine-tuning", description["method"]],
    )
    title = (run.config.get("task") if run else None) or Path(uri).stem
    sections = [
        f"# {title}: {description['method']} on {description['backbone']}",
        "A per-task file of [vptune](https://pypi.org/project/vptune/): the tensors "
        f"`{description['method']}` tunes on a frozen backbone, with the description vptune needs to rebuild the model. The backbone is not in this "
        "repository; vptune builds it from the id below and refuses the file on any other weights.",
        _model_table(description),
        _input_section(description.get("input")),
        _results_section(run) if run else "",
        _use_section(uri),
        "## Citation\n\nVisual Prompt Tuning:\n\n```bibtex\n" + VPT_BIBTEX + "\n```",
    ]
    return f"---\n{metadata.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n"


def _model_table(description: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in description.get("options", {}).items()) or "none"
    names = description.get("class_names") or []
    shown = ", ".join(map(str, names[:10])) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    rows = [
        ("method", f"`{description['method']}` ({options})"),
        ("head", f"`{description.get('head', {'kind': 'linear'}).get('kind')}`"),
        ("backbone", f"`{description['backbone']}` (timm architecture `{description['arch']}`, "
                     f"{'pretrained' if description['pretrained'] else 'random-init'} weights, "
                     f"image size {description['img_size'] or 'the architecture default'})"),
        ("backbone fingerprint", f"`{description['backbone_fingerprint']}` (hash of the backbone weights the file "
                                 "was tuned on)"),
        ("classes", f"{description['num_classes']}" + (f": {shown}" if shown else "")),
        ("vptune", description.get("vptune_version", "?")),
    ]
    return "## Model\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _input_section(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "## Input pipeline\n\nNot recorded: vptune prepares images as the VTAB protocol does."
    steps = f"resize to {spec.get('resize')}" + (f", centre crop {spec['crop']}" if spec.get("crop") else "")
    return ("## Input pipeline\n\nRecorded in the file; `vptune.load` and `vptune predict` prepare images this way:\n\n"
            f"- protocol `{spec['protocol']}`, input {spec['img_size']} px: {steps} "
            f"({spec.get('interpolation')}, antialias {spec.get('antialias')})\n"
            f"- normalised with mean {spec['mean']} and std {spec['std']}")


def _results_section(run: RunRecord) -> str:
    config, summary = run.config, run.summary
    lines = []
    if config:
        lines.append(f"Trained on task `{config.get('task')}` (split `{config.get('train_split') or 'default'}`), "
                     f"{config.get('epochs')} epochs, batch {config.get('batch_size')}, {config.get('optimizer')} "
                     f"lr {config.get('lr')}, weight decay {config.get('weight_decay')}, seed {config.get('seed')}.")
    rows = []
    if run.test:
        scores = {k: v for k, v in run.test.items() if isinstance(v, (int, float)) and k != "skipped_images"}
        rows += [(f"test {k}", _number(v)) for k, v in scores.items()]
    for key, value in summary.items():
        if key.startswith("val_") and value is not None:
            rows.append((f"validation {key[4:]} ({summary.get('selected_by', 'last epoch')})", _number(value)))
    if "tuned_parameters" in summary:
        rows.append(("tuned parameters", f"{summary['tuned_parameters']:,}"))
    if not rows:
        return ""
    table = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    return "## Results\n\nFrom the run folder this file was pushed from.\n\n" + "\n\n".join(lines + [table])


def _use_section(uri: str) -> str:
    return ("## Use\n\n```python\nimport vptune\n\n"
            f'model = vptune.load("{uri}")  # builds the backbone, checks its fingerprint\n'
            "```\n\n```bash\n"
            f"vptune predict {uri} image.jpg\n```")


def _number(value: float | int) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)

