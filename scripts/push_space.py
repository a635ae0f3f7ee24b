"""Assemble the Gradio Space (app.py, the package, pinned requirements.txt, README) and upload it.

    python scripts/push_space.py --repo-id USER/NAME [--model-id USER/MODEL] [--private]
    python scripts/push_space.py --repo-id USER/NAME --dry-run DIR    # write the folder only

With ``--model-id`` the Space's front matter lists and preloads that model and the Space variable
``MODEL_ID`` points at it; without it the bundled model is shipped inside the package copy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tangpoem_hf.errors import TangPoemError
from tangpoem_hf.hub import push_space_folder, stage_space_folder

APP_FILE = Path(__file__).resolve().parents[1] / "app.py"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo-id", required=True, help="USER/NAME of the Space")
    parser.add_argument("--model-id", help="Hub id of the model the Space should load (default: bundled)")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--dry-run", metavar="DIR", help="write the Space folder to DIR instead of uploading")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    """Exit code 0 on success, 2 with one sentence on stderr for a user error."""
    args = parse_args(argv)
    try:
        if args.dry_run:
            out = stage_space_folder(args.dry_run, args.repo_id, args.model_id, app_file=APP_FILE)
            print(f"Wrote the Space folder {out} (dry run; nothing uploaded).")
            return 0
        with tempfile.TemporaryDirectory(prefix="tangpoem-space-") as tmp:
            stage_space_folder(tmp, args.repo_id, args.model_id, app_file=APP_FILE)
            push_space_folder(tmp, args.repo_id, api=api, private=args.private, model_id=args.model_id)
        print(f"Pushed the Space to https://huggingface.co/spaces/{args.repo_id}")
        return 0
    except TangPoemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
