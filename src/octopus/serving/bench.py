"""The loopback load test behind `octopus bench serve`: concurrent HTTP clients vs direct `Policy.respond_batch`.

    report = run_serve_bench(policy, observations, clients=8, requests_per_client=4, repeats=3)

Both sides answer the same observations with the same greedy settings, in alternating order run by run. Direct: `respond_batch` with
batch size `clients` (what the server's batches can be at most). Served: `clients` threads on 127.0.0.1,
each sending its requests one after another (the next as soon as the last is answered), request bodies
(PNG data URLs) encoded before the clock starts, as a client would have them. Latency is per response
(direct: the duration of the batch it was in); throughput is responses per second of wall time. Every
number is the median over `repeats` runs.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any, Sequence

import numpy as np

from octopus.agents.llm import observation_content
from octopus.serving.server import ServeConfig, ServerThread, create_app


def synthetic_observations(n: int, size: int, reads_views: bool, seed: int = 0) -> list[dict[str, Any]]:
    """`n` distinct observations: blocky views that compress like the simulator's renders, and realistic texts."""
    from octopus.protocol.message import EnvMessage, ObservedObject
    rng = np.random.default_rng(seed)
    goals = ["Put the apple in the fridge", "Cook the bacon on the stove", "Open the cabinet and take the bowl",
             "Turn on the sink and wash the plate"]
    out = []
    for i in range(n):
        objects = tuple(ObservedObject(f"object_{i}_{k}", (("openable", k % 2),), 0.5 + k) for k in range(4))
        msg = EnvMessage(objects, (("object_0", "ontop", "table_1"),), ("apple_1",) if i % 2 else (),
                         goals[i % len(goals)], ("Move to the fridge", "Open it") if i % 3 else None,
                         "def act(robot, env, camera):\n    donothing(env)" if i % 3 else None,
                         "apple_1 is out of reach" if i % 4 == 1 else None)
        if not reads_views:
            out.append({"message": msg.render()})
            continue
        text = EnvMessage(None, None, msg.inventory, msg.task_goal, msg.original_subtasks, msg.previous_code,
                          msg.execution_error).render()
        blocks = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
        views = np.repeat(np.repeat(blocks, -(-size // 8), axis=1), -(-size // 8), axis=2)[:, :size, :size]
        out.append({"text": text, "views": np.ascontiguousarray(views)})
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _direct(policy: Any, observations: list[dict], batch: int) -> tuple[float, list[float]]:
    latencies = []
    t0 = time.perf_counter()
    for i in range(0, len(observations), batch):
        t = time.perf_counter()
        chunk = observations[i:i + batch]
        policy.respond_batch(chunk)
        latencies += [time.perf_counter() - t] * len(chunk)
    return time.perf_counter() - t0, latencies


def _served(url: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], int]:
    import httpx
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(mine: list[bytes]) -> None:
        with httpx.Client(timeout=600) as http:
            start.wait()
            for body in mine:
                t = time.perf_counter()
                r = http.post(url + "/chat/completions", content=body, headers={"Content-Type": "application/json"})
                took = time.perf_counter() - t
                with lock:
                    latencies.append(took)
                    failures[0] += r.status_code != 200
    threads = [threading.Thread(target=client, args=(bodies[c::clients],)) for c in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, failures[0]


def run_serve_bench(policy: Any, observations: list[dict], clients: int = 8, repeats: int = 3,
                    window_ms: float = 10.0, model_name: str = "bench") -> dict[str, Any]:
    """Direct vs served responses/s and latency (p50/p99) on `observations` (medians over `repeats` runs)."""
    policy.batch_size = clients
    policy.memo = False  # every timed request generates (a greedy policy would answer the repeats from memory)
    bodies = [json.dumps({"model": model_name, "max_tokens": policy.max_new_tokens, "messages": [
        {"role": "user", "content": observation_content(o.get("text", o.get("message")), o.get("views"))}]}).encode()
        for o in observations]
    n = len(observations)
    runs: dict[str, list[dict]] = {"direct": [], "served": []}
    _direct(policy, observations[:clients], clients)  # warm-up (allocator, kernels)
    with ServerThread(create_app(policy, model_name, ServeConfig(max_batch=clients, window_ms=window_ms))) as server:
        _served(server.url, bodies[:clients], clients)  # warm-up (connections, first batch)
        for i in range(repeats):  # alternate which side goes first: a shared machine's load drifts
            for side in (("direct", "served") if i % 2 == 0 else ("served", "direct")):
                if side == "direct":
                    wall, lat = _direct(policy, observations, clients)
                    runs["direct"].append({"responses_per_s": n / wall, "p50_s": _percentile(lat, 50),
                                           "p99_s": _percentile(lat, 99)})
                    continue
                server.batcher.batches.clear()
                wall, lat, failed = _served(server.url, bodies, clients)
                runs["served"].append({"responses_per_s": n / wall, "p50_s": _percentile(lat, 50),
                                       "p99_s": _percentile(lat, 99), "failed": failed,
                                       "mean_batch": statistics.mean(server.batcher.batches or [0])})
    out: dict[str, Any] = {"clients": clients, "responses_per_run": n, "repeats": repeats,
                           "max_new_tokens": policy.max_new_tokens, "window_ms": window_ms}
    for side, rs in runs.items():
        out[side] = {k: round(statistics.median(r[k] for r in rs), 4) for k in rs[0]}
    ratios = [s["responses_per_s"] / d["responses_per_s"] for s, d in zip(runs["served"], runs["direct"])]
    out["throughput_ratio"] = round(statistics.median(ratios), 3)
    out["throughput_ratio_runs"] = [round(r, 3) for r in ratios]
    return out
