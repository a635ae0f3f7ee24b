"""The NumPy LSTM: its hand-written gradients, its optimisers, and its interchange with the torch model."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from tangpoem_hf.gradcheck import (
    BOUNDS,
    gradcheck_finite_differences,
    gradcheck_vs_torch,
    main,
    rel_error,
    tiny_problem,
)
from tangpoem_hf.modeling import TangPoemConfig, TangPoemLSTM
from tangpoem_hf.numpy_lstm import SGD, Adagrad, Adam, NumpyLSTM, clip_grad_norm
from tangpoem_hf.tokenizer import CharTokenizer

FD_BOUND = BOUNDS["finite differences (float64)"]
PARAM_NAMES_2L = {
    "embed.weight",
    "head.bias",
    *(f"lstm.{k}_l{n}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for n in (0, 1)),
}


def _assert_all_within(errors: dict[str, float], bound: float) -> None:
    bad = {name: err for name, err in errors.items() if not err <= bound}
    assert not bad, f"relative errors above {bound:g}: {bad}"


# --- gradients -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tie_weights", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_finite_differences_every_parameter_and_initial_state(tie_weights: bool, num_layers: int) -> None:
    errors = gradcheck_finite_differences(tie_weights=tie_weights, num_layers=num_layers)
    expected = {n for n in PARAM_NAMES_2L if not n.endswith("l1") or num_layers == 2} | {"h0", "c0"}
    if not tie_weights:
        expected.add("head.weight")
    assert set(errors) == expected
    _assert_all_within(errors, FD_BOUND)


@pytest.mark.parametrize("tie_weights", [False, True])
@pytest.mark.parametrize(("dtype", "bound"), [(np.float32, 1e-4), (np.float64, 1e-9)])
def test_matches_torch_autograd(dtype: type, bound: float, tie_weights: bool) -> None:
    """Padding, -100 targets, 2 layers and a random initial state, against autograd."""
    errors = gradcheck_vs_torch(dtype, tie_weights=tie_weights, num_layers=2)
    assert {"loss", "logits", "state", "h0", "c0", "head.bias"} <= set(errors)
    assert ("head.weight" in errors) != tie_weights
    _assert_all_within(errors, bound)


REPORT_MISTAKES = {
    # the tanh candidate's derivative written as the sigmoid's, C̄(1-C̄), instead of 1-C̄²
    "candidate": ("np.multiply(g, g, out=t2)\n            np.subtract(1.0, t2, out=t2)",
                  "np.subtract(1.0, g, out=t2)\n            t2 *= g"),
    # δC_t without the recursion δC_{t+1}·f_{t+1} through the forget gate
    "cell recursion": ("dc *= f\n", "dc.fill(0.0)\n"),
}  # fmt: skip


@pytest.mark.parametrize("mistake", sorted(REPORT_MISTAKES))
def test_gradcheck_catches_the_reports_mistakes(
    mistake: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checks have teeth: the module with one of the report's formulas swapped in fails them."""
    import tangpoem_hf.numpy_lstm as mod

    old, new = REPORT_MISTAKES[mistake]
    source = inspect.getsource(mod)
    assert source.count(old) == 1
    mutant = types.ModuleType("tangpoem_hf._numpy_lstm_mutant")
    mutant.__package__ = "tangpoem_hf"
    monkeypatch.setitem(sys.modules, mutant.__name__, mutant)  # dataclasses look their module up
    exec(compile(source.replace(old, new), mod.__file__, "exec"), mutant.__dict__)
    assert max(gradcheck_finite_differences(num_layers=1, impl=mutant.NumpyLSTM).values()) > 1e-2
    assert max(gradcheck_vs_torch(np.float64, num_layers=1, impl=mutant.NumpyLSTM).values()) > 1e-2
    if mistake == "candidate":  # and the command line says so with its exit status
        assert main([], impl=mutant.NumpyLSTM) == 1
        assert "FAIL" in capsys.readouterr().out


