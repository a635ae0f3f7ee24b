"""Proof of the NumPy LSTM's gradients: BPTT against central differences and against torch autograd.

``docs/guide/lstm-backprop.md`` derives every gradient of :class:`~tangpoem_hf.numpy_lstm.NumpyLSTM`
in the report's notation; these checks prove them on a tiny problem that has everything the real
one has (2 layers, padding, ignored targets, a carried (h0, C0), tied or untied weights)::

    python -m tangpoem_hf.gradcheck

Each check takes the implementation under test (``impl``), so that a copy of the model with one of
the report's mistaken formulas swapped in can be shown to fail them (tests/test_numpy_lstm.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from .modeling import IGNORE_INDEX, TangPoemConfig, TangPoemLSTM
from .numpy_lstm import NumpyLSTM, State


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Norm-based relative error ‖a - b‖_∞ / max(‖a‖_∞, ‖b‖_∞, 1e-30).

    The max-norm keeps a single wrong entry visible (it is compared with the largest entry, not
    diluted by all of them), while entries that are zero up to rounding don't blow the ratio up the
    way an elementwise |a-b|/(|a|+|b|) does in float32.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-30)
    return float(np.abs(a - b).max(initial=0.0)) / scale


def tiny_problem(
    vocab_size: int = 11,
    hidden: int = 5,
    embedding: int | None = None,
    num_layers: int = 2,
    tie_weights: bool = False,
    batch: int = 3,
    seq: int = 6,
    seed: int = 0,
) -> tuple[TangPoemConfig, np.ndarray, np.ndarray, State]:
    """A config, inputs, labels (with pad and -100 targets) and a random initial state."""
    rng = np.random.default_rng(seed)
    cfg = TangPoemConfig(
        vocab_size=vocab_size,
        embedding_dim=hidden if tie_weights or embedding is None else embedding,
        hidden_size=hidden,
        num_layers=num_layers,
        tie_weights=tie_weights,
    )
    ids = rng.integers(1, vocab_size, (batch, seq))
    labels = rng.integers(1, vocab_size, (batch, seq))
    ids[0, -2:] = 0  # a padded tail in the first row
    labels[0, -2:] = 0
    labels[-1, 1] = IGNORE_INDEX
    state = (rng.normal(0, 0.5, (num_layers, batch, hidden)), rng.normal(0, 0.5, (num_layers, batch, hidden)))
    return cfg, ids, labels, state


def gradcheck_finite_differences(
    tie_weights: bool = False, num_layers: int = 2, seed: int = 0, impl: type[NumpyLSTM] = NumpyLSTM
) -> dict[str, float]:
    """Central differences of the float64 loss vs BPTT, for every entry of every parameter and of (h_0, C_0).

    Returns the relative error (see :func:`rel_error`) per parameter name, plus ``h0`` and ``c0``.
    """
    cfg, ids, labels, state = tiny_problem(num_layers=num_layers, tie_weights=tie_weights, seed=seed)
    model = impl(cfg, dtype=np.float64, seed=seed)
    res = model.loss_and_grads(ids, labels, state)
    analytic = {name: gr.copy() for name, gr in res.grads.items()}
    analytic["h0"], analytic["c0"] = res.state_grads[0].copy(), res.state_grads[1].copy()
    h0, c0 = state[0].copy(), state[1].copy()
    targets = dict(model.params, h0=h0, c0=c0)
    eps = 1e-5
    errors = {}
    for name, arr in targets.items():
        numeric = np.zeros_like(arr)
        flat, out = arr.reshape(-1), numeric.reshape(-1)
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            plus = model.loss(ids, labels, (h0, c0))
            flat[k] = orig - eps
            minus = model.loss(ids, labels, (h0, c0))
            flat[k] = orig
            out[k] = (plus - minus) / (2 * eps)
        errors[name] = rel_error(analytic[name], numeric)
    return errors


def gradcheck_vs_torch(
    dtype: Any = np.float64,
    tie_weights: bool = False,
    num_layers: int = 2,
    seed: int = 0,
    impl: type[NumpyLSTM] = NumpyLSTM,
) -> dict[str, float]:
    """BPTT vs torch autograd on the same weights, inputs (with padding) and initial state.

    Returns relative errors per parameter, for ``h0``/``c0`` gradients, the ``loss``, ``logits``
    and the final ``state``.
    """
    import torch

    dtype = np.dtype(dtype)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    cfg, ids, labels, state = tiny_problem(
        vocab_size=37, hidden=12, embedding=9, num_layers=num_layers, tie_weights=tie_weights, batch=4, seq=7, seed=seed
    )
    torch.manual_seed(seed)
    tmodel = TangPoemLSTM(cfg).to(tdtype)
    model = impl.from_torch(tmodel, dtype=dtype)
    h0 = torch.tensor(state[0], dtype=tdtype, requires_grad=True)
    c0 = torch.tensor(state[1], dtype=tdtype, requires_grad=True)
    out = tmodel(torch.from_numpy(ids), labels=torch.from_numpy(labels), state=(h0, c0))
    loss = out.loss
    if tdtype == torch.float64:  # the model's loss casts logits to float32; redo it in float64, same rule
        masked = torch.from_numpy(np.where(labels == cfg.pad_token_id, IGNORE_INDEX, labels))
        loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), masked.flatten(), ignore_index=IGNORE_INDEX)
    loss.backward()
    np_state = (state[0].astype(dtype), state[1].astype(dtype))
    logits, final = model.forward(ids, np_state)
    res = model.loss_and_grads(ids, labels, np_state)
    errors = {
        "loss": rel_error(np.array(res.loss), loss.detach().numpy()),
        "logits": rel_error(logits, out.logits.detach().numpy()),
        "state": max(rel_error(final[k], out.state[k].detach().numpy()) for k in range(2)),
        "h0": rel_error(res.state_grads[0], h0.grad.numpy()),
        "c0": rel_error(res.state_grads[1], c0.grad.numpy()),
    }
    tparams = dict(tmodel.named_parameters())
    for name, gr in res.grads.items():
        errors[name] = rel_error(gr, tparams[name].grad.numpy())
    return errors


BOUNDS = {"finite differences (float64)": 1e-6, "torch autograd (float32)": 1e-4, "torch autograd (float64)": 1e-9}


def run_gradchecks(impl: type[NumpyLSTM] = NumpyLSTM) -> dict[str, tuple[float, str]]:
    """Every check at every setting: the worst relative error per check, and where it occurred."""
    checks = {
        "finite differences (float64)": [
            (f"tied={tied}", lambda tied=tied: gradcheck_finite_differences(tie_weights=tied, impl=impl))
            for tied in (False, True)
        ],
        "torch autograd (float32)": [
            (f"tied={tied}", lambda tied=tied: gradcheck_vs_torch(np.float32, tie_weights=tied, impl=impl))
            for tied in (False, True)
        ],
        "torch autograd (float64)": [
            (f"tied={tied}", lambda tied=tied: gradcheck_vs_torch(np.float64, tie_weights=tied, impl=impl))
            for tied in (False, True)
        ],
    }
    worst = {}
    for check, runs in checks.items():
        worst[check] = (-1.0, "")
        for label, fn in runs:
            for name, err in fn().items():
                if err > worst[check][0]:
                    worst[check] = (err, f"{name}, {label}")
    return worst


def main(argv: list[str] | None = None, impl: type[NumpyLSTM] = NumpyLSTM) -> int:
    """Run every check; exit status 1 when one exceeds its bound."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)  # only --help
    failed = False
    for check, (err, where) in run_gradchecks(impl).items():
        ok = err <= BOUNDS[check]
        failed |= not ok
        verdict = "ok" if ok else "FAIL"
        print(f"{check:30s} max rel err {err:.3e}  (bound {BOUNDS[check]:.0e}; worst: {where})  {verdict}")
    print("relative error = ‖a-b‖∞ / max(‖a‖∞, ‖b‖∞) per parameter; every parameter, 2 layers, padding, h0/c0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
