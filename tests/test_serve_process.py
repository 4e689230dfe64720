"""The server as users run it: ``python -m fastdeberta serve`` in a subprocess on 127.0.0.1 (port 0),
driven over real TCP connections. Graceful shutdown on SIGTERM, a short load test and a fault test.

Every loop here is bounded in count and time, traffic goes to 127.0.0.1 only, and each server is
stopped (SIGTERM, then kill) by the test that started it.
"""

from __future__ import annotations

import json
import random
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402
import serve_fixtures as sf  # noqa: E402

WORDS = ("free software license terms copy distribute program work cat sat on the mat liberty price "
         "warranty merchantability fitness purpose").split()


def random_text(rng: random.Random, low: int = 3, high: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@pytest.fixture
def server_factory():
    started: list[sf.ServerProcess] = []

    def start(*args: str) -> sf.ServerProcess:
        server = sf.ServerProcess("--model", str(fx.mlm_checkpoint()), *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def test_sigterm_finishes_every_accepted_request_and_refuses_new_ones(server_factory):
    # one input per forward pass, so that 6 requests x 8 inputs keep the model busy for a few seconds
    server = server_factory("--max-batch-requests", "1", "--request-timeout", "60")
    rng = random.Random(0)
    requests = [[random_text(rng, 10, 30) for _ in range(8)] for _ in range(6)]
    done_at: dict[int, float] = {}

    def send(i: int) -> httpx.Response:
        response = httpx.post(server.url + "/embed", json={"inputs": requests[i]}, timeout=60)
        done_at[i] = time.monotonic()
        return response

    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(send, i) for i in range(len(requests))]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:   # wait until every request is admitted (answered or in flight)
            page = httpx.get(server.url + "/metrics", timeout=10).text
            in_flight = sf.metric_value(page, "fastdeberta_requests_in_flight")
            if in_flight >= 1 and in_flight + len(done_at) == len(requests):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the requests were never all admitted with some still running")
        sigterm_at = time.monotonic()
        server.proc.send_signal(15)
        # a request racing the signal may still be admitted; wait until the server shows it is draining
        # (/health 503 or the port closed), then every new request must be refused
        drain_deadline = time.monotonic() + 10
        while time.monotonic() < drain_deadline:
            try:
                if httpx.get(server.url + "/health", timeout=5).status_code == 503:
                    break
            except httpx.TransportError:
                break
            time.sleep(0.01)
        after = []
        for _ in range(3):   # new requests while draining: refused (closed port, or 503), never half-served
            try:
                after.append(httpx.post(server.url + "/embed", json={"inputs": "late"}, timeout=10).status_code)
            except httpx.TransportError:
                after.append("refused")
            time.sleep(0.05)
        responses = [f.result(timeout=60) for f in futures]
    code = server.proc.wait(60)
    print(f"shutdown: {len(requests)} requests admitted, {int(in_flight)} in flight at SIGTERM; {sum(t > sigterm_at for t in done_at.values())} finished "
          f"after SIGTERM; exit {time.monotonic() - sigterm_at:.2f} s after it")

    assert [r.status_code for r in responses] == [200] * len(requests), server.log
    assert all(len(r.json()) == len(sent) for r, sent in zip(responses, requests))
    assert any(t > sigterm_at for t in done_at.values()), "no request was still running at SIGTERM"
    assert set(after) <= {"refused", 503}, after
    assert code == 0, server.log
    assert "Traceback" not in server.log


def test_load_and_faults_keep_the_server_serving(server_factory):
    server = server_factory("--max-concurrent-requests", "6", "--max-client-batch-size", "8",
                            "--max-input-length", "128", "--payload-limit", "20000", "--request-timeout", "20")
    url = server.url
    rng = random.Random(1)
    with httpx.Client(base_url=url, timeout=30) as client:   # warm-up
        for _ in range(5):
            assert client.post("/embed", json={"inputs": [random_text(rng)], "truncate": True}).status_code == 200
    rss_before = server.rss_bytes()

    # -- load: 4 clients for 1.5 s, 1-4 texts per request ----------------------------------------------
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 1.5

    def client_loop(seed: int) -> int:
        local = random.Random(seed)
        sent = 0
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < stop_at and sent < 2000:
                texts = [random_text(local) for _ in range(local.randint(1, 4))]
                start = time.perf_counter()
                status = client.post("/embed", json={"inputs": texts, "truncate": True}).status_code
                with lock:
                    latencies.append(time.perf_counter() - start)
                    statuses.append(status)
                sent += 1
        return sent

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        total = sum(pool.map(client_loop, range(4)))
    elapsed = time.perf_counter() - started
    page = httpx.get(url + "/metrics").text
    batches = sf.metric_value(page, "fastdeberta_batch_size_count")
    inputs = sf.metric_value(page, "fastdeberta_batch_size_sum")
    report = {"requests": total, "rps": round(total / elapsed, 1), "p50_ms": round(1000 * percentile(latencies, 50), 1),
              "p95_ms": round(1000 * percentile(latencies, 95), 1), "p99_ms": round(1000 * percentile(latencies, 99), 1),
              "mean_batch": round(inputs / batches, 2)}
    print("load:", json.dumps(report))
    assert set(statuses) == {200}, statistics.multimode(statuses)
    assert total >= 20 and inputs / batches > 1.0   # concurrent requests shared forward passes

    # -- faults ---------------------------------------------------------------------------------------
    def post(body: bytes, path: str = "/embed") -> int:
        return httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=30).status_code

    faults = {
        "malformed": post(b'{"inputs": ["a", '),
        "wrong_type": post(b'{"inputs": {"text": 1}}'),
        "empty": post(b'{"inputs": []}'),
        "too_many": post(json.dumps({"inputs": ["a"] * 9}).encode()),
        "too_long": post(json.dumps({"inputs": " ".join(["software"] * 200)}).encode()),
        "oversize_body": post(json.dumps({"inputs": "x" * 30000}).encode()),
        "not_utf8": post(b'{"inputs": "\xff\xfe"}'),
        "deep_nesting": post(b"[" * 5000 + b"]" * 5000),
    }
    assert faults == {"malformed": 422, "wrong_type": 422, "empty": 422, "too_many": 413, "too_long": 413,
                      "oversize_body": 413, "not_utf8": 422, "deep_nesting": 422}

    # clients that go away: mid-body, and after sending a request without reading the answer
    host, port = "127.0.0.1", server.port
    body = json.dumps({"inputs": [random_text(rng) for _ in range(8)]}).encode()
    head = (f"POST /embed HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for cut in (len(head) // 2, len(head) + len(body) // 2, len(head) + len(body)):
        for _ in range(3):
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall((head + body)[:cut])

    # a burst over the concurrency limit: 40 at once against a limit of 6
    with ThreadPoolExecutor(40) as pool:
        burst = list(pool.map(lambda _: post(body), range(40)))
    assert set(burst) <= {200, 429} and 429 in burst and 200 in burst, burst

    # still serving, nothing undocumented, memory bounded
    time.sleep(0.5)
    assert httpx.get(url + "/health").status_code == 200
    assert post(json.dumps({"inputs": "still here"}).encode()) == 200
    page = httpx.get(url + "/metrics").text
    codes = {line.split('status="')[1].split('"')[0] for line in page.splitlines()
             if line.startswith("fastdeberta_requests_total{")}
    assert codes <= {"200", "413", "422", "429", "499"}, codes
    growth = server.rss_bytes() - rss_before
    print(f"faults: burst 200={burst.count(200)} 429={burst.count(429)}; RSS growth {growth / 2**20:.1f} MiB")
    assert growth < 150 * 2**20
    assert server.terminate(30) == 0
    assert "Traceback" not in server.log