def test_dropout_gradients_with_fixed_masks() -> None:
    """With dropout on, BPTT is still exact for the masks drawn (same seed → same masks)."""
    cfg, ids, labels, state = tiny_problem(num_layers=2, batch=2, seq=4)
    cfg.dropout = 0.3
    model = NumpyLSTM(cfg, dtype=np.float64)

    def loss_with_masks() -> float:
        model.rng = np.random.default_rng(7)
        return model.loss_and_grads(ids, labels, state, train=True).loss

    loss_with_masks()
    analytic = {name: g.copy() for name, g in model.grads.items()}
    eps = 1e-5
    for name in ("lstm.weight_ih_l1", "embed.weight", "head.weight"):
        flat = model.params[name].reshape(-1)
        numeric = np.empty_like(flat)
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            plus = loss_with_masks()
            flat[k] = orig - eps
            minus = loss_with_masks()
            flat[k] = orig
            numeric[k] = (plus - minus) / (2 * eps)
        assert rel_error(analytic[name].reshape(-1), numeric) <= FD_BOUND, name
    # and dropout really did something, but nothing at evaluation time: the same logits as torch in eval()
    model.rng = np.random.default_rng(7)
    assert model.loss_and_grads(ids, labels, state, train=True).loss != pytest.approx(model.loss(ids, labels, state))
    with torch.no_grad():
        t_state = (torch.from_numpy(state[0]).float(), torch.from_numpy(state[1]).float())
        expected = model.to_torch()(torch.from_numpy(ids), state=t_state).logits.double().numpy()
    assert rel_error(model.forward(ids, state)[0], expected) <= 1e-6


def test_gradcheck_cli_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 3 and "FAIL" not in out


def test_all_targets_ignored_gives_nan_like_torch_and_zero_grads() -> None:
    cfg, ids, _, _ = tiny_problem(num_layers=1)
    model = NumpyLSTM(cfg, dtype=np.float64)
    labels = np.full_like(ids, -100)
    labels[0, 0] = 0  # the pad id is ignored too
    res = model.loss_and_grads(ids, labels)
    assert math.isnan(res.loss) and res.tokens == 0
    assert all(not g.any() for g in res.grads.values())
    tmodel = model.to_torch()
    assert math.isnan(float(tmodel(torch.from_numpy(ids), labels=torch.from_numpy(labels)).loss.detach()))


def test_rejects_bad_input() -> None:
    cfg, ids, labels, _ = tiny_problem(num_layers=1)
    model = NumpyLSTM(cfg)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.forward(ids + cfg.vocab_size)
    with pytest.raises(ValueError, match="batch, seq"):
        model.forward(ids[0])
    with pytest.raises(ValueError, match="same"):
        model.loss(ids, labels[:, :-1])
    with pytest.raises(ValueError, match="float32 or float64"):
        NumpyLSTM(cfg, dtype=np.float16)


# --- forward and interchange ----------------------------------------------------------------------------


def _torch_model(tie_weights: bool = False, num_layers: int = 2, seed: int = 0) -> TangPoemLSTM:
    torch.manual_seed(seed)
    cfg = TangPoemConfig(
        vocab_size=300, embedding_dim=64, hidden_size=64, num_layers=num_layers, tie_weights=tie_weights
    )
    return TangPoemLSTM(cfg).eval()


@pytest.mark.parametrize("tie_weights", [False, True])
def test_logits_and_carried_state_match_torch_float32(tie_weights: bool) -> None:
    tmodel = _torch_model(tie_weights)
    model = NumpyLSTM.from_torch(tmodel)
    ids = np.random.default_rng(1).integers(0, 300, (4, 30))
    state, t_state = None, None
    for chunk in (ids[:, :17], ids[:, 17:]):  # the second chunk starts from the first one's final state
        logits, state = model.forward(chunk, state)
        with torch.no_grad():
            out = tmodel(torch.from_numpy(chunk), state=t_state)
        t_state = out.state
        assert logits.dtype == np.float32 and logits.shape == (4, chunk.shape[1], 300)
        np.testing.assert_allclose(logits, out.logits.numpy(), rtol=1e-5, atol=1e-5)
        for mine, theirs in zip(state, t_state, strict=True):
            np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tie_weights", [False, True])
