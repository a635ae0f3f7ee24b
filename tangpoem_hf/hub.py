"""Publishing to the Hugging Face Hub: model, Space and dataset folders, and pushes.

Every push is two steps: *stage* a folder that holds exactly what would be uploaded (so
``--dry-run`` writes the very folder a push would send, and tests can load it back), then *upload*
it with ``create_repo`` + ``upload_folder`` on an ``HfApi``. The API object can be injected, so
tests record the calls instead of reaching the network. What the cards in those folders say is
:mod:`tangpoem_hf.cards`.

A model folder may carry ``training.json`` (written by :meth:`tangpoem_hf.training.Trainer.save_model`:
``{"train_config": {...}, "val_perplexity": ..., "step": ...}``); its config and held-out
perplexity go into the model card.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from .cards import build_dataset_card, build_model_card, build_space_card, installed_version
from .errors import TangPoemError
from .modeling import BUNDLED_MODEL_DIR, CONFIG_NAME, WEIGHTS_NAME, TangPoemLSTM
from .paths import portable_record
from .tokenizer import VOCAB_NAME

CARD_NAME = "README.md"
TRAINING_INFO_NAME = "training.json"
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME)
UPLOADED_MODEL_FILES = [*MODEL_FILES, CARD_NAME, TRAINING_INFO_NAME]
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

# The Space needs these at run time; each is pinned to the version installed here.
SPACE_REQUIREMENTS = ("torch", "numpy", "safetensors", "huggingface_hub", "gradio", "opencc")
SPACE_PACKAGE_IGNORE = ("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


_shared_api: HfApi | None = None


def default_api() -> HfApi:
    """One HfApi for the process: its single background worker keeps ``run_as_future`` pushes in order."""
    global _shared_api
    if _shared_api is None:
        _shared_api = HfApi()
    return _shared_api


# --- model folders -----------------------------------------------------------------------------


def read_training_info(folder: str | Path) -> dict[str, Any]:
    """``training.json`` of a model folder, or an empty dict when there is none."""
    path = Path(folder) / TRAINING_INFO_NAME
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TangPoemError(f"{path} is not valid JSON ({exc}).") from None
    return info if isinstance(info, dict) else {}


def stage_model_folder(
    model_dir: str | Path,
    out_dir: str | Path,
    repo_id: str | None = None,
    *,
    perplexity: float | None = None,
    **card_options: Any,
) -> Path:
    """Copy a saved model's files into ``out_dir`` and write its model card there.

    The model is loaded first, so a broken folder fails here with one sentence, not on the Hub.
    Perplexity and training config default to the folder's ``training.json``.
    """
    src, out = Path(model_dir), Path(out_dir)
    model = TangPoemLSTM.from_pretrained(src)
    info = read_training_info(src)
    info = portable_record(info)  # a training.json written before paths were made portable
    finetuned = info.get("train_config", {}).get("extra", {}).get("finetune")
    if finetuned:
        card_options.setdefault("finetuned", finetuned)
    if perplexity is None:
        for key, split in (("test_perplexity", "test"), ("val_perplexity", "validation")):
            if isinstance(info.get(key), (int, float)):
                perplexity = float(info[key])
                card_options.setdefault("perplexity_split", split)
                break
    split = card_options.get("perplexity_split", "validation")
    counts = (finetuned or {}).get("data", {}).get("poems", {})
    poems = info.get("test_poems") if split == "test" else None
    card_options.setdefault("perplexity_poems", poems or counts.get(split))
    if "training_config" not in card_options and info.get("train_config"):
        config = dict(info["train_config"])
        config.update({k: info[k] for k in ("train_seconds", "hardware", "storage_dtype") if k in info})
        card_options["training_config"] = config
    card_options.setdefault("notes", info.get("notes"))
    card_options.setdefault("comparison", info.get("comparison"))
    out.mkdir(parents=True, exist_ok=True)
    for name in (*MODEL_FILES, TRAINING_INFO_NAME):
        if (src / name).is_file() and (src / name).resolve() != (out / name).resolve():
            shutil.copy2(src / name, out / name)
    card = build_model_card(model, repo_id, perplexity=perplexity, **card_options)
    (out / CARD_NAME).write_text(str(card), encoding="utf-8")
    return out


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    api: HfApi | None = None,
    private: bool = False,
    commit_message: str = "Upload with tangpoem",
    allow_patterns: list[str] | None = None,
    space_sdk: str | None = None,
) -> Any:
    """``create_repo(exist_ok=True)`` then ``upload_folder``; returns the CommitInfo."""
    api = api or default_api()
    extra = {"space_sdk": space_sdk} if space_sdk else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **extra)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type=repo_type,
        commit_message=commit_message,
        allow_patterns=allow_patterns,
    )


def _stage_and_push(
    snapshot: Path, repo_id: str, api: HfApi, private: bool, commit_message: str, card_options: dict[str, Any]
) -> Any:
    try:
        stage_model_folder(snapshot, snapshot, repo_id, **card_options)
        return push_folder(
            snapshot,
            repo_id,
            api=api,
            private=private,
            commit_message=commit_message,
            allow_patterns=UPLOADED_MODEL_FILES,
        )
    finally:
        shutil.rmtree(snapshot.parent, ignore_errors=True)


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    api: HfApi | None = None,
    private: bool = False,
    run_as_future: bool = False,
    commit_message: str = "Upload tangpoem model",
    **card_options: Any,
) -> Any:
    """Push a ``save_pretrained`` folder (weights, config, vocabulary) with a generated model card.

    The folder is copied first, so the trainer may overwrite it at once (e.g. the next epoch's
    ``best/``). With ``run_as_future=True`` the card and upload run on the API's background
    worker and a ``Future`` is returned: training is never blocked, and pushes stay in order.
    ``card_options`` go to :func:`~tangpoem_hf.cards.build_model_card` (``datasets``, ``base_model``, ...).
    """
    src = Path(folder)
    missing = [name for name in MODEL_FILES if not (src / name).is_file()]
    if missing:
        raise TangPoemError(f"{src} is not a saved model: {', '.join(missing)} missing.")
    api = api or default_api()
    snapshot = Path(tempfile.mkdtemp(prefix="tangpoem-push-")) / "model"
    snapshot.mkdir()
    for name in (*MODEL_FILES, TRAINING_INFO_NAME):
        if (src / name).is_file():
            shutil.copy2(src / name, snapshot / name)
    args = (snapshot, repo_id, api, private, commit_message, dict(card_options))
    if run_as_future:
        future: Future = api.run_as_future(_stage_and_push, *args)
        return future
    return _stage_and_push(*args)


class PushToHubCallback:
    """The trainer's Hub pushes: ``best/`` with its card at the end, and optionally each epoch.

    Epoch pushes run in the background (the folder is snapshotted first) and finish before the
    final push, so the repo's history stays in order.
    """

    def __init__(self, repo_id: str, api: HfApi | None = None, private: bool = False, every_epoch: bool = False):
        self.repo_id, self.api, self.private, self.every_epoch = repo_id, api, private, every_epoch
        self._pushes: list[Future] = []

    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        if not self.every_epoch:
            return
        folder = trainer.out / "last-epoch"
        trainer.save_model(folder, extra={"epoch": epoch})
        self._pushes.append(
            push_model_folder(
                folder,
                self.repo_id,
                api=self.api,
                private=self.private,
                run_as_future=True,
                commit_message=f"Epoch {epoch}",
            )
        )

    def on_train_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        for future in self._pushes:
            future.result()
        push_model_folder(
            trainer.out / "best",
            self.repo_id,
            api=self.api,
            private=self.private,
            commit_message=f"Best model (validation perplexity {trainer.best_val:.2f})",
        )
        summary["pushed_to"] = self.repo_id


def push_model(
    model: TangPoemLSTM,
    repo_id: str,
    api: HfApi | None = None,
    private: bool = False,
    run_as_future: bool = False,
    commit_message: str = "Upload tangpoem model",
    **card_options: Any,
) -> Any:
    """Save an in-memory model and push it like :func:`push_model_folder`."""
    with tempfile.TemporaryDirectory(prefix="tangpoem-save-") as tmp:
        model.save_pretrained(tmp)
        return push_model_folder(
            tmp,
            repo_id,
            api=api,
            private=private,
            run_as_future=run_as_future,
            commit_message=commit_message,
            **card_options,
        )


# --- the Space -----------------------------------------------------------------------------------


def pinned_requirements(names: Sequence[str] = SPACE_REQUIREMENTS) -> list[str]:
    """``name==version`` for the Space's run-time packages, pinned to what is installed here."""
    return [f"{name}=={installed_version(name)}" for name in names]


