"""The model: Embedding → LSTM → Linear over the characters, Hub-native through the mixin.

``config.json`` + ``model.safetensors`` + ``vocab.json`` make a model folder. Loading is strict and
never unpickles: a folder that only has ``pytorch_model.bin`` is refused.

What the Hub mixin does and what stays here, one reason each:

* ``config.json`` is written by the mixin from the config dataclass it captured at ``__init__``.
* The model card is the mixin's, from ``MODEL_CARD_TEMPLATE`` (``cards.py`` fills the same template
  with samples and metrics for pushes).
* ``vocab.json`` is saved and loaded here: the mixin knows nothing of tokenizers.
* The config is read here before the mixin sees it: a broken file gets one sentence, and fields
  this version does not know are ignored instead of failing ``__init__``.
* Weights are loaded here: the mixin's loader falls back to ``pytorch_model.bin`` through
  ``torch.load`` (a pickle), and names a shape mismatch in a traceback, not a sentence.
* Files are fetched here: ``hf_hub_download``'s exceptions become one :class:`ModelFileError` sentence.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from torch import nn

from .control import has_controls
from .errors import ModelFileError
from .paths import is_missing_local_path
from .tokenizer import VOCAB_NAME, CharTokenizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth")
BUNDLED_MODEL_DIR = Path(__file__).parent / "pretrained"
IGNORE_INDEX = -100
# Adaptive softmax clusters over the frequency-sorted ids: on the Tang corpus the first 2,000 ids
# cover 95% of tokens and the first 4,000 99%, so most positions only pay for a 2,002-way head.
DEFAULT_CUTOFFS = (2000, 4000)
START_STATES = ("zeros", "stored", "learned")

LSTMState = tuple[torch.Tensor, torch.Tensor]

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title | default("tangpoem LSTM", true) }}

A character-level LSTM that writes Tang poems (唐诗), from the tangpoem package (`tangpoem_hf`).

## Usage

```python
from tangpoem_hf import TangPoemLSTM, generate_poem

{% if bundled %}model = TangPoemLSTM.from_pretrained()  # the model bundled with tangpoem_hf
{% else %}model = TangPoemLSTM.from_pretrained("{{ repo_id | default("path/to/model", true) }}")
{% endif %}print(generate_poem(model, first="山", form=7, lines=4, seed=0).text)
```

{{ body | default("", true) }}
"""


def knob(default: Any, help: str) -> Any:
    """A configuration field with its help text: the ``tangpoem train`` flag ``--field-name VALUE``."""
    return field(default=default, metadata={"help": help})


def switch(default: Any, help: str, flag: str | None = None, off: tuple[str, str] | None = None) -> Any:
    """A configuration field set by a ``tangpoem train`` switch: ``flag`` (``--field-name`` when
    None) sets it to True, or to False where True is its default; ``off`` is the flag and help of a
    second switch, which sets it to False (for a field whose default is neither, as bf16's "auto")."""
    return field(default=default, metadata={"help": help, "switch": flag, "off": off})


@dataclass
class Architecture:
    """The network's shape and its regularisation: the fields a model's config and a training run
    (:class:`tangpoem_hf.train_config.TrainConfig`) share, written once here."""

    embedding_dim: int = knob(512, "embedding size")
    hidden_size: int = knob(512, "LSTM hidden size")
    num_layers: int = knob(1, "LSTM layers")
    dropout: float = knob(0.0, "dropout on embeddings and LSTM outputs")
    # AWD-LSTM regularisation (Merity et al. 2017), training only, so a model's logits never depend
    # on them: DropConnect on each hidden-to-hidden matrix, whole characters dropped from the
    # embedding table, and dropout masks shared across time steps ("locked") instead of per step.
    weight_drop: float = knob(0.0, "AWD-LSTM DropConnect on the hidden-to-hidden weights (training only)")
    embed_drop: float = knob(0.0, "drop whole characters from the embedding table (training only)")
    locked_dropout: bool = switch(False, "dropout masks shared by all time steps of a sequence (AWD-LSTM)")
    tie_weights: bool = switch(False, "share the embedding and output weights")
    softmax: str = knob(
        "full",
        "full, or adaptive (clusters over frequency-sorted characters: faster, see docs/reports/training-speed.md)",
    )
    # The LSTM state every poem starts from: "zeros" (older models), "stored" (the mean state at <bos>
    # of a pass over training poems, for models trained on packed streams) or "learned" (a parameter,
    # for models trained one poem per row). See docs/reports/results.md for the measurement behind the choice.
    # The defaults here are what a config.json without the field means; a new run's are TrainConfig's.
    start_state: str = knob(
        "zeros",
        "stored (packed streams; the mean state at <bos> is stored with the model) or learned "
        "(one poem per row, from a learned start state)",
    )
    # Whether the model reads a control segment (form, title, keywords) before each poem; its
    # vocab.json then ends with the control tokens (tangpoem_hf.control). Older models: False.
    control: bool = switch(False, "a control segment (form, title, keywords) before each poem")