def test_from_torch_to_torch_round_trip(tie_weights: bool) -> None:
    tmodel = _torch_model(tie_weights)
    tmodel.tokenizer = CharTokenizer.build(["山高月小水落石出"])
    back = NumpyLSTM.from_torch(tmodel).to_torch()
    assert back.tokenizer is tmodel.tokenizer
    assert back.config == tmodel.config
    if tie_weights:
        assert back.head.weight is back.embed.weight
    for (name, a), (name_b, b) in zip(tmodel.state_dict().items(), back.state_dict().items(), strict=True):
        assert name == name_b
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_float64_round_trip_keeps_values_within_float32() -> None:
    tmodel = _torch_model()
    model = NumpyLSTM.from_torch(tmodel, dtype=np.float64)
    assert all(p.dtype == np.float64 for p in model.params.values())
    back = model.to_torch()
    assert all(p.dtype == torch.float32 for p in back.parameters())
    torch.testing.assert_close(back.head.weight, tmodel.head.weight, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_throughout(dtype: type) -> None:
    cfg, ids, labels, state = tiny_problem(num_layers=2)
    model = NumpyLSTM(cfg, dtype=dtype)
    res = model.loss_and_grads(ids, labels, (state[0].astype(dtype), state[1].astype(dtype)))
    assert {g.dtype for g in res.grads.values()} == {np.dtype(dtype)}
    assert res.state[0].dtype == dtype and res.state_grads[1].dtype == dtype
    assert model.forward(ids)[0].dtype == dtype
    Adam(model.params).step(res.grads)
    assert {p.dtype for p in model.params.values()} == {np.dtype(dtype)}


# --- optimisers ----------------------------------------------------------------------------------------


def _train(model: NumpyLSTM, opt: SGD | Adagrad | Adam, ids: np.ndarray, labels: np.ndarray, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        res = model.loss_and_grads(ids, labels)
        clip_grad_norm(res.grads, 5.0)
        opt.step(res.grads)
        losses.append(res.loss)
    return losses


@pytest.mark.parametrize(
    ("make_opt", "lr"),
    [(lambda p, lr: SGD(p, lr=lr), 3.0), (lambda p, lr: SGD(p, lr=lr, momentum=0.9), 1.0),
     (lambda p, lr: Adagrad(p, lr=lr), 0.1), (lambda p, lr: Adam(p, lr=lr), 0.01)],
    ids=["sgd", "sgd-momentum", "adagrad", "adam"],
)  # fmt: skip
def test_each_optimizer_reduces_loss(make_opt: Callable[..., SGD | Adagrad | Adam], lr: float) -> None:
    cfg, ids, _, _ = tiny_problem(vocab_size=20, hidden=16, num_layers=2, batch=4, seq=12, seed=3)
    labels = 1 + (3 * ids) % 19  # a learnable rule (the next id is a function of this one), never the pad id
    model = NumpyLSTM(cfg, dtype=np.float32, seed=3)
    losses = _train(model, make_opt(model.params, lr), ids, labels, 40)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", ["sgd", "sgd-momentum", "adagrad", "adam"])
def test_optimizer_updates_equal_torch_optim(name: str) -> None:
    """Same parameters, same three gradients: the same parameters after, as torch.optim's."""
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=7)}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    make = {
        "sgd": (lambda: SGD(params, lr=0.1), lambda: torch.optim.SGD(tparams.values(), lr=0.1)),
        "sgd-momentum": (
            lambda: SGD(params, lr=0.1, momentum=0.9),
            lambda: torch.optim.SGD(tparams.values(), lr=0.1, momentum=0.9),
        ),
        "adagrad": (lambda: Adagrad(params, lr=0.1), lambda: torch.optim.Adagrad(tparams.values(), lr=0.1)),
        "adam": (lambda: Adam(params, lr=0.01), lambda: torch.optim.Adam(tparams.values(), lr=0.01)),
    }[name]
    opt, topt = make[0](), make[1]()
    for _ in range(3):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        opt.step(grads)
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k])
        topt.step()
    for k, v in params.items():
        np.testing.assert_allclose(v, tparams[k].detach().numpy(), rtol=1e-12, atol=1e-12)


def test_clip_grad_norm_matches_torch() -> None:
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(4, 4)), "b": rng.normal(size=3)}
    tensors = [torch.tensor(g) for g in grads.values()]
    for t in tensors:
        t.grad = t.clone()
    total = clip_grad_norm(grads, 1.0)
    t_total = torch.nn.utils.clip_grad_norm_(tensors, 1.0)
    assert total == pytest.approx(float(t_total))
    for g, t in zip(grads.values(), tensors, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)
    assert clip_grad_norm(grads, 100.0) == pytest.approx(1.0, rel=1e-5)  # already small: untouched


@pytest.mark.parametrize("name", ["sgd", "sgd-momentum", "adagrad", "adam"])
def test_optimizer_state_dict_round_trip_continues_bit_exactly(name: str, tmp_path: Path) -> None:
    """State saved with safetensors and loaded into a fresh optimiser: the same updates as never stopping."""
    rng = np.random.default_rng(0)
    make = {
        "sgd": lambda p: SGD(p, lr=0.1),
        "sgd-momentum": lambda p: SGD(p, lr=0.1, momentum=0.9),
        "adagrad": lambda p: Adagrad(p, lr=0.1),
        "adam": lambda p: Adam(p, lr=0.01),
    }[name]
    params = {"a": rng.normal(size=(5, 3)).astype(np.float32), "b": rng.normal(size=7)}
    grads = [{k: rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()} for _ in range(5)]
    opt = make(params)
    for g in grads[:2]:
        opt.step(g)
    safetensors.numpy.save_file({**opt.state_dict(), **{f"p.{k}": v for k, v in params.items()}}, tmp_path / "s")
    loaded = safetensors.numpy.load_file(tmp_path / "s")
    params2 = {k: loaded[f"p.{k}"] for k in params}
    opt2 = make(params2)
    opt2.load_state_dict({k: v for k, v in loaded.items() if not k.startswith("p.")})
    for g in grads[2:]:
        opt.step(g)
        opt2.step(g)
    for k, v in params.items():
        assert v.dtype == params2[k].dtype and np.array_equal(v, params2[k]), k