def stage_space_folder(
    out_dir: str | Path,
    repo_id: str | None = None,
    model_id: str | None = None,
    app_file: str | Path | None = None,
) -> Path:
    """``app.py``, the package (it is not on PyPI), ``requirements.txt`` and the README.

    With ``model_id`` the Space loads that Hub model (preloaded at build time), so the bundled
    weights are left out; without it they travel in ``tangpoem_hf/pretrained/``.
    """
    out = Path(out_dir)
    if not model_id and not (BUNDLED_MODEL_DIR / CONFIG_NAME).is_file():
        raise TangPoemError(
            f"There is no bundled model in {BUNDLED_MODEL_DIR} for the Space to run; pass a Hub model id "
            "(--model-id USER/NAME)."
        )
    app = Path(app_file) if app_file else REPO_ROOT / "app.py"
    if not app.is_file():
        raise TangPoemError(f"{app} is missing: run from a checkout of the tangpoem repository.")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(app, out / "app.py")
    ignore = list(SPACE_PACKAGE_IGNORE) + (["pretrained"] if model_id else [])
    target = out / PACKAGE_DIR.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns(*ignore))
    (out / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n", encoding="utf-8")
    card = build_space_card(repo_id, [model_id] if model_id else [])
    (out / CARD_NAME).write_text(str(card), encoding="utf-8")
    return out


def push_space_folder(
    folder: str | Path,
    repo_id: str,
    api: HfApi | None = None,
    private: bool = False,
    model_id: str | None = None,
    commit_message: str = "Update the tangpoem Space",
) -> Any:
    """Create the Gradio Space if needed, set ``MODEL_ID``, and upload the staged folder."""
    api = api or default_api()
    result = push_folder(
        folder,
        repo_id,
        repo_type="space",
        api=api,
        private=private,
        commit_message=commit_message,
        space_sdk="gradio",
    )
    if model_id:
        api.add_space_variable(repo_id, "MODEL_ID", model_id, description="Hub id of the tangpoem model")
    return result


# --- the dataset ---------------------------------------------------------------------------------


def stage_dataset_folder(splits: Any, out_dir: str | Path, repo_id: str | None = None) -> Path:
    """Write a ``DatasetDict`` as ``data/<split>-00000-of-00001.parquet`` plus the dataset card."""
    out = Path(out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    counts, forms = {}, {}
    for split, ds in splits.items():
        ds.to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
        counts[split] = len(ds)
        for form in ds["form"]:
            forms[form] = forms.get(form, 0) + 1
    card = build_dataset_card(counts, dict(sorted(forms.items())), repo_id)
    (out / CARD_NAME).write_text(str(card), encoding="utf-8")
    return out


def push_dataset_folder(
    folder: str | Path,
    repo_id: str,
    api: HfApi | None = None,
    private: bool = False,
    commit_message: str = "Upload the cleaned Tang corpus",
) -> Any:
    """Create the dataset repo if needed and upload the staged Parquet folder."""
    return push_folder(folder, repo_id, repo_type="dataset", api=api, private=private, commit_message=commit_message)
