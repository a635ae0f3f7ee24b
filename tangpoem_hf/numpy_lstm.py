"""The tangpoem LSTM language model in plain NumPy, with backpropagation through time written out.

Same network as :class:`tangpoem_hf.modeling.TangPoemLSTM` (embedding, ``num_layers`` LSTM layers,
linear output layer, optional tied weights, optional dropout) and the same parameter names and
layouts, so weights move both ways with :meth:`NumpyLSTM.from_torch` and :meth:`NumpyLSTM.to_torch`.
It exists to check the report's gradient formulas: ``docs/guide/lstm-backprop.md`` derives every line of
:meth:`NumpyLSTM._backward`, and ``python -m tangpoem_hf.gradcheck`` proves them.

Notation (as in the report and the docs): for one layer at step ``t``, with ``z_t = W_ih x_t +
W_hh h_{t-1} + b`` split into four blocks in torch's order (i, f, g, o)::

    i_t = σ(z_i)   f_t = σ(z_f)   C̄_t = tanh(z_g)   o_t = σ(z_o)
    C_t = f_t * C_{t-1} + i_t * C̄_t
    h_t = o_t * tanh(C_t)

Speed comes from BLAS, not from Python: internally everything is time-major ``(T, B, ·)`` so a time
step is one contiguous slab; the input projection of all steps is one matmul; each step does one
fused ``(B, H) @ (H, 4H)`` gate matmul; the weight gradients are one matmul over all steps after the
loop; the output layer and its gradient are one matmul each over all ``T*B`` positions; softmax and
cross-entropy's backward run in place in the logits buffer. All activations live in preallocated
buffers (a :class:`_Workspace` per batch shape): the time loops create no arrays, only views, and
every operation writes with ``out=`` or in place. (NumPy itself still takes a small iteration buffer,
at most 8192 elements, for a ufunc on the strided gate views such as ``z[:, :H]``; contiguous
per-gate blocks would need four gate matmuls per step instead of one.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelFileError
from .modeling import IGNORE_INDEX, TangPoemConfig

if TYPE_CHECKING:
    from .modeling import TangPoemLSTM
    from .tokenizer import CharTokenizer

State = tuple[np.ndarray, np.ndarray]  # (h, c), each (num_layers, batch, hidden), as torch's nn.LSTM
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --- activation buffers ----------------------------------------------------------------------------------


@dataclass
class _Layer:
    """One LSTM layer's activations for a batch shape; the backward pass reuses ``gates`` in place."""

    x: np.ndarray  # (T, B, I) input to the layer, after dropout
    mask: np.ndarray | None  # (T, B, I) dropout mask already scaled by 1/(1-p), or None
    gates: np.ndarray  # (T, B, 4H) pre-activations z, then activations i f C̄ o, then their gradients δz
    c: np.ndarray  # (T+1, B, H) cell states, c[0] = C_0 (the initial state)
    tc: np.ndarray  # (T, B, H) tanh(C_t), kept for the backward pass
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = h_0
    dx: np.ndarray  # (T, B, I) gradient w.r.t. x, handed to the layer below (or the embedding)


@dataclass
class _Workspace:
    """Every array one forward/backward pass writes, allocated once per (batch, seq) shape."""

    layers: list[_Layer]
    head_in: np.ndarray  # (T, B, H) input to the output layer (top h after dropout)
    head_mask: np.ndarray | None
    logits: np.ndarray  # (T*B, V) logits, then softmax probabilities, then δlogits
    dh_top: np.ndarray  # (T, B, H) δh coming down from the output layer
    rec: np.ndarray  # (B, 4H) h_{t-1} @ W_hh.T in the forward pass
    dh: np.ndarray  # (B, H) δh_{t-1} through the recurrence, in the backward pass
    dc: np.ndarray  # (B, H) δC_t, then δC_{t-1} = δC_t * f_t
    t1: np.ndarray  # (B, H) scratch
    t2: np.ndarray  # (B, H) scratch
    bias: np.ndarray  # (4H,) b_ih + b_hh
    head_w_grad: np.ndarray | None  # (V, H) head gradient before it is added to a tied embedding


@dataclass
class StepResult:
    """What :meth:`NumpyLSTM.loss_and_grads` returns; ``grads`` arrays are reused by the next call."""

    loss: float
    grads: dict[str, np.ndarray]
    state: State  # final (h_T, c_T), detached copies, to carry into the next chunk
    state_grads: State  # (δh_0, δc_0): the loss's gradient w.r.t. the initial state
    tokens: int  # real (unmasked) target tokens the loss is averaged over


