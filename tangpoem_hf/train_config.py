"""A training run's settings, written once: :class:`TrainConfig` (every knob, checked when it is
made; its fields, with their help, are the ``tangpoem train`` flags), the default learning rate,
the check that a resume continues the same run, and where the run computes (device, bf16).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from .batching import Mode
from .checkpointing import LATEST, META_NAME, has_checkpoint
from .corpus import parse_dynasties
from .errors import InputError
from .modeling import Architecture, TangPoemConfig, knob, switch

DEFAULT_LR = {"adam": 2e-3, "adamw": 2e-3, "adagrad": 0.05, "sgd": 1.0}  # tuned at REFERENCE_BATCH
REFERENCE_BATCH = 64


def default_lr(optimizer: str, global_batch: int) -> float:
    """The default rate for a global batch (every process's rows together).

    Larger batches take larger steps: the square-root rule for the adaptive optimisers
    (Malladi et al., 2022, "On the SDEs and scaling rules for adaptive gradient algorithms"),
    the linear rule for SGD (Goyal et al., 2017). Batch 64 keeps the table's rate.
    """
    ratio = global_batch / REFERENCE_BATCH
    return DEFAULT_LR[optimizer] * (ratio if optimizer == "sgd" else math.sqrt(ratio))


# The choice-like fields and what each accepts: checked once, when a TrainConfig is made.
CHOICES = {
    "mode": ("ours", "report"),
    "softmax": ("full", "adaptive"),
    "optimizer": tuple(DEFAULT_LR),
    "lr_schedule": ("constant", "cosine"),
    "start_state": ("stored", "learned"),
}
AT_LEAST_ONE = ("min_freq", "embedding_dim", "hidden_size", "num_layers", "batch_size", "seq_len", "epochs",
                "checkpoint_every", "keep_checkpoints", "keyword_min_count", "tang_weight")  # fmt: skip
NOT_NEGATIVE = ("warmup_steps", "weight_decay", "clip", "eval_every", "patience", "threads", "ar", "tar")


def flag(name: str) -> str:
    """The command-line spelling of a setting: a TrainConfig switch's own (``--traditional`` for
    ``simplified``, ``--no-control``), else ``--setting-name``."""
    meta = {f.name: f.metadata for f in fields(TrainConfig)}.get(name, {})
    return meta.get("switch") or "--" + name.replace("_", "-")


def _architecture_help(name: str) -> Mapping[str, Any]:
    """An Architecture field's help, for a TrainConfig field that gives it a new run's default."""
    return {f.name: f for f in fields(Architecture)}[name].metadata


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1]


@dataclass
class TrainConfig(Architecture):
    """Every knob of a run; saved beside the checkpoints so ``--resume`` needs no flags.

    The architecture fields (and their help) are :class:`~tangpoem_hf.modeling.Architecture`'s; a
    field with help text is a ``tangpoem train`` flag: a ``knob`` takes a value (``--lr 0.001``), a
    ``switch`` is a switch (``--tie-weights``, ``--no-control``).
    """

    # A new run's start state and control segment (Architecture's defaults are what an older
    # config.json without these fields means). The report's mode always starts from zeros;
    # fine-tuning follows the base model, and a run folder whose vocab.json exists follows it.
    start_state: str = field(default="stored", metadata=_architecture_help("start_state"))
    control: bool = switch(
        True, "no control segment (form, title, keywords) before each poem, as older models", "--no-control"
    )
    corpus: str | None = knob(
        None, "chinese-poetry folder, Hub dataset id or packed corpus (tangpoem data pack) (default: $TANGPOEM_CORPUS)"
    )
    # Song poems train beside Tang's; validation, model selection and every figure stay on Tang's
    # split, and each other dynasty's own validation slice is logged (song_validation_perplexity).
    dynasties: str = knob(
        "tang", "comma-separated: tang, or tang,song to train on the 全宋诗 too (validation stays Tang's)"
    )
    tang_weight: int = knob(
        1, "every Tang training poem is read this many times per epoch (with --dynasties tang,song)"
    )
    out_dir: str = knob("runs/tangpoem", "run folder: vocab.json, checkpoints/, train_log.jsonl, best/, curves.png")
    mode: Mode = knob(
        "ours", "preprocessing: ours (punctuation, bos/eos, packed) or report (stripped, cut and padded to 100)"
    )
    simplified: bool = switch(True, "keep the corpus in traditional script", "--traditional")
    min_freq: int = knob(1, "drop characters seen fewer times than this from the vocabulary")
    # AWD-LSTM's activation regularisation (docs/reports/results.md says what each was worth).
    ar: float = knob(0.0, "activation regularisation: this × mean square of the last layer's outputs")
    tar: float = knob(0.0, "temporal activation regularisation: this × mean square of their step-to-step change")
    average: float = knob(
        0.0, "validate and save an exponential moving average of the weights with this decay (0: none)"
    )
    # Title and keywords of the control segment, each dropped with these odds per poem and epoch.
    drop_title: float = knob(
        0.5, "with a control segment: the share of poems (per epoch) that train without their title"
    )
    drop_keywords: float = knob(
        0.5, "with a control segment: the share of poems (per epoch) that train without keywords"
    )
    keyword_min_count: int = knob(20, "a 2-gram may be a keyword once the corpus's 五言/七言 lines hold it this often")
    optimizer: str = knob("adam", "adam, adamw, adagrad or sgd")
    lr: float | None = knob(
        None,
        "learning rate (default per optimiser at a global batch of 64: adam 2e-3, adagrad 0.05, sgd 1.0; "
        "scaled by the square root of global batch / 64, linearly for sgd)",
    )
    lr_schedule: str = knob("constant", "constant or cosine (over the whole run)")
    warmup_steps: int = knob(0, "linear learning-rate warm-up steps (worth a few hundred with large batches)")
    weight_decay: float = knob(0.0, "weight decay")
    batch_size: int = knob(64, "sequences per batch (per process)")
    seq_len: int = knob(64, "tokens per chunk in packed mode (the report mode always uses 100)")
    epochs: int = knob(20, "epochs (when only --max-steps is given: as many as its steps need)")
    max_steps: int | None = knob(None, "train this many steps (with --epochs too: stop at whichever comes first)")
    # Seconds of training; checkpoints and evaluation excluded.
    time_budget: float | None = knob(None, "stop after this many seconds of training")
    clip: float = knob(1.0, "gradient-norm clipping (0 disables)")
    seed: int = knob(0, "random seed")
    device: str = knob("auto", "auto (CUDA when present), cpu or cuda")
    # bf16 autocast: "auto" turns it on where bf16 matmuls are fast (CUDA, a CPU with AVX512-BF16 or
    # AMX) and off elsewhere, where emulated bf16 is slower than fp32.
    bf16: bool | str = switch(
        "auto",
        "force bf16 autocast (the output layer on CPU; everything on CUDA) [auto: on for CUDA and CPUs with "
        "AVX512-BF16 or AMX, off elsewhere]",
        off=("--no-bf16", "force fp32 (see --bf16)"),
    )
    compile: bool = switch(False, "torch.compile the model")
    checkpoint_every: int = knob(200, "steps between checkpoints")
    keep_checkpoints: int = knob(2, "how many checkpoints to keep")
    eval_every: int = knob(0, "steps between validations (0: once per epoch)")
    patience: int = knob(0, "stop after this many validations without a better perplexity (0: never stop early)")
    freeze_embedding: bool = switch(False, "keep the input embedding fixed")  # fine-tuning on little data
    push_to_hub: str | None = None  # repo id: push best/ at the end
    push_every_epoch: bool = False  # also push each epoch's model, in the background
    private: bool = False
    threads: int = knob(0, "torch CPU threads (0: torch's default)")
    progress: bool = switch(True, "no progress bar", "--no-progress")
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse a typo at once, instead of training with a silently different setting."""
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"{flag(name)} must be {_one_of(allowed)}, not {getattr(self, name)!r}.")
        if not (isinstance(self.bf16, bool) or self.bf16 == "auto"):
            raise InputError(f"bf16 must be auto, true or false, not {self.bf16!r}.")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not {self.device!r}.")
        for name in AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise InputError(f"{flag(name)} must be at least 1, not {getattr(self, name)}.")
        for name in NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise InputError(f"{flag(name)} must not be negative, not {getattr(self, name)}.")
        if self.lr is not None and self.lr < 0:
            raise InputError(f"--lr must not be negative, not {self.lr}.")
        for name in ("max_steps", "time_budget"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise InputError(f"{flag(name)} must be positive, not {getattr(self, name)}.")
        for name in ("dropout", "weight_drop", "embed_drop", "average"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"{flag(name)} must lie in [0, 1), not {getattr(self, name)}.")
        for name in ("drop_title", "drop_keywords"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{flag(name)} must lie in [0, 1], not {getattr(self, name)}.")
        self.dynasties = ",".join(parse_dynasties(self.dynasties))

    def model_config(self, vocab_size: int, pad_token_id: int) -> TangPoemConfig:
        """The model this run trains: the architecture fields come from here, in one place."""
        arch = {name: getattr(self, name) for name in ARCHITECTURE}
        if self.mode == "report":  # the report's recipe always starts from zeros
            arch["start_state"] = "zeros"
        return TangPoemConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, preprocessing=self.mode, **arch)

    def with_model(self, config: TangPoemConfig, **changes: Any) -> TrainConfig:
        """This run's settings with a trained model's architecture (fine-tuning continues a model).

        The regularisation is the base model's unless this run sets its own (a value other than
        TrainConfig's default): it shapes training only, so a continued model may change it.
        """
        arch = {name: getattr(config, name) for name in ARCHITECTURE}
        default = TrainConfig()
        arch.update(
            {name: getattr(self, name) for name in REGULARISATION if getattr(self, name) != getattr(default, name)}
        )
        if arch.get("start_state") == "zeros":  # an older or report-mode base: training stores one
            arch["start_state"] = "stored"
        return replace(self, mode=config.preprocessing, **arch, **changes)

    def resolved_lr(self, world: int = 1) -> float:
        """``--lr`` as given, or the default for this run's global batch."""
        return self.lr if self.lr is not None else default_lr(self.optimizer, self.batch_size * world)


# The fields a model's config and a run's config share (embedding_dim, hidden_size, num_layers,
# dropout, tie_weights, softmax, ...): Architecture's.
ARCHITECTURE = tuple(f.name for f in fields(Architecture))
REGULARISATION = ("dropout", "weight_drop", "embed_drop", "locked_dropout")  # architecture fields training alone uses
# What fixes the vocabulary, the weights' shapes, the optimiser state and the batches: a resume keeps them.
FIXED_FOR_RESUME = (*ARCHITECTURE, "mode", "simplified", "min_freq", "optimizer", "batch_size", "seq_len", "seed",
                    "dynasties", "tang_weight")  # fmt: skip


def saved_train_config(out_dir: str | Path) -> dict[str, Any]:
    """The configuration stored with a run's latest checkpoint; one sentence when there is none."""
    ckpt_dir = Path(out_dir) / "checkpoints"
    if not has_checkpoint(ckpt_dir):
        raise InputError(f"{out_dir} holds no checkpoint to resume: start the run without --resume.")
    name = json.loads((ckpt_dir / LATEST).read_text(encoding="utf-8"))["checkpoint"]
    saved = json.loads((ckpt_dir / name / META_NAME).read_text(encoding="utf-8"))["config"]
    known = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in saved.items() if k in known}