@dataclass
class TangPoemConfig(Architecture):
    """Hyper-parameters that fix the weights' shapes; saved as ``config.json``."""

    vocab_size: int = 8000
    pad_token_id: int = 0
    preprocessing: str = "ours"  # "ours" (punctuation, bos/eos) or "report" (bare characters)
    cutoffs: list[int] | None = None  # adaptive cluster bounds; None: DEFAULT_CUTOFFS below vocab_size
    div_value: float = 4.0  # adaptive: each tail cluster's projection is this much narrower than the last
    model_type: str = "tangpoem-lstm"

    def __post_init__(self) -> None:
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ModelFileError("tie_weights needs embedding_dim == hidden_size.")
        if min(self.vocab_size, self.embedding_dim, self.hidden_size, self.num_layers) < 1:
            raise ModelFileError("vocab_size, embedding_dim, hidden_size and num_layers must be positive.")
        if self.preprocessing not in ("ours", "report"):
            raise ModelFileError("preprocessing must be 'ours' or 'report'.")
        for name in ("dropout", "weight_drop", "embed_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ModelFileError(f"{name} must lie in [0, 1).")
        if self.softmax not in ("full", "adaptive"):
            raise ModelFileError("softmax must be 'full' or 'adaptive'.")
        if self.start_state not in START_STATES:
            raise ModelFileError(f"start_state must be one of {', '.join(START_STATES)}, not {self.start_state!r}.")
        if self.softmax == "adaptive":
            self._check_adaptive()

    def _check_adaptive(self) -> None:
        """Resolve the default cutoffs (so config.json records them) and refuse what cannot work."""
        if self.tie_weights:
            raise ModelFileError("tie_weights needs softmax='full': an adaptive softmax has no single output table.")
        if self.preprocessing == "report":
            raise ModelFileError("The report's recipe counts padding in a full softmax: use softmax='full'.")
        if self.cutoffs is None:
            self.cutoffs = [c for c in DEFAULT_CUTOFFS if c < self.vocab_size - 1] or [max(1, self.vocab_size // 2)]
        cuts = [int(c) for c in self.cutoffs]
        if not cuts or cuts != sorted(set(cuts)) or cuts[0] < 1 or cuts[-1] >= self.vocab_size - 1:
            raise ModelFileError(f"cutoffs must increase strictly within 1..{self.vocab_size - 2}, not {self.cutoffs}.")
        if self.div_value < 1.0:
            raise ModelFileError("div_value must be at least 1.")
        self.cutoffs = cuts


@dataclass
class TangPoemOutput:
    """``logits`` are log-probabilities with an adaptive softmax, and ``None`` when it trains on labels
    (building the full distribution is exactly the cost the adaptive softmax avoids)."""

    logits: torch.Tensor | None
    loss: torch.Tensor | None
    state: LSTMState
    hidden: torch.Tensor | None = None  # the last layer's outputs before dropout (for AR/TAR penalties)


class TangPoemLSTM(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="tangpoem",
    license="mit",
    language=["zh"],
    pipeline_tag="text-generation",
    tags=["poetry", "tang-poetry", "lstm", "chinese"],
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """Embedding → LSTM → Linear, as in the report, with optional weight tying."""

    def __init__(self, config: TangPoemConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer: CharTokenizer | None = None
        self._step_cache: tuple[tuple[tuple[int, int], ...], list[torch.Tensor]] | None = None  # see _step_weights
        self.embed = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head: nn.Linear | nn.AdaptiveLogSoftmaxWithLoss
        if config.softmax == "adaptive":
            self.head = nn.AdaptiveLogSoftmaxWithLoss(
                config.hidden_size, config.vocab_size, list(config.cutoffs or ()), div_value=config.div_value
            )
        else:
            self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            # A unit-variance embedding used as output weights gives huge initial logits, so a
            # tied table starts at the output layer's scale instead.
            nn.init.normal_(self.embed.weight, std=config.hidden_size**-0.5)
            self.head.weight = self.embed.weight
        if config.start_state != "zeros":
            shape = (config.num_layers, config.hidden_size)
            if config.start_state == "learned":
                self.start_h, self.start_c = nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.zeros(shape))
            else:  # stored: saved with the weights, never trained
                self.register_buffer("start_h", torch.zeros(shape))
                self.register_buffer("start_c", torch.zeros(shape))

    def set_regularisation(self, **settings: Any) -> None:
        """Change training-only settings (``dropout``, ``weight_drop``, ``embed_drop``,
        ``locked_dropout``): a continued model may train with other ones than its base did."""
        replace(self.config, **settings)  # validated as any config is, before anything changes
        config = self.config  # changed in place: the Hub mixin saves this object as config.json
        for name, value in settings.items():
            setattr(config, name, value)
        self.drop.p = config.dropout
        self.lstm.dropout = config.dropout if config.num_layers > 1 else 0.0

    def initial_state(self, batch: int) -> LSTMState | None:
        """The state a poem starts from, for ``batch`` rows; None means zeros (older models).

        Every path that starts a poem (training on poems, validation, scoring, decoding, serving)
        gets it through ``forward(state=None)``, so none can start from a state the model never saw.
        """
        if self.config.start_state == "zeros":
            return None
        h = self.start_h.unsqueeze(1).expand(-1, batch, -1).contiguous()
        c = self.start_c.unsqueeze(1).expand(-1, batch, -1).contiguous()
        return h, c

    @torch.no_grad()
    def set_start_state(self, h: torch.Tensor, c: torch.Tensor) -> None:
        """Store ``(num_layers, hidden)`` tensors as the start state (see :func:`mean_start_state`)."""
        if self.config.start_state == "learned":
            raise ModelFileError("This model learns its start state; it cannot be replaced by a stored one.")
        if self.config.start_state == "zeros":
            self.config.start_state = "stored"
            device = self.embed.weight.device
            self.register_buffer("start_h", torch.zeros(h.shape, device=device))
            self.register_buffer("start_c", torch.zeros(c.shape, device=device))
        self.start_h.copy_(h)
        self.start_c.copy_(c)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        state: LSTMState | None = None,
    ) -> TangPoemOutput:
        """Logits for every position, and the mean loss when ``labels`` is given.

        ``labels[b, t]`` is the target for position ``t`` (already shifted, so that a stream can
        be cut into chunks with the state carried over); ``-100`` and the pad id are ignored.
        Without ``state`` the sequence starts from the model's start state (:meth:`initial_state`).
        """
        if state is None:
            state = self.initial_state(input_ids.shape[0])
        x = self._embed(input_ids)
        regularised = self.training and (self.config.weight_drop or self.config.locked_dropout)
        autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        # A decoding step: a few tokens in fp32 on CPU without gradients (see _lstm_cells, _step_weights).
        step = x.device.type == "cpu" and not (regularised or autocast or torch.is_grad_enabled()) and x.shape[1] <= 8
        if regularised:
            with torch.autocast(x.device.type, enabled=False):
                hidden, state = self._lstm_layers(x.float(), state)
        elif autocast:
            # On CPU the recurrence is small sequential matmuls where bf16 is no faster (measured),
            # so only the large output projection runs in bf16.
            with torch.autocast("cpu", enabled=False):
                hidden, state = self.lstm(self._drop(x).float(), state)
        elif step:
            hidden, state = self._lstm_cells(self._drop(x), state)
        else:
            hidden, state = self.lstm(self._drop(x), state)
        out = self._drop(hidden)
        if isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss):
            return self._adaptive_output(out, labels, state, hidden)
        logits = F.linear(out, self._step_weights()[-1], self.head.bias) if step else self.head(out)
        loss = None
        if labels is not None:
            labels = labels.masked_fill(labels == self.config.pad_token_id, IGNORE_INDEX)
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return TangPoemOutput(logits=logits, loss=loss, state=state, hidden=hidden)

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding, with whole characters dropped in training (``embed_drop``): a dropped
        character is unknown wherever it occurs in the batch, so the model cannot lean on one."""
        p = self.config.embed_drop
        if not (self.training and p):
            return self.embed(input_ids)
        weight = self.embed.weight
        keep = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)
        return F.embedding(input_ids, weight * keep)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout on a (batch, time, features) tensor: one mask per sequence when locked."""
        if self.config.locked_dropout:
            return locked_dropout(x, self.config.dropout, self.training)
        return self.drop(x)

    def _lstm_layers(self, x: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, LSTMState]:
        """``self.lstm`` run layer by layer, for the two things nn.LSTM cannot do: a dropped copy of
        each hidden-to-hidden matrix (``weight_drop``, one mask per batch) and locked dropout between
        layers. The same weights as the fused path, so evaluation is unchanged."""
        cfg = self.config
        if state is None:
            zeros = x.new_zeros(cfg.num_layers, x.shape[0], cfg.hidden_size)
            state = (zeros, zeros)
        inp, hs, cs = self._drop(x), [], []
        for layer in range(cfg.num_layers):
            w_ih, w_hh, b_ih, b_hh = (
                getattr(self.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            w_hh = F.dropout(w_hh, cfg.weight_drop, training=True)
            h0, c0 = state[0][layer : layer + 1], state[1][layer : layer + 1]
            out, h, c = torch.lstm(inp, (h0, c0), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, True, False, True)
            hs.append(h)
            cs.append(c)
            inp = self._drop(out) if layer < cfg.num_layers - 1 else out
        return inp, (torch.cat(hs), torch.cat(cs))

    def _adaptive_output(
        self, out: torch.Tensor, labels: torch.Tensor | None, state: LSTMState, hidden: torch.Tensor
    ) -> TangPoemOutput:
        """Mean loss over real targets when training; otherwise full log-probabilities as the logits."""
        if labels is None:
            with torch.autocast(out.device.type, enabled=False):
                logp = self.head.log_prob(out.float().flatten(0, 1))
            return TangPoemOutput(logits=logp.view(*out.shape[:-1], -1), loss=None, state=state, hidden=hidden)
        labels = labels.flatten()
        keep = ((labels != IGNORE_INDEX) & (labels != self.config.pad_token_id)).nonzero().squeeze(1)
        nll = adaptive_nll(self.head, out.flatten(0, 1).index_select(0, keep), labels.index_select(0, keep))
        return TangPoemOutput(logits=None, loss=nll.mean(), state=state, hidden=hidden)

    def _lstm_cells(self, x: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, LSTMState]:
        """The same LSTM as ``self.lstm``, one ``lstm_cell`` per token and layer.

        For the few tokens a decoding step feeds, this is ~25× faster on CPU than nn.LSTM's sequence
        kernel (0.2 ms against 5.4 ms for one 512-unit step, measured), which dominates generation.
        """
        layers, hidden = self.config.num_layers, self.config.hidden_size
        if state is None:
            zeros = x.new_zeros(x.shape[0], hidden)
            h, c = [zeros] * layers, [zeros] * layers
        else:
            h, c = list(state[0].unbind(0)), list(state[1].unbind(0))
        matrices = self._step_weights()
        outputs = []
        for t in range(x.shape[1]):
            inp = x[:, t]
            for layer in range(layers):
                w_ih, w_hh = matrices[2 * layer : 2 * layer + 2]
                b_ih, b_hh = getattr(self.lstm, f"bias_ih_l{layer}"), getattr(self.lstm, f"bias_hh_l{layer}")
                h[layer], c[layer] = torch.lstm_cell(inp, (h[layer], c[layer]), w_ih, w_hh, b_ih, b_hh)
                inp = h[layer]
            outputs.append(inp)
        return torch.stack(outputs, 1), (torch.stack(h), torch.stack(c))

    def _step_weights(self) -> list[torch.Tensor]:
        """The LSTM's weight matrices (``weight_ih``, ``weight_hh`` per layer) and, for a full
        softmax, the output layer's: the same values, each stored transposed (column-major).

        ``linear`` multiplies by ``weight.t()``, which is then contiguous; for the few rows of a
        decoding step (the candidates of a poem) MKL's kernel for that layout is 2-3× faster than
        the one for a row-major weight, and a single row is no slower (benchmarks/candidates.py).
        The copies cost one more set of weights in memory; they are remade whenever a weight
        changes (training, loading, moving, swapping ``.data``), which its storage and version
        counter tell. An in-place change through another tensor that shares a weight's storage
        escapes the counter (as it escapes autograd's checks): change weights through the parameters.
        """
        matrices = [
            getattr(self.lstm, f"{kind}_l{layer}")
            for layer in range(self.config.num_layers)
            for kind in ("weight_ih", "weight_hh")
        ]
        if isinstance(self.head, nn.Linear):
            matrices.append(self.head.weight)
        key = tuple((w.data_ptr(), w._version) for w in matrices)
        if self._step_cache is None or self._step_cache[0] != key:
            self._step_cache = (key, [w.detach().t().contiguous().t() for w in matrices])
        return self._step_cache[1]

    # --- saving and loading: the mixin does the Hub work, these two add the vocabulary ----------

    def _save_pretrained(self, save_directory: Path) -> None:
        if self.tokenizer is None:
            raise ModelFileError("The model has no tokenizer attached, so its vocab.json cannot be saved.")
        (Path(save_directory) / "README.md").unlink(missing_ok=True)  # the mixin never overwrites a card
        super()._save_pretrained(save_directory)
        self.tokenizer.save(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path | None = None, **kwargs: Any) -> TangPoemLSTM:
        """Load from a local folder, a Hub repo id, or (with no argument) the bundled model."""
        source = str(pretrained_model_name_or_path or BUNDLED_MODEL_DIR)
        if os.path.isdir(source):
            _check_local_folder(Path(source))
        elif is_missing_local_path(source):
            raise ModelFileError(f"The model folder {source} does not exist.")
        config_path = _fetch(source, CONFIG_NAME, kwargs)
        try:
            raw = json.loads(Path(config_path).read_text(encoding="utf-8"))
            config = TangPoemConfig(**{f.name: raw[f.name] for f in fields(TangPoemConfig) if f.name in raw})
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{config_path} is not a valid tangpoem config ({exc}).") from None
        return super().from_pretrained(source, config=config, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: TangPoemConfig,
        map_location: str = "cpu",
        **_: Any,
    ) -> TangPoemLSTM:
        hub = dict(
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        weights = _fetch(model_id, WEIGHTS_NAME, hub)
        tokenizer = CharTokenizer.load(_fetch(model_id, VOCAB_NAME, hub))
        if len(tokenizer) != config.vocab_size:
            raise ModelFileError(
                f"{VOCAB_NAME} has {len(tokenizer)} tokens but config.json says vocab_size={config.vocab_size}."
            )
        if config.control != has_controls(tokenizer):
            raise ModelFileError(
                f"config.json says control={config.control} but {VOCAB_NAME} "
                f"{'lacks' if config.control else 'has'} the control tokens."
            )
        model = cls(config)
        try:
            state = safetensors.torch.load_file(weights, device=map_location)
        except (safetensors.SafetensorError, OSError, ValueError) as exc:
            raise ModelFileError(f"{weights} is not a readable safetensors file ({exc}).") from None
        _load_strict(model, state, weights)
        model.tokenizer = tokenizer
        model.eval()
        return model


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask per sequence, shared by all its time steps (variational dropout, Gal &
    Ghahramani 2016): per-step masks let a recurrent model average the noise away over time."""
    if not (training and p):
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p)
    return x * mask


@torch.inference_mode()
def mean_start_state(model: TangPoemLSTM, poems: Sequence[Sequence[int]], streams: int = 64) -> LSTMState:
    """The mean LSTM state after reading a poem (framed id lists), when poems are read as streams.

    That is the state a model trained on packed streams has nearly always been in when a poem
    began (it had just read another poem), so storing it makes generation and scoring start where
    training did. Poems are dealt round-robin into ``streams`` parallel streams.
    """
    from torch.nn.utils.rnn import pack_sequence

    if not poems:
        raise ValueError("mean_start_state needs at least one poem.")
    streams = min(streams, len(poems))
    was_training = model.training
    model.eval()
    device = model.embed.weight.device
    h = torch.zeros(model.config.num_layers, streams, model.config.hidden_size, device=device)
    c = torch.zeros_like(h)
    sum_h, sum_c = torch.zeros_like(h[:, 0]), torch.zeros_like(c[:, 0])
    rounds = len(poems) // streams
    for r in range(rounds):
        batch = [torch.as_tensor(poems[r * streams + s], dtype=torch.long, device=device) for s in range(streams)]
        packed = pack_sequence([model.embed(ids) for ids in batch], enforce_sorted=False)
        with torch.autocast(device.type, enabled=False):
            _, (h, c) = model.lstm(packed, (h, c))
        sum_h += h.sum(1)
        sum_c += c.sum(1)
    model.train(was_training)
    return sum_h / (rounds * streams), sum_c / (rounds * streams)


def adaptive_nll(asm: nn.AdaptiveLogSoftmaxWithLoss, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row negative log-likelihood, as ``asm(hidden, target)`` computes it, but autocast-safe.

    torch's own forward fails under CPU bf16 autocast (``index_copy_`` between dtypes); here the
    projections may run in bf16 while every log-softmax and the result stay fp32.
    """
    bounds = torch.tensor(asm.cutoffs[:-1], device=target.device)
    cluster = torch.bucketize(target, bounds, right=True)  # 0: shortlist, i: tail cluster i
    head_index = torch.where(cluster == 0, target, asm.shortlist_size + cluster - 1)
    head_logp = F.log_softmax(asm.head(hidden).float(), dim=-1)
    nll = -head_logp.gather(1, head_index[:, None]).squeeze(1)
    for i in range(1, asm.n_clusters + 1):
        rows = (cluster == i).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        tail_logp = F.log_softmax(asm.tail[i - 1](hidden.index_select(0, rows)).float(), dim=-1)
        local = (target.index_select(0, rows) - asm.cutoffs[i - 1])[:, None]
        nll = nll.index_add(0, rows, -tail_logp.gather(1, local).squeeze(1))
    return nll


def _check_local_folder(folder: Path) -> None:
    """Name the missing file up front, and refuse pickled weights explicitly."""
    for name in (CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME):
        if not (folder / name).is_file():
            pickled = [p for p in PICKLE_NAMES if (folder / p).exists()]
            hint = f" ({pickled[0]} is there, but tangpoem never loads pickled weights)" if pickled else ""
            raise ModelFileError(f"{folder / name} is missing{hint}.")


def _fetch(model_id: str, filename: str, hub: dict[str, Any]) -> str:
    """Path of ``filename`` in a local folder or in the Hub cache (downloading if allowed)."""
    if os.path.isdir(model_id):
        return os.path.join(model_id, filename)
    keys = ("revision", "cache_dir", "force_download", "local_files_only", "token")
    try:
        return hf_hub_download(repo_id=model_id, filename=filename, **{k: hub[k] for k in keys if k in hub})
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError, so it must come first
        raise ModelFileError(
            f"{filename} of {model_id} is not in the local cache and the Hub cannot be reached."
        ) from None
    except EntryNotFoundError:
        raise ModelFileError(f"The Hub repo {model_id} has no {filename}.") from None
    except (HfHubHTTPError, ValueError, OSError) as exc:
        raise ModelFileError(f"Could not get {filename} of {model_id} from the Hub ({type(exc).__name__}).") from None


def _load_strict(model: TangPoemLSTM, state: dict[str, torch.Tensor], weights: str) -> None:
    """load_state_dict(strict=True), with shape and key mismatches named in one sentence."""
    expected = model.state_dict()
    if model.config.tie_weights:
        state.setdefault("head.weight", state.get("embed.weight"))
        state = {k: v for k, v in state.items() if v is not None}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{weights} does not match config.json "
            f"(missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'})."
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelFileError(
                f"{weights} has {key} of shape {tuple(tensor.shape)} "
                f"but config.json implies {tuple(expected[key].shape)}."
            )
    model.load_state_dict(state, strict=True)


def load_model(name_or_path: str | Path | None = None, **kwargs: Any) -> TangPoemLSTM:
    """The model at a folder or Hub id, or the bundled one when none is given."""
    return TangPoemLSTM.from_pretrained(name_or_path, **kwargs)
