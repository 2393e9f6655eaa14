"""`vptune push`: upload a per-task file (or a run's) with a generated model card to the Hugging Face Hub."""

from __future__ import annotations

import argparse

from ..engine.evaluate import TASK_FILE
from ..hub.push import push


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push", help="upload a per-task file and its model card to a Hugging Face Hub model repository",
        description="Upload RUN_OR_FILE (a per-task .safetensors file, or a run folder's task.safetensors) and a "
                    "model card (README.md: method, backbone and its fingerprint, input pipeline, the run's metrics, "
                    "the VPT citation) to REPO_ID in one commit, creating the repository if needed. Uses your "
                    "Hugging Face token (HF_TOKEN or `hf auth login`) and HF_ENDPOINT. Load it back with "
                    "vptune.load('hf://REPO_ID') or `vptune predict hf://REPO_ID IMAGE`.")
    parser.add_argument("source", metavar="RUN_OR_FILE", help="a run folder or a per-task .safetensors file")
    parser.add_argument("repo_id", metavar="REPO_ID", help="model repository, OWNER/NAME")
    parser.add_argument("--path-in-repo", default=TASK_FILE, help=f"file name in the repository (default: {TASK_FILE})")
    parser.add_argument("--revision", help="branch to commit to (default: main)")
    parser.add_argument("--private", action="store_true", default=None,
                        help="make the repository private when it is created (default: the Hub's default)")
    parser.add_argument("--commit-message", help="commit message (default: 'vptune push: FILE')")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pushed = push(args.source, args.repo_id, path_in_repo=args.path_in_repo, revision=args.revision,
                  private=args.private, commit_message=args.commit_message)
    print(pushed.commit_url)
    print(pushed.uri)
    return 0