# --- the model --------------------------------------------------------------------------------------------


class NumpyLSTM:
    """Embedding → LSTM layers → Linear, forward and full BPTT in NumPy (float32 or float64)."""

    def __init__(self, config: TangPoemConfig, dtype: Any = np.float32, seed: int = 0) -> None:
        if config.softmax != "full":
            raise ModelFileError("The NumPy LSTM mirrors the full-softmax model only, not softmax='adaptive'.")
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, not {self.dtype}.")
        self.tokenizer: CharTokenizer | None = None
        self.rng = np.random.default_rng(seed)
        self.params = self._init_params()
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        # The start state ((num_layers, hidden) each, as the torch model's start_h/start_c), used
        # when no state is given; None for a model with start_state="zeros".
        self.start: State | None = None
        if config.start_state != "zeros":
            zeros = np.zeros((config.num_layers, config.hidden_size), self.dtype)
            self.start = (zeros, zeros.copy())
        self._workspaces: dict[tuple[int, int, bool], _Workspace] = {}

    def _init_params(self) -> dict[str, np.ndarray]:
        """torch's default initialisation, so both models start from the same distribution."""
        cfg, rng = self.config, self.rng
        V, E, H = cfg.vocab_size, cfg.embedding_dim, cfg.hidden_size
        k = H**-0.5  # nn.LSTM and nn.Linear(H, V) both draw from U(-1/sqrt(H), 1/sqrt(H))
        params = {"embed.weight": rng.normal(0.0, k if cfg.tie_weights else 1.0, (V, E))}
        for layer in range(cfg.num_layers):
            n_in = E if layer == 0 else H
            params[f"lstm.weight_ih_l{layer}"] = rng.uniform(-k, k, (4 * H, n_in))
            params[f"lstm.weight_hh_l{layer}"] = rng.uniform(-k, k, (4 * H, H))
            params[f"lstm.bias_ih_l{layer}"] = rng.uniform(-k, k, 4 * H)
            params[f"lstm.bias_hh_l{layer}"] = rng.uniform(-k, k, 4 * H)
        if not cfg.tie_weights:  # tied: the head uses embed.weight, which then gets both gradients
            params["head.weight"] = rng.uniform(-k, k, (V, H))
        params["head.bias"] = rng.uniform(-k, k, V)
        return {name: np.ascontiguousarray(p, dtype=self.dtype) for name, p in params.items()}

    @property
    def head_weight(self) -> np.ndarray:
        return self.params["embed.weight" if self.config.tie_weights else "head.weight"]

    def _layer_weights(self, layer: int) -> tuple[np.ndarray, ...]:
        p = self.params
        return tuple(p[f"lstm.{kind}_l{layer}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    # --- torch interop ---------------------------------------------------------------------------------

    @classmethod
    def from_torch(cls, model: TangPoemLSTM, dtype: Any = np.float32) -> NumpyLSTM:
        """Copy a TangPoemLSTM's weights (and tokenizer) into a new NumPy model."""
        out = cls(model.config, dtype=dtype)
        state = {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}
        for name in out.params:
            out.params[name][...] = state[name]
        if model.config.start_state != "zeros":
            out.start = (state["start_h"].astype(out.dtype), state["start_c"].astype(out.dtype))
        out.tokenizer = model.tokenizer
        return out

    def to_torch(self) -> TangPoemLSTM:
        """A float32 TangPoemLSTM with these weights and tokenizer, ready for ``save_pretrained``."""
        import torch

        from .modeling import TangPoemLSTM

        model = TangPoemLSTM(TangPoemConfig(**asdict(self.config)))
        state = {name: torch.from_numpy(p.astype(np.float32)) for name, p in self.params.items()}
        if self.config.tie_weights:
            state["head.weight"] = state["embed.weight"]
        if self.start is not None:
            state["start_h"], state["start_c"] = (torch.from_numpy(s.astype(np.float32)) for s in self.start)
        model.load_state_dict(state, strict=True)
        model.tokenizer = self.tokenizer
        return model.eval()

    # --- public passes -----------------------------------------------------------------------------------

    def forward(
        self, input_ids: np.ndarray, state: State | None = None, train: bool = False
    ) -> tuple[np.ndarray, State]:
        """Logits ``(B, T, V)`` (a fresh array) and the final state, like ``TangPoemLSTM.forward``."""
        ws, final = self._forward(input_ids, state, train)
        B, T = np.shape(input_ids)
        return ws.logits.reshape(T, B, -1).transpose(1, 0, 2).copy(), final

    def loss(self, input_ids: np.ndarray, labels: np.ndarray, state: State | None = None) -> float:
        """Mean cross-entropy over real targets (pad and -100 ignored), without gradients."""
        ws, _ = self._forward(input_ids, state, train=False)
        loss, _ = self._cross_entropy(ws, labels, need_grad=False)
        return loss

    def loss_and_grads(
        self, input_ids: np.ndarray, labels: np.ndarray, state: State | None = None, train: bool = True
    ) -> StepResult:
        """Forward, cross-entropy and full BPTT; ``train`` turns dropout on (when config.dropout > 0)."""
        ws, final = self._forward(input_ids, state, train)
        loss, tokens = self._cross_entropy(ws, labels, need_grad=True)
        state_grads = self._backward(ws, np.asarray(input_ids))
        return StepResult(loss, self.grads, final, state_grads, tokens)

    # --- forward -----------------------------------------------------------------------------------------

    def _workspace(self, B: int, T: int, train: bool) -> _Workspace:
        """Buffers for this shape; a few shapes are kept so generation and training don't thrash."""
        key = (B, T, train and self.config.dropout > 0)
        if key in self._workspaces:
            return self._workspaces[key]
        if len(self._workspaces) >= 4:
            self._workspaces.clear()
        cfg, dt = self.config, self.dtype
        V, E, H = cfg.vocab_size, cfg.embedding_dim, cfg.hidden_size
        dropout = key[2]
        layers = []
        for layer in range(cfg.num_layers):
            n_in = E if layer == 0 else H
            own_x = layer == 0 or dropout  # without dropout a layer reads the previous layer's h[1:] directly
            layers.append(
                _Layer(
                    x=np.empty((T, B, n_in), dt) if own_x else layers[-1].h[1:],
                    mask=np.empty((T, B, n_in), dt) if dropout else None,
                    gates=np.empty((T, B, 4 * H), dt),
                    c=np.empty((T + 1, B, H), dt),
                    tc=np.empty((T, B, H), dt),
                    h=np.empty((T + 1, B, H), dt),
                    dx=np.empty((T, B, n_in), dt),
                )
            )
        ws = _Workspace(
            layers=layers,
            head_in=np.empty((T, B, H), dt) if dropout else layers[-1].h[1:],
            head_mask=np.empty((T, B, H), dt) if dropout else None,
            logits=np.empty((T * B, V), dt),
            dh_top=np.empty((T, B, H), dt),
            rec=np.empty((B, 4 * H), dt),
            dh=np.empty((B, H), dt),
            dc=np.empty((B, H), dt),
            t1=np.empty((B, H), dt),
            t2=np.empty((B, H), dt),
            bias=np.empty(4 * H, dt),
            head_w_grad=np.empty((V, H), dt) if cfg.tie_weights else None,
        )
        self._workspaces[key] = ws
        return ws

    def _dropout(self, x: np.ndarray, mask: np.ndarray | None) -> None:
        """Inverted dropout in place: keep with probability 1-p and scale by 1/(1-p), as nn.Dropout."""
        if mask is None:
            return
        p = self.config.dropout
        self.rng.random(out=mask, dtype=self.dtype)
        np.greater_equal(mask, p, out=mask)
        mask *= 1.0 / (1.0 - p)
        x *= mask

    def _forward(self, input_ids: np.ndarray, state: State | None, train: bool) -> tuple[_Workspace, State]:
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be (batch, seq), not {ids.shape}.")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError("input_ids holds ids outside the vocabulary.")
        B, T = ids.shape
        H = self.config.hidden_size
        ws = self._workspace(B, T, train)
        np.take(self.params["embed.weight"], ids.T, axis=0, out=ws.layers[0].x, mode="clip")  # (T, B, E)
        for layer, lw in enumerate(ws.layers):
            if layer > 0 and lw.mask is not None:
                np.copyto(lw.x, ws.layers[layer - 1].h[1:])
            self._dropout(lw.x, lw.mask)
            if state is None and self.start is None:
                lw.h[0].fill(0.0)
                lw.c[0].fill(0.0)
            elif state is None:  # the model's start state, the same for every row
                lw.h[0] = self.start[0][layer]
                lw.c[0] = self.start[1][layer]
            else:
                lw.h[0] = state[0][layer]
                lw.c[0] = state[1][layer]
            self._layer_forward(layer, lw, ws)
        if ws.head_mask is not None:
            np.copyto(ws.head_in, ws.layers[-1].h[1:])
            self._dropout(ws.head_in, ws.head_mask)
        # output layer: one matmul over all T*B positions
        np.dot(ws.head_in.reshape(T * B, H), self.head_weight.T, out=ws.logits)
        ws.logits += self.params["head.bias"]
        final = (np.stack([lw.h[T] for lw in ws.layers]), np.stack([lw.c[T] for lw in ws.layers]))
        return ws, final

    def _layer_forward(self, layer: int, lw: _Layer, ws: _Workspace) -> None:
        """One LSTM layer over all steps; gates end up holding the activations i, f, C̄, o."""
        w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
        T, B, H = lw.tc.shape
        np.add(b_ih, b_hh, out=ws.bias)
        gates2d = lw.gates.reshape(T * B, 4 * H)
        np.dot(lw.x.reshape(T * B, -1), w_ih.T, out=gates2d)  # input projection of every step at once
        gates2d += ws.bias
        rec, tmp = ws.rec, ws.t1
        for t in range(T):
            z = lw.gates[t]
            np.dot(lw.h[t], w_hh.T, out=rec)  # the one fused gate matmul of this step
            z += rec
            i_f, g, o = z[:, : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
            _sigmoid_(i_f)
            _sigmoid_(o)
            np.tanh(g, out=g)
            i, f = i_f[:, :H], i_f[:, H:]
            np.multiply(f, lw.c[t], out=lw.c[t + 1])  # C_t = f_t * C_{t-1} + i_t * C̄_t
            np.multiply(i, g, out=tmp)
            lw.c[t + 1] += tmp
            np.tanh(lw.c[t + 1], out=lw.tc[t])
            np.multiply(o, lw.tc[t], out=lw.h[t + 1])  # h_t = o_t * tanh(C_t)

    # --- loss --------------------------------------------------------------------------------------------

    def _cross_entropy(self, ws: _Workspace, labels: np.ndarray, need_grad: bool) -> tuple[float, int]:
        """Mean softmax cross-entropy over real targets, as F.cross_entropy(ignore_index=-100).

        With ``need_grad`` the logits buffer is turned into δlogits in place:
        ``(softmax(z) - onehot(y)) / n`` on real rows and 0 on ignored ones (docs/guide/lstm-backprop.md, section 2).
        """
        y = np.asarray(labels).T.reshape(-1)  # time-major, like the logits rows
        if y.shape[0] != ws.logits.shape[0]:
            raise ValueError("labels must have the same (batch, seq) shape as input_ids.")
        real = (y != IGNORE_INDEX) & (y != self.config.pad_token_id)
        n = int(real.sum())
        rows = np.flatnonzero(real)
        cols = y[rows]
        z = ws.logits
        z -= z.max(axis=1, keepdims=True)  # stable: exp of non-positive numbers only
        picked = z[rows, cols].astype(np.float64)  # z_y - max
        np.exp(z, out=z)
        sums = z.sum(axis=1)
        loss = float(np.sum(np.log(sums[rows], dtype=np.float64) - picked) / n) if n else math.nan
        if need_grad:
            scale = np.zeros_like(sums)
            if n:
                scale[rows] = 1.0 / (n * sums[rows])
            z *= scale[:, None]  # softmax / n on real rows, zero elsewhere
            if n:
                z[rows, cols] -= 1.0 / n
        return loss, n

    # --- backward ----------------------------------------------------------------------------------------

    def _backward(self, ws: _Workspace, ids: np.ndarray) -> State:
        """BPTT from δlogits (in ws.logits) down to the embedding; fills self.grads, returns (δh_0, δc_0)."""
        g, cfg = self.grads, self.config
        B, T = ids.shape
        H = cfg.hidden_size
        dz = ws.logits  # (T*B, V)
        # output layer: δW = δzᵀ h (one matmul over every position), δb = Σ δz, δh = δz W
        head_grad = ws.head_w_grad if cfg.tie_weights else g["head.weight"]
        np.dot(dz.T, ws.head_in.reshape(T * B, H), out=head_grad)
        np.sum(dz, axis=0, out=g["head.bias"])
        np.dot(dz, self.head_weight, out=ws.dh_top.reshape(T * B, H))
        if ws.head_mask is not None:
            ws.dh_top *= ws.head_mask
        dh_above = ws.dh_top
        dh0 = np.empty((cfg.num_layers, B, H), self.dtype)
        dc0 = np.empty_like(dh0)
        for layer in reversed(range(cfg.num_layers)):
            lw = ws.layers[layer]
            self._layer_backward(layer, lw, ws, dh_above)
            dh0[layer], dc0[layer] = ws.dh, ws.dc
            if lw.mask is not None:
                lw.dx *= lw.mask
            dh_above = lw.dx
        # embedding: scatter-add the rows of δx into the table; a tied table also gets the head's gradient
        g["embed.weight"].fill(0.0)
        np.add.at(g["embed.weight"], ids.T.reshape(-1), dh_above.reshape(T * B, -1))
        if cfg.tie_weights:
            g["embed.weight"] += head_grad
        return dh0, dc0

    def _layer_backward(self, layer: int, lw: _Layer, ws: _Workspace, dh_above: np.ndarray) -> None:
        """BPTT through one layer: gates become δz, weight gradients are summed over steps in one matmul.

        ``dh_above[t]`` is δh_t from the layer above (or the output layer); it is updated in place.
        On return ``ws.dh`` and ``ws.dc`` hold δh_0 and δC_0, the gradients w.r.t. the initial state.
        """
        w_ih, w_hh, _, _ = self._layer_weights(layer)
        T, B, H = lw.tc.shape
        dh_rec, dc, t1, t2 = ws.dh, ws.dc, ws.t1, ws.t2
        dh_rec.fill(0.0)  # nothing flows back from after the last step (the loss doesn't see h_T or C_T)
        dc.fill(0.0)
        for t in reversed(range(T)):
            z = lw.gates[t]
            i, f, g, o = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
            tc, c_prev = lw.tc[t], lw.c[t]
            dh = dh_above[t]
            dh += dh_rec  # δh_t = from above + from step t+1
            # δC_t = δh_t o_t (1 - tanh²C_t) + δC_{t+1} f_{t+1}   (dc holds the second term already)
            np.multiply(tc, tc, out=t1)
            np.subtract(1.0, t1, out=t1)
            t1 *= o
            t1 *= dh
            dc += t1
            # δz_o = δh_t tanh(C_t) o_t (1 - o_t)
            np.subtract(1.0, o, out=t1)
            t1 *= o
            t1 *= tc
            np.multiply(t1, dh, out=o)
            # δz_i = δC_t C̄_t i_t (1 - i_t)   (into t1: i is still needed for δz_g)
            np.subtract(1.0, i, out=t1)
            t1 *= i
            t1 *= g
            t1 *= dc
            # δz_g = δC_t i_t (1 - C̄_t²)   (tanh candidate: 1 - C̄², not C̄(1 - C̄))
            np.multiply(g, g, out=t2)
            np.subtract(1.0, t2, out=t2)
            t2 *= i
            np.multiply(t2, dc, out=g)
            np.copyto(i, t1)
            # δz_f = δC_t C_{t-1} f_t (1 - f_t), and δC_{t-1} = δC_t f_t
            np.subtract(1.0, f, out=t1)
            t1 *= c_prev
            t1 *= dc
            dc *= f
            np.multiply(t1, f, out=f)
            # δh_{t-1} through the recurrence: the same fused matmul, transposed
            np.dot(z, w_hh, out=dh_rec)
        # weight gradients: Σ_t δz_tᵀ x_t and Σ_t δz_tᵀ h_{t-1}, each one matmul over all steps
        g, name = self.grads, f"l{layer}"
        dz = lw.gates.reshape(T * B, 4 * H)
        np.dot(dz.T, lw.x.reshape(T * B, -1), out=g[f"lstm.weight_ih_{name}"])
        np.dot(dz.T, lw.h[:T].reshape(T * B, H), out=g[f"lstm.weight_hh_{name}"])
        np.sum(dz, axis=0, out=g[f"lstm.bias_ih_{name}"])
        g[f"lstm.bias_hh_{name}"][...] = g[f"lstm.bias_ih_{name}"]
        np.dot(dz, w_ih, out=lw.dx.reshape(T * B, -1))  # δx for the layer below


def _sigmoid_(x: np.ndarray) -> None:
    """σ(x) = (1 + tanh(x/2)) / 2 in place: no overflow warnings for large |x|, no temporaries."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5


# --- optimisers and clipping ------------------------------------------------------------------------------


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most ``max_norm`` (torch's rule)."""
    total = math.sqrt(sum(float(np.dot(gr.ravel(), gr.ravel())) for gr in grads.values()))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for gr in grads.values():
            gr *= coef
    return total


# state_dict() hands out the live arrays (no copies: save them before the next step); load_state_dict copies.
def _unprefixed(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays saved under ``prefix``, as fresh writable copies that the updates may change in place."""
    return {key[len(prefix) :]: np.array(a) for key, a in state.items() if key.startswith(prefix)}


@dataclass
class SGD:
    """p ← p - lr·v with v ← μ·v + g (plain SGD when momentum is 0), as torch.optim.SGD."""

    params: dict[str, np.ndarray]
    lr: float = 0.1
    momentum: float = 0.0
    _velocity: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def step(self, grads: dict[str, np.ndarray]) -> None:
        for name, p in self.params.items():
            gr = grads[name]
            if self.momentum:
                v = self._velocity.setdefault(name, np.zeros_like(p))
                v *= self.momentum
                v += gr
                gr = v
            p -= self.lr * gr

    def state_dict(self) -> dict[str, np.ndarray]:
        """The momentum buffers (none without momentum): with the parameters, all that a resumed run needs."""
        return {f"velocity.{name}": v for name, v in self._velocity.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._velocity = _unprefixed(state, "velocity.")


@dataclass
class Adagrad:
    """p ← p - lr·g / (√Σg² + ε): rarely seen characters keep large steps. As torch.optim.Adagrad."""

    params: dict[str, np.ndarray]
    lr: float = 0.01
    eps: float = 1e-10
    _sum: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tmp: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def step(self, grads: dict[str, np.ndarray]) -> None:
        for name, p in self.params.items():
            gr = grads[name]
            acc = self._sum.setdefault(name, np.zeros_like(p))
            tmp = self._tmp.setdefault(name, np.empty_like(p))
            np.multiply(gr, gr, out=tmp)
            acc += tmp
            np.sqrt(acc, out=tmp)
            tmp += self.eps
            np.divide(gr, tmp, out=tmp)
            tmp *= self.lr
            p -= tmp

    def state_dict(self) -> dict[str, np.ndarray]:
        """The running sums of g²: they set every later step size, so a resumed run needs them exactly."""
        return {f"sum.{name}": acc for name, acc in self._sum.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._sum = _unprefixed(state, "sum.")


@dataclass
class Adam:
    """Adam with bias correction, the exact update order of torch.optim.Adam (no weight decay)."""

    params: dict[str, np.ndarray]
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    steps: int = 0
    _m: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _v: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tmp: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.steps += 1
        b1, b2 = self.betas
        step_size = self.lr / (1.0 - b1**self.steps)
        sqrt_bc2 = math.sqrt(1.0 - b2**self.steps)
        for name, p in self.params.items():
            gr = grads[name]
            m = self._m.setdefault(name, np.zeros_like(p))
            v = self._v.setdefault(name, np.zeros_like(p))
            tmp = self._tmp.setdefault(name, np.empty_like(p))
            m *= b1  # m ← β1 m + (1-β1) g
            np.multiply(gr, 1.0 - b1, out=tmp)
            m += tmp
            v *= b2  # v ← β2 v + (1-β2) g²
            np.multiply(gr, gr, out=tmp)
            tmp *= 1.0 - b2
            v += tmp
            np.sqrt(v, out=tmp)  # p ← p - lr/(1-β1ᵗ) · m / (√v / √(1-β2ᵗ) + ε)
            tmp /= sqrt_bc2
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    def state_dict(self) -> dict[str, np.ndarray]:
        """m, v and the step count, which the bias correction depends on (``_tmp`` is only scratch)."""
        return {
            "steps": np.array(self.steps),
            **{f"m.{name}": m for name, m in self._m.items()},
            **{f"v.{name}": v for name, v in self._v.items()},
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        self._m, self._v = _unprefixed(state, "m."), _unprefixed(state, "v.")
