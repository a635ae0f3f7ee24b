"""Push a saved tangpoem model (config.json, model.safetensors, vocab.json) with a generated card.

    python scripts/push_to_hub.py --model runs/x/best --repo-id USER/NAME [--private]
    python scripts/push_to_hub.py --model runs/x/best --repo-id USER/NAME --dry-run OUT   # write only

``--dry-run`` writes exactly the folder that would be uploaded, so it can be inspected and loaded
back with ``TangPoemLSTM.from_pretrained(OUT)``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from tangpoem_hf.errors import TangPoemError
from tangpoem_hf.hub import UPLOADED_MODEL_FILES, push_folder, stage_model_folder


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a folder written by save_pretrained")
    parser.add_argument("--repo-id", required=True, help="USER/NAME on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--dry-run", metavar="OUT", help="write the folder to OUT instead of uploading")
    parser.add_argument("--dataset", action="append", help="Hub dataset id for the card (repeatable)")
    parser.add_argument("--base-model", help="the model this one was fine-tuned from")
    parser.add_argument("--perplexity", type=float, help="held-out perplexity (default: from training.json)")
    parser.add_argument("--commit-message", default="Upload tangpoem model")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    """Exit code 0 on success, 2 with one sentence on stderr for a user error."""
    args = parse_args(argv)
    card = {"datasets": args.dataset, "base_model": args.base_model, "perplexity": args.perplexity}
    try:
        if args.dry_run:
            out = stage_model_folder(args.model, args.dry_run, args.repo_id, **card)
            print(f"Wrote {out} (dry run; nothing uploaded).")
            return 0
        with tempfile.TemporaryDirectory(prefix="tangpoem-push-") as tmp:
            stage_model_folder(args.model, tmp, args.repo_id, **card)
            info = push_folder(
                tmp,
                args.repo_id,
                api=api,
                private=args.private,
                commit_message=args.commit_message,
                allow_patterns=UPLOADED_MODEL_FILES,
            )
        print(f"Pushed {args.model} to {getattr(info, 'commit_url', args.repo_id)}")
        return 0
    except TangPoemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