# --- Hub round trip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tie_weights", [False, True])
def test_numpy_trained_model_saves_and_loads_back(tmp_path: Path, tie_weights: bool) -> None:
    poems = ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。", "白日依山尽，黄河入海流。"]
    tok = CharTokenizer.build(poems)
    cfg = TangPoemConfig(vocab_size=len(tok), embedding_dim=16, hidden_size=16, num_layers=2, tie_weights=tie_weights)
    model = NumpyLSTM(cfg, seed=1)
    model.tokenizer = tok
    rows = [tok.encode(p, add_bos=True, add_eos=True) for p in poems]
    ids = np.array([r[:-1] for r in rows])
    labels = np.array([r[1:] for r in rows])
    losses = _train(model, Adam(model.params, lr=0.02), ids, labels, 15)
    assert losses[-1] < losses[0]

    model.to_torch().save_pretrained(tmp_path)
    loaded = TangPoemLSTM.from_pretrained(tmp_path)
    assert loaded.tokenizer.tokens == tok.tokens
    assert loaded.config == cfg
    assert (loaded.head.weight is loaded.embed.weight) == tie_weights
    with torch.no_grad():
        out = loaded(torch.from_numpy(ids), labels=torch.from_numpy(labels))
    logits, _ = model.forward(ids)
    np.testing.assert_allclose(out.logits.numpy(), logits, rtol=1e-5, atol=1e-5)
    assert float(out.loss) == pytest.approx(model.loss(ids, labels), rel=1e-5)


def test_from_torch_reproduces_the_bundled_model() -> None:
    tmodel = TangPoemLSTM.from_pretrained()
    model = NumpyLSTM.from_torch(tmodel)
    ids = np.array([tmodel.tokenizer.encode("床前明月光，疑是地上霜。举头望明月，低头思故乡。", add_bos=True)])
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(ids)).logits.numpy()
    logits, _ = model.forward(ids)
    assert rel_error(logits, expected) <= 1e-5
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max())))


# --- the training script -----------------------------------------------------------------------------------


SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_numpy.py"


def _train_numpy() -> types.ModuleType:
    """scripts/train_numpy.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("train_numpy", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_numpy_script_end_to_end(small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/train_numpy.py on the package's corpus pipeline: log, a loadable model, a sample poem."""
    train_numpy = _train_numpy()
    out = tmp_path / "run"
    args = ["--corpus", str(small_corpus), "--out-dir", str(out), "--embedding-dim", "16", "--hidden-size", "16"]
    args += [
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--epochs",
        "3",
        "--lr",
        "0.02",
        "--no-progress",
        "--sample-first",
        "月",
    ]
    assert train_numpy.main(args) == 0
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    steps = [r for r in records if "loss" in r]
    assert steps and {"loss", "perplexity", "tokens_per_s", "lr", "elapsed_s"} <= set(steps[0])
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert any("val_perplexity" in r for r in records)
    loaded = TangPoemLSTM.from_pretrained(out / "model")
    assert loaded.config.preprocessing == "ours" and loaded.tokenizer is not None
    printed = capsys.readouterr().out
    *_, sample, last = printed.rstrip().splitlines()
    assert "saved" in printed and sample.endswith("。"), printed
    per_epoch = int(printed.split(" steps per epoch")[0].rsplit(" ", 1)[1])
    assert last == f"Stopped at step {3 * per_epoch}: the end of epoch 3 (--epochs 3).", printed  # says why


def _tiny_numpy_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    """A tiny Adam run in 'ours' mode (carried state) with dropout (the RNG must resume too); 35 steps an epoch."""
    return [
        "--corpus", str(corpus), "--out-dir", str(out), "--embedding-dim", "8", "--hidden-size", "8",
        "--batch-size", "4", "--seq-len", "8", "--lr", "0.02", "--dropout", "0.1", "--optimizer", "adam",
        "--mode", "ours", "--no-progress", "--sample-first", "月", "--checkpoint-every", "2", *extra,
    ]  # fmt: skip


