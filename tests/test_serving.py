"""The batching server: many callers, one decoding loop, the same poems as stream_poem."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator

import pytest
import torch
from conftest import make_tiny_model

from tangpoem_hf import InputError
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.request import PoemRequest
from tangpoem_hf.serving import PoemServer

REQUESTS = [
    {"first": "山", "form": 7, "lines": 4, "seed": 1},
    {"first": "明月", "form": 5, "lines": 8, "seed": 2, "temperature": 1.3},
    {"acrostic": "春夜山月", "form": 7, "seed": 3, "top_k": 20},
    {"first": "江", "form": 5, "lines": 2, "seed": 4, "keywords": "白日 黄河"},
    {"first": "月", "form": 5, "lines": 4, "seed": 5, "top_p": 1.0},
    {"first": "花", "form": 7, "lines": 16, "seed": 6, "temperature": 2.0},
]


@pytest.fixture
def server(tiny_model) -> Iterator[PoemServer]:
    srv = PoemServer(tiny_model)
    yield srv
    srv.close()


def last(stream: Iterator) -> object:
    return deque(stream, maxlen=1)[0]


def run_together(server: PoemServer, requests: list[dict]) -> list[str]:
    texts: list[str] = [""] * len(requests)

    def worker(i: int) -> None:
        texts[i] = last(server.stream(**requests[i])).text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return texts


class ForwardLog:
    """Records the batch size of every model call; the first call can be held until released."""

    def __init__(self, model: torch.nn.Module, hold_first: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, args: tuple) -> None:
        self.entered.set()
        self.release.wait(30)
        self.sizes.append(args[0].shape[0])


def test_concurrent_poems_equal_the_single_poem_api(server, tiny_model):
    expected = [generate_poem(tiny_model, **r).text for r in REQUESTS]
    assert run_together(server, REQUESTS) == expected


def count_requests(server: PoemServer) -> threading.Semaphore:
    """A semaphore released once per request handed to ``server``: wait on it, not on a clock."""
    queued = threading.Semaphore(0)

    class CountingQueue(queue.SimpleQueue):
        def put(self, item, *args, **kwargs):
            super().put(item, *args, **kwargs)
            queued.release()

    server._incoming = CountingQueue()
    return queued


def test_concurrent_requests_share_each_step(tiny_model):
    log = ForwardLog(tiny_model, hold_first=True)
    server = PoemServer(tiny_model, max_batch=128)  # room for five default poems (a line search: 16 rows each)
    queued = count_requests(server)
    try:
        first_request = {"first": "山", "form": 5, "lines": 4, "seed": 0}
        first = server.stream(**first_request)
        started = threading.Thread(target=lambda: next(first))
        started.start()
        assert log.entered.wait(30)  # the worker took this one and is held in its first forward pass
        others = run_in_background(server, REQUESTS[:4])
        # the first request, then all four others, wait while the worker is held
        assert all(queued.acquire(timeout=30) for _ in range(5))
        log.release.set()
        started.join(30)
        rest = list(first)
        texts = [t.result() for t in others]
    finally:
        server.close()
        log.handle.remove()
    # After admission, every step feeds every row (a poem's candidates, or its beam × line candidates) of all five.
    rows = [PoemRequest.build(tiny_model.tokenizer, **r).width for r in [first_request, *REQUESTS[:4]]]
    assert max(log.sizes) == sum(rows)
    assert len(rest) == 19
    assert texts == [generate_poem(tiny_model, **r).text for r in REQUESTS[:4]]


class Result:
    def __init__(self) -> None:
        self.value: str | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def result(self) -> str | None:
        self.done.wait(60)
        return self.value


def run_in_background(server: PoemServer, requests: list[dict]) -> list[Result]:
    results = [Result() for _ in requests]

    def worker(request: dict, result: Result) -> None:
        try:
            result.value = last(server.stream(**request)).text
        except Exception as exc:  # kept for the test to look at
            result.error = exc
        finally:
            result.done.set()

    for request, result in zip(requests, results):
        threading.Thread(target=worker, args=(request, result), daemon=True).start()
    return results


def test_bad_input_is_raised_in_the_caller_and_the_server_goes_on(server, tiny_model):
    with pytest.raises(InputError, match="form must be 5"):
        next(server.stream(first="山", form=6))
    with pytest.raises(InputError, match="temperature"):
        next(server.stream(first="山", temperature=0))
    assert last(server.stream(**REQUESTS[0])).text == generate_poem(tiny_model, **REQUESTS[0]).text


def test_an_abandoned_stream_frees_its_row(server, tiny_model):
    stream = server.stream(first="山", form=7, lines=16, seed=9)
    assert next(stream).lines == [] and next(stream).partial
    stream.close()  # what Gradio does when a browser goes away
    deadline = time.monotonic() + 10
    while server._active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server._active
    assert last(server.stream(**REQUESTS[1])).text == generate_poem(tiny_model, **REQUESTS[1]).text


def test_regulated_verse_through_the_server_matches(server, tiny_model):
    request = {"first": "山", "form": 5, "lines": 4, "seed": 11, "rhyme": True, "tone": "relaxed"}
    assert last(server.stream(**request)).text == generate_poem(tiny_model, **request).text


def test_a_model_without_start_markers(tiny_model):
    bare = make_tiny_model(preprocessing="report")
    server = PoemServer(bare)
    try:
        texts = run_together(server, REQUESTS[:2])
        assert texts == [generate_poem(bare, **r).text for r in REQUESTS[:2]]
        with pytest.raises(InputError, match="give the first character"):
            next(server.stream(form=5, lines=4, seed=1))
    finally:
        server.close()


def test_closing_answers_every_waiting_caller(tiny_model):
    log = ForwardLog(tiny_model, hold_first=True)
    server = PoemServer(tiny_model)
    queued, join = count_requests(server), server._worker.join
    # close() marks the server closed, then joins the worker: only then is the held step let go,
    # so the worker finds the server closed with two callers still waiting (no sleep decides it).
    server._worker.join = lambda timeout=None: (log.release.set(), join(timeout))[1]
    try:
        results = run_in_background(server, REQUESTS[:3])
        assert log.entered.wait(30)
        assert all(queued.acquire(timeout=30) for _ in range(3))
        server.close()
    finally:
        log.release.set()
        log.handle.remove()
    for result in results:
        assert result.done.wait(30)  # every caller gets an answer, none hangs
    assert [str(r.error) for r in results[1:]] == ["The poem server was closed."] * 2


def test_a_failing_step_reaches_its_callers_and_the_server_goes_on(server, tiny_model):
    calls = {"n": 0}

    def fail_twice(_module: torch.nn.Module, _args: tuple) -> None:
        calls["n"] += 1
        if calls["n"] in (1, 3):  # the first request's prefill, then the second request's first step
            raise RuntimeError("simulated device failure")

    handle = tiny_model.register_forward_pre_hook(fail_twice)
    try:
        with pytest.raises(RuntimeError, match="Generation failed: simulated device failure"):
            last(server.stream(**REQUESTS[0]))
        with pytest.raises(RuntimeError, match="Generation failed: simulated device failure"):
            last(server.stream(**REQUESTS[1]))
    finally:
        handle.remove()
    assert server._worker.is_alive()
    assert last(server.stream(**REQUESTS[2])).text == generate_poem(tiny_model, **REQUESTS[2]).text