def changed_settings(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The one resume check: the names in ``wanted`` whose values differ from a run's ``saved``
    ones (a setting the saved run did not record cannot be compared). A run continues only as it
    was configured; each caller says which settings may change and words the refusal."""
    return [name for name, value in wanted.items() if name in saved and saved[name] != value]


def check_same_run(saved: dict[str, Any], cfg: TrainConfig, out_dir: str | Path) -> None:
    """Refuse to resume a run with another architecture or other data, which could not continue it."""
    changed = [flag(name) for name in changed_settings(saved, {n: getattr(cfg, n) for n in FIXED_FOR_RESUME})]
    if changed:
        raise InputError(f"{out_dir} was trained with other {', '.join(changed)}: keep them or pick a new --out-dir.")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs in hardware here: a CUDA device that supports it, or a CPU with AVX512-BF16 or
    AMX-BF16 units. Elsewhere torch emulates bf16 matmuls, and on such a CPU the benchmark measured our
    pipeline at 0.41x the report's with bf16 against 4.77x without (issue 21)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def resolve_bf16(setting: bool | str, device: torch.device) -> bool:
    """A ``bf16`` setting as it applies on ``device``: ``"auto"`` follows :func:`native_bf16`."""
    return native_bf16(device) if setting == "auto" else bool(setting)


BF16_FLAG = {"auto": "auto", "on": True, "off": False}  # --bf16 WORD → TrainConfig.bf16


def add_bf16_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--bf16 [auto|on|off]`` (bare: on) for the experiment and benchmark drivers; ``what`` says
    what runs in bf16 there. :data:`BF16_FLAG` maps the word to ``TrainConfig.bf16``."""
    parser.add_argument(
        "--bf16",
        nargs="?",
        const="on",
        choices=tuple(BF16_FLAG),
        default="auto",
        help=f"{what}: auto (where the CPU or GPU runs bf16 in hardware; elsewhere it is slower), on "
        "(--bf16 alone) or off [auto]",
    )
