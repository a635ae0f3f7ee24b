"""Publish the processed corpus as a Hub dataset: Parquet train/validation/test splits and a card.

    python scripts/push_dataset.py --corpus DIR --repo-id USER/tang-poems [--private]
    python scripts/push_dataset.py --corpus DIR --repo-id USER/tang-poems --dry-run OUT   # write only

The corpus goes through :func:`tangpoem_hf.corpus.build_splits`, the same cleaning training uses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from tangpoem_hf.corpus import build_splits
from tangpoem_hf.errors import TangPoemError
from tangpoem_hf.hub import push_dataset_folder, stage_dataset_folder


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    parser.add_argument("--repo-id", required=True, help="USER/NAME of the dataset")
    parser.add_argument("--traditional", action="store_true", help="keep the corpus's traditional script")
    parser.add_argument("--private", action="store_true", help="create the dataset repo as private")
    parser.add_argument("--dry-run", metavar="OUT", help="write the folder to OUT instead of uploading")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    """Exit code 0 on success, 2 with one sentence on stderr for a user error."""
    args = parse_args(argv)
    try:
        splits, _ = build_splits(args.corpus, simplified=not args.traditional)
        if args.dry_run:
            out = stage_dataset_folder(splits, args.dry_run, args.repo_id)
            print(f"Wrote {out} (dry run; nothing uploaded).")
            return 0
        with tempfile.TemporaryDirectory(prefix="tangpoem-dataset-") as tmp:
            stage_dataset_folder(splits, tmp, args.repo_id)
            push_dataset_folder(tmp, args.repo_id, api=api, private=args.private)
        print(f"Pushed the dataset to https://huggingface.co/datasets/{args.repo_id}")
        return 0
    except TangPoemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
