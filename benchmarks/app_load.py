"""Bursts of users: the app on localhost, driven by N concurrent gradio_client clients.

    python benchmarks/app_load.py [--clients 1 8 32] [--requests 6] [--soak 1000] [--model DIR] [--candidates N]

Starts ``python app.py`` in a subprocess on a free loopback port, then for each N runs N threads,
each with its own Client making a bounded number of requests for one 4-line 七言 poem. Reports
throughput, p50/p95 latency, clean "busy" rejections (queue full) and errors, and finally the
server's resident memory before and after a soak of many requests. Every request has a timeout,
so nothing can hang; a request that neither succeeds nor is refused cleanly counts as an error.
Requests use the app's defaults (its line search, rhyme, relaxed tone, no repeats) unless
``--candidates N`` asks for the best of N whole poems instead.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from gradio_client import Client

from tangpoem_hf.options import default_of

ROOT = Path(__file__).resolve().parents[1]
NAN = float("nan")
REQUEST = {
    "mode": "续写",
    "characters": "山",
    "form": "七言",
    "lines": 4,
    "temperature": default_of("temperature"),
    "top_k": 0,
    "top_p": 0.9,
    "theme": "",
    "script": "简体",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(model: str | None, app: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
    }
    if model:
        env["MODEL_ID"] = model
    proc = subprocess.Popen(
        [sys.executable, str(app)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start within 180 s")


def run_clients(url: str, clients: int, requests: int, timeout: float, seed0: int) -> dict:
    latencies: list[float] = []
    busy, errors = [0], []
    lock = threading.Lock()

    def worker(index: int) -> None:
        client = Client(url, verbose=False)
        for r in range(requests):
            start = time.perf_counter()
            try:
                job = client.submit(**REQUEST, seed=seed0 + index * requests + r, api_name="/generate")
                _, text, _ = job.result(timeout=timeout)
                ok = len(text.replace("\n", "")) == 32
                with lock:
                    (latencies.append(time.perf_counter() - start) if ok else errors.append(f"bad poem {text!r}"))
            except Exception as exc:  # the benchmark classifies every failure; none may pass silently
                message = str(exc)
                with lock:
                    if "queue is full" in message.lower():
                        busy[0] += 1
                    else:
                        errors.append(f"{type(exc).__name__}: {message[:120]}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    total = clients * requests
    assert len(latencies) + busy[0] + len(errors) == total, "a request was lost"
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [NAN] * 19
    return {
        "clients": clients,
        "requests": total,
        "ok": len(latencies),
        "busy": busy[0],
        "errors": len(errors),
        "throughput": len(latencies) / wall,
        "p50": statistics.median(latencies) if latencies else NAN,
        "p95": q[18],
        "first_errors": errors[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=6, help="requests per client")
    parser.add_argument("--soak", type=int, default=1000, help="requests for the memory check (0 skips it)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a request counts as hung")
    parser.add_argument("--model", help="MODEL_ID for the app (default: the bundled model)")
    parser.add_argument("--app", type=Path, default=ROOT / "app.py", help="the app to serve (e.g. an older app.py)")
    parser.add_argument("--candidates", type=int, help="candidates per poem (default: the app's)")
    args = parser.parse_args()
    if args.candidates is not None:
        REQUEST.update(candidates=args.candidates, search="poem")

    proc, url = start_app(args.model, args.app)
    try:
        Client(url, verbose=False).predict(**REQUEST, seed=0, api_name="/generate")  # warm-up: model load
        rows = [run_clients(url, n, args.requests, args.timeout, seed0=1000 * n) for n in args.clients]
        print(
            f"{'clients':>7} {'requests':>8} {'ok':>5} {'busy':>5} {'errors':>6} "
            f"{'poems/s':>8} {'p50 s':>7} {'p95 s':>7}"
        )
        for r in rows:
            print(
                f"{r['clients']:>7} {r['requests']:>8} {r['ok']:>5} {r['busy']:>5} {r['errors']:>6} "
                f"{r['throughput']:>8.2f} {r['p50']:>7.3f} {r['p95']:>7.3f}"
            )
            for e in r["first_errors"]:
                print(f"        error: {e}")
        single = next((r for r in rows if r["clients"] == 1), None)
        eight = next((r for r in rows if r["clients"] == 8), None)
        if single and eight:
            print(
                f"8 clients: {eight['errors']} errors, p95 / single-client p50 = {eight['p95'] / single['p50']:.2f} "
                "(goal: 0 errors, <= 5)"
            )
        if args.soak:
            before = rss_mib(proc.pid)
            soak = run_clients(url, 2, args.soak // 2, args.timeout, seed0=10**6)
            after = rss_mib(proc.pid)
            print(
                f"soak: {soak['requests']} requests, {soak['ok']} ok, {soak['busy']} busy, {soak['errors']} errors; "
                f"server RSS {before:.0f} MiB -> {after:.0f} MiB ({after - before:+.0f} MiB)"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
