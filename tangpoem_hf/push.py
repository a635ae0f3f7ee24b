"""``tangpoem push model|space|dataset``: stage the folder the Hub would receive, then upload it.

Each kind stages its folder once, the same way whether it is uploaded or kept: ``--dry-run OUT``
writes exactly that folder and uploads nothing (a model folder loads back with
``TangPoemLSTM.from_pretrained(OUT)``). A model card, Space card or dataset card is written with it.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hub import (
    UPLOADED_MODEL_FILES,
    push_dataset_folder,
    push_folder,
    push_space_folder,
    stage_dataset_folder,
    stage_model_folder,
    stage_space_folder,
)


def _stage_model(args: argparse.Namespace, out: Path) -> Path:
    card = {"datasets": args.dataset, "base_model": args.base_model, "perplexity": args.perplexity}
    return stage_model_folder(args.model, out, args.repo_id, **card)


def _upload_model(args: argparse.Namespace, folder: Path, api: Any) -> str:
    info = push_folder(
        folder,
        args.repo_id,
        api=api,
        private=args.private,
        commit_message=args.commit_message,
        allow_patterns=UPLOADED_MODEL_FILES,
    )
    return getattr(info, "commit_url", f"https://huggingface.co/{args.repo_id}")


def _stage_space(args: argparse.Namespace, out: Path) -> Path:
    return stage_space_folder(out, args.repo_id, args.model_id)


def _upload_space(args: argparse.Namespace, folder: Path, api: Any) -> str:
    push_space_folder(folder, args.repo_id, api=api, private=args.private, model_id=args.model_id)
    return f"https://huggingface.co/spaces/{args.repo_id}"


def _stage_dataset(args: argparse.Namespace, out: Path) -> Path:
    from .corpus import build_splits

    splits, _ = build_splits(args.corpus, simplified=not args.traditional)
    return stage_dataset_folder(splits, out, args.repo_id)


def _upload_dataset(args: argparse.Namespace, folder: Path, api: Any) -> str:
    push_dataset_folder(folder, args.repo_id, api=api, private=args.private)
    return f"https://huggingface.co/datasets/{args.repo_id}"


@dataclass(frozen=True)
class Target:
    """How one kind of repo is staged into a folder, and how that folder is uploaded (returning where to)."""

    stage: Callable[[argparse.Namespace, Path], Path]
    upload: Callable[[argparse.Namespace, Path, Any], str]


TARGETS = {
    "model": Target(_stage_model, _upload_model),
    "space": Target(_stage_space, _upload_space),
    "dataset": Target(_stage_dataset, _upload_dataset),
}


def push(args: argparse.Namespace, api: Any = None) -> int:
    """Stage ``args.kind``'s folder into ``--dry-run OUT`` or a temporary folder, and upload the latter.

    ``api`` stands in for ``huggingface_hub.HfApi()`` (tests pass a recording double).
    """
    target = TARGETS[args.kind]
    if args.dry_run:
        out = target.stage(args, Path(args.dry_run))
        print(f"Wrote {out} (dry run; nothing uploaded).")
        return 0
    with tempfile.TemporaryDirectory(prefix=f"tangpoem-{args.kind}-") as tmp:
        where = target.upload(args, target.stage(args, Path(tmp)), api)
    print(f"Pushed the {args.kind} to {where}")
    return 0


def add_push_parser(sub: Any) -> None:
    """``tangpoem push``'s subcommands, on the CLI's subparsers."""
    p = sub.add_parser("push", help="upload a model, the Gradio Space or the cleaned corpus to the Hugging Face Hub")
    kinds = p.add_subparsers(dest="kind", required=True)
    model = kinds.add_parser("model", help="a saved model folder (config, weights, vocabulary) with a model card")
    model.add_argument("--model", required=True, help="a folder written by save_pretrained (e.g. runs/x/best)")
    space = kinds.add_parser("space", help="the Gradio app (app.py, the package, pinned requirements, card)")
    space.add_argument("--model-id", help="Hub id of the model the Space should load [the bundled model, shipped]")
    dataset = kinds.add_parser("dataset", help="the cleaned corpus: Parquet train/validation/test splits and a card")
    dataset.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    dataset.add_argument("--traditional", action="store_true", help="keep the corpus's traditional script")
    for kind, parser in (("model", model), ("space", space), ("dataset", dataset)):
        parser.add_argument("--repo-id", required=True, help=f"USER/NAME of the {kind} on the Hub")
        parser.add_argument("--private", action="store_true", help="create the repo as private")
        parser.add_argument("--dry-run", metavar="OUT", help="write the folder to OUT instead of uploading")
    model.add_argument("--dataset", action="append", help="Hub dataset id for the card (repeatable)")
    model.add_argument("--base-model", help="the model this one was fine-tuned from")
    model.add_argument("--perplexity", type=float, help="held-out perplexity (default: from training.json)")
    model.add_argument("--commit-message", default="Upload tangpoem model")
    p.set_defaults(func=push)