def _log(out: Path) -> list[tuple]:
    """(step, loss, validation perplexity) of every log record: what must not change with a resume."""
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_perplexity")) for r in records]


def _assert_same_run(full: Path, resumed: Path, steps: int) -> None:
    """Bit-identical weights (saved model and the full-precision checkpoint) and the same log, no step twice."""
    model_a = safetensors.torch.load_file(full / "model" / "model.safetensors")
    model_b = safetensors.torch.load_file(resumed / "model" / "model.safetensors")
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), key
    state_a = safetensors.numpy.load_file(full / "checkpoints" / f"step-{steps}" / "state.safetensors")
    state_b = safetensors.numpy.load_file(resumed / "checkpoints" / f"step-{steps}" / "state.safetensors")
    assert state_a.keys() == state_b.keys() and {"opt.steps", "carry.h", "carry.c"} <= state_a.keys()
    for key in state_a:  # parameters, Adam's m and v, the carried LSTM state
        assert state_a[key].dtype == state_b[key].dtype and np.array_equal(state_a[key], state_b[key]), key
    log = _log(resumed)
    assert [r[0] for r in log if r[1] is not None] == list(range(1, steps + 1))
    assert log == _log(full)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_train_numpy_stop_and_resume_equals_uninterrupted_run(
    small_corpus: Path, tmp_path: Path, dtype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped at step 19 (--max-steps), resumed to 41 (past the epoch end at 35): the same run as 41 at once."""
    train_numpy = _train_numpy()
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    common = ["--dtype", dtype, "--epochs", "2"]
    assert train_numpy.main(_tiny_numpy_args(small_corpus, full, *common, "--max-steps", "41")) == 0
    assert train_numpy.main(_tiny_numpy_args(small_corpus, resumed, *common, "--max-steps", "19")) == 0
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["latest.json", "step-18", "step-19"]
    capsys.readouterr()
    assert train_numpy.main(_tiny_numpy_args(small_corpus, resumed, *common, "--max-steps", "41", "--resume")) == 0
    assert "Resumed from step 19." in capsys.readouterr().out
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["latest.json", "step-40", "step-41"]
    _assert_same_run(full, resumed, 41)


def test_train_numpy_refuses_a_folder_with_a_checkpoint_without_resume(
    small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_numpy = _train_numpy()
    out = tmp_path / "run"
    assert train_numpy.main(_tiny_numpy_args(small_corpus, out, "--max-steps", "2")) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert train_numpy.main(_tiny_numpy_args(small_corpus, out, "--max-steps", "4")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "--resume" in err and "--out-dir" in err
    # a resume may go further, but not with another model shape
    assert train_numpy.main([*_tiny_numpy_args(small_corpus, out), "--resume", "--hidden-size", "16"]) == 2
    assert "--hidden-size" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched


def _logged_steps(out: Path) -> list[int]:
    log = out / "train_log.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [json.loads(line)["step"] for line in lines if '"loss"' in line and line.endswith("}")]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_train_numpy_killed_then_resumed_equals_uninterrupted_run(
    small_corpus: Path, tmp_path: Path, signum: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real process, stopped mid-run (SIGKILL: no warning; Ctrl-C: saves first), then --resume."""
    out = tmp_path / "killed"
    endless = ["--epochs", "1000", "--max-steps", "1000000", "--checkpoint-every", "5"]
    env = {**os.environ, "TANGPOEM_CACHE": str(tmp_path / "cache")}  # the child's corpus cache stays here too
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *_tiny_numpy_args(small_corpus, out, *endless)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ((out / "checkpoints" / "latest.json").exists() and (_logged_steps(out) or [0])[-1] >= 7):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.01)
        os.kill(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed_at = _logged_steps(out)[-1]
    if signum == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr and "continue with --resume" in stdout.splitlines()[-1]
    else:
        assert proc.returncode == -signal.SIGKILL
    steps = killed_at + 3
    train_numpy = _train_numpy()
    assert (
        train_numpy.main(
            _tiny_numpy_args(small_corpus, tmp_path / "full", "--epochs", "1000", "--max-steps", str(steps))
        )
        == 0
    )
    capsys.readouterr()
    assert train_numpy.main([*_tiny_numpy_args(small_corpus, out, "--max-steps", str(steps)), "--resume"]) == 0
    restart = int(capsys.readouterr().out.split("Resumed from step ")[1].split(".")[0])
    if signum == signal.SIGINT:
        assert restart == killed_at  # Ctrl-C saved the step it stopped at
    else:
        assert killed_at - 5 <= restart <= killed_at
    _assert_same_run(tmp_path / "full", out, steps)
