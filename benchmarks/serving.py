"""Serving latency and throughput: `labvla-serve` next to openpi's own server, same run, same client.

    .venv/bin/python benchmarks/serving.py [--requests 960] [--clients 1 4 16] [--rounds 8] [--repeats 5]

Prints a table and writes benchmarks/results/serving.json (with the git commit and the machine's load
average, since this box may be shared).

1. Protocol overhead = round trip - `server_timing.infer_ms`, p50 / p99, with 1, 4 and 16 concurrent
   clients, each sending two 224x224x3 uint8 images + an 8-dim state + a prompt:
   - `openpi`: openpi's `WebsocketPolicyServer` (copied verbatim below from Physical-Intelligence/openpi,
     Apache-2.0) serving a zero policy;
   - `labvla`: `labvla-serve`'s `InferenceServer` (key mapping, validation, batching, per-request log
     line) serving a zero model of the same input spec. A model this fast runs on the event loop, as
     openpi's does (`batching.INLINE_BELOW_S`);
   - `openpi, 20 ms model` / `labvla, 20 ms model`: the same two servers around a model that sleeps
     20 ms per call (a GPU-like fixed cost: one call per request in openpi's server, one per batch in
     labvla-serve's). Overhead then includes waiting for other clients' model calls. With one client
     labvla-serve runs this model on its event loop as openpi's server does (`batching.ALONE_INLINE_BELOW_S`),
     with more on its worker thread;
   - `labvla+model`: `labvla-serve` on a tiny labvla checkpoint (infer_ms is then real model time).
   Every client is openpi-client's `WebsocketClientPolicy` in its own process (as each robot would be),
   from a venv the benchmark creates under
   .cache/benchmarks/ (openpi-client pins numpy<2). If it cannot be installed, the openpi rows are left
   out and a minimal client speaking the same protocol is used.
2. Throughput (requests/s) of `labvla-serve` on the tiny labvla checkpoint with 16 clients, batching on
   (`--max-batch 16`) and off (`--max-batch 1`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from _offline import offline_env

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "benchmarks" / "serving"
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
ENV = offline_env()
PY = sys.executable

# openpi's server, verbatim from Physical-Intelligence/openpi@15a9616a00943ada6c20a0f158e3adb39df2ccac
# src/openpi/serving/websocket_policy_server.py (Apache-2.0), plus a zero policy and a main.
OPENPI_SERVER = textwrap.dedent(
    '''
    import asyncio
    import http
    import logging
    import time
    import traceback

    from openpi_client import base_policy as _base_policy
    from openpi_client import msgpack_numpy
    import websockets.asyncio.server as _server
    import websockets.frames

    logger = logging.getLogger(__name__)


    class WebsocketPolicyServer:
        def __init__(self, policy, host="0.0.0.0", port=None, metadata=None):
            self._policy = policy
            self._host = host
            self._port = port
            self._metadata = metadata or {}
            logging.getLogger("websockets.server").setLevel(logging.INFO)

        def serve_forever(self) -> None:
            asyncio.run(self.run())

        async def run(self):
            async with _server.serve(
                self._handler,
                self._host,
                self._port,
                compression=None,
                max_size=None,
                process_request=_health_check,
            ) as server:
                await server.serve_forever()

        async def _handler(self, websocket):
            logger.info(f"Connection from {websocket.remote_address} opened")
            packer = msgpack_numpy.Packer()

            await websocket.send(packer.pack(self._metadata))

            prev_total_time = None
            while True:
                try:
                    start_time = time.monotonic()
                    obs = msgpack_numpy.unpackb(await websocket.recv())

                    infer_time = time.monotonic()
                    action = self._policy.infer(obs)
                    infer_time = time.monotonic() - infer_time

                    action["server_timing"] = {
                        "infer_ms": infer_time * 1000,
                    }
                    if prev_total_time is not None:
                        action["server_timing"]["prev_total_ms"] = prev_total_time * 1000

                    await websocket.send(packer.pack(action))
                    prev_total_time = time.monotonic() - start_time

                except websockets.ConnectionClosed:
                    logger.info(f"Connection from {websocket.remote_address} closed")
                    break
                except Exception:
                    await websocket.send(traceback.format_exc())
                    await websocket.close(
                        code=websockets.frames.CloseCode.INTERNAL_ERROR,
                        reason="Internal server error. Traceback included in previous frame.",
                    )
                    raise


    def _health_check(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\\n")
        return None


    # --- benchmark additions ---
    import sys
    import numpy as np

    COST_S = float(sys.argv[2]) / 1000

    class ZeroPolicy(_base_policy.BasePolicy):
        def infer(self, obs):
            if COST_S:
                time.sleep(COST_S)
            return {"actions": np.zeros((10, 7), np.float32)}

    logging.basicConfig(level=logging.WARNING)
    WebsocketPolicyServer(ZeroPolicy(), host="127.0.0.1", port=int(sys.argv[1])).serve_forever()
    '''
)

# labvla-serve's server with a zero model (optionally sleeping argv[2] ms per call) of the same input spec.
LABVLA_ZERO_SERVER = textwrap.dedent(
    """
    import asyncio, logging, sys, time
    import numpy as np
    from lerobot_labvla.serving.observations import ObservationSpec
    from lerobot_labvla.serving.websocket_server import InferenceServer, prepare_process

    class ZeroRunner:
        spec = ObservationSpec(
            cameras={"observation.images.front": (3, 224, 224), "observation.images.wrist": (3, 224, 224)},
            vectors={"observation.state": (8,)},
            needs_task=True,
        )
        def metadata(self):
            return {"policy_type": "zero", "chunk_size": 10, "action_dim": 7}
        def infer(self, obs):
            if COST_S:
                time.sleep(COST_S)
            return np.zeros((len(obs), 10, 7), np.float32)

    COST_S = float(sys.argv[2]) / 1000
    prepare_process("INFO")  # as labvla-serve does: the per-request log line stays on, allocator tuned
    asyncio.run(InferenceServer(ZeroRunner(), "127.0.0.1", 0, max_batch=int(sys.argv[1])).run())
    """
)

# N client processes (as N robots would be), one connection per server each. Servers are measured in
# alternating rounds behind a barrier (the first round of each is warm-up, run concurrently like the rest)
# so that the load of this shared machine falls on all of them alike. Prints per-request
# (round trip ms, infer_ms, batch size) and the phase wall times.
LOADGEN = textwrap.dedent(
    """
    import json, multiprocessing as mp, sys, time
    import numpy as np
    urls, n_clients, per_round, rounds = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    try:
        from openpi_client.websocket_client_policy import WebsocketClientPolicy as Client
        client_name = "openpi-client"
    except ImportError:  # same protocol, minimal client
        from websockets.sync.client import connect
        from lerobot_labvla.serving import msgpack_numpy
        client_name = "minimal"
        class Client:
            def __init__(self, url):
                self._ws = connect(url, compression=None, max_size=None)
                msgpack_numpy.unpackb(self._ws.recv())
            def infer(self, obs):
                self._ws.send(msgpack_numpy.packb(obs))
                r = self._ws.recv()
                if isinstance(r, str):
                    raise RuntimeError(r)
                return msgpack_numpy.unpackb(r)
    def order(r):
        return urls if r % 2 == 0 else urls[::-1]
    def worker(i, barrier, out):
        rng = np.random.default_rng(i)
        obs = {
            "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            "observation/state": rng.standard_normal(8).astype(np.float32),
            "prompt": "pick up the beaker",
        }
        try:
            clients = {u: Client(u) for u in urls}
            rows = {u: [] for u in urls}
            for r in range(rounds + 1):
                for u in order(r):
                    barrier.wait()
                    for _ in range(per_round):
                        t = time.perf_counter()
                        res = clients[u].infer(obs)
                        rtt = (time.perf_counter() - t) * 1000
                        if r > 0:
                            timing = res["server_timing"]
                            rows[u].append((rtt, timing["infer_ms"], timing.get("batch_size", 1)))
                    barrier.wait()
            out.put(("ok", rows))
        except Exception as exc:
            barrier.abort()
            out.put(("error", repr(exc)))
    if __name__ == "__main__":
        ctx = mp.get_context("fork")
        barrier, out = ctx.Barrier(n_clients + 1, timeout=600), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(i, barrier, out)) for i in range(n_clients)]
        for p in procs:
            p.start()
        walls = {u: 0.0 for u in urls}
        errors = []
        try:
            for r in range(rounds + 1):
                for u in order(r):
                    barrier.wait()
                    t0 = time.perf_counter()
                    barrier.wait()
                    if r > 0:
                        walls[u] += time.perf_counter() - t0
        except Exception as exc:
            errors.append(repr(exc))
        results = {u: {"rows": [], "wall_s": walls[u]} for u in urls}
        for _ in procs:
            kind, payload = out.get(timeout=600)
            if kind == "error":
                errors.append(payload)
            else:
                for u, rows in payload.items():
                    results[u]["rows"] += rows
        for p in procs:
            p.join(60)
        print("RESULT " + json.dumps({"client": client_name, "results": results, "errors": errors}))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cmd: list[str], log: Path, port: int | None = None, timeout: float = 180):
        self.log = log
        self._f = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._f, stderr=subprocess.STDOUT, env=ENV)
        deadline = time.monotonic() + timeout
        self.port = port
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[:3]} exited: {log.read_text()[-2000:]}")
            if self.port is None:
                m = re.search(r"on ws://[\d.]+:(\d+)", log.read_text())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and self._healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")

    def _healthy(self) -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._f.close()


def client_python() -> tuple[str, str]:
    """(python with openpi-client, how it was found); falls back to this venv's python."""
    venv = CACHE / "openpi-client-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "openpi-client>=0.1,<0.2",
             "typing_extensions>=4"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            py.unlink(missing_ok=True)
            return PY, f"openpi-client not installable: {proc.stderr.strip().splitlines()[-1:]}"
    out = subprocess.run([str(py), "-c", "import openpi_client, numpy; print(numpy.__version__)"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return PY, "openpi-client venv broken"
    return str(py), f"openpi-client (numpy {out.stdout.strip()})"


def load(py: str, urls: list[str], clients: int, per_round: int, rounds: int) -> dict[str, dict]:
    """→ {url: {"rows": [(rtt_ms, infer_ms, batch)], "wall_s", "client"}}."""
    proc = subprocess.run([py, "-c", LOADGEN, json.dumps(urls), str(clients), str(per_round), str(rounds)],
                          capture_output=True, text=True, env=ENV, timeout=1800)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"load generator failed: {proc.stderr[-2000:]}")
    res = json.loads(line[-1][7:])
    if res["errors"]:
        raise RuntimeError(f"client errors: {res['errors'][:3]}")
    return {u: {**r, "client": res["client"]} for u, r in res["results"].items()}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summarize(res: dict) -> dict:
    rtt = [r[0] for r in res["rows"]]
    over = [r[0] - r[1] for r in res["rows"]]
    infer = [r[1] for r in res["rows"]]
    return {
        "n": len(rtt),
        "rtt_p50_ms": pct(rtt, 50), "rtt_p99_ms": pct(rtt, 99),
        "overhead_p50_ms": pct(over, 50), "overhead_p99_ms": pct(over, 99),
        "infer_p50_ms": pct(infer, 50),
        "mean_batch": sum(r[2] for r in res["rows"]) / len(res["rows"]),
        "requests_per_s": len(rtt) / res["wall_s"],
        "client": res["client"],
    }


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src/lerobot_labvla/serving", "benchmarks/serving.py"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def tiny_checkpoint() -> Path:
    """A tiny labvla checkpoint trained 1 step by lerobot-train on a synthetic dataset (cached per version of
    the policy code: a checkpoint saved by older code may not load in newer code)."""
    tree = subprocess.run(["git", "rev-parse", "HEAD:src/lerobot_labvla/policy"], cwd=ROOT, capture_output=True, text=True)
    root = CACHE / f"tiny_labvla_{tree.stdout.strip()[:12] or 'nogit'}"
    ckpt = root / "train" / "checkpoints" / "last" / "pretrained_model"
    if (ckpt / "config.json").exists():
        return ckpt
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic import make_dataset

    import shutil

    shutil.rmtree(root, ignore_errors=True)
    ds = make_dataset(root / "dataset", repo_id="local/serving_bench", n_episodes=2, frames=12, image_size=32)
    subprocess.run(
        [str(Path(PY).parent / "lerobot-train"), "--policy.type=labvla", "--policy.backbone=tiny", "--policy.device=cpu",
         "--policy.image_size=64", "--policy.expert_layers=2", "--policy.expert_width=64", "--policy.expert_heads=4",
         "--policy.fast_vocab_size=512", "--policy.push_to_hub=false", "--steps=1", "--batch_size=2", "--num_workers=0",
         "--save_freq=1", "--wandb.enable=false", f"--dataset.root={ds.root}", f"--dataset.repo_id={ds.repo_id}",
         f"--output_dir={root / 'train'}"],
        check=True, capture_output=True, env=ENV,
    )
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=960, help="timed requests per server, client count and run")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--rounds", type=int, default=8, help="alternating rounds the requests are split into")
    ap.add_argument("--repeats", type=int, default=5, help="independent runs of the openpi/labvla comparison")
    ap.add_argument("--throughput-requests", type=int, default=320, help="timed requests per server, 16 clients")
    ap.add_argument("--fixed-cost-ms", type=float, default=20.0, help="model cost of the fixed-cost rows")
    ap.add_argument("--fixed-cost-requests", type=int, default=480, help="timed requests per server, client count and run")
    ap.add_argument("--fixed-cost-repeats", type=int, default=2, help="independent runs of the fixed-cost comparison")
    ap.add_argument("--groups", nargs="+", default=["zero", "fixed", "model", "throughput"],
                    choices=["zero", "fixed", "model", "throughput"],
                    help="what to run: overhead with the zero model, the fixed-cost model, the tiny checkpoint; "
                    "throughput on the tiny checkpoint (servers not needed are not started)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = ap.parse_args()
    load_at_start, commit = os.getloadavg(), git_commit()  # the code the servers start from
    CACHE.mkdir(parents=True, exist_ok=True)
    logs = CACHE / "logs"
    logs.mkdir(exist_ok=True)
    client_py, client_note = client_python()
    have_openpi = client_py != PY
    print(f"client: {client_note}", flush=True)
    want = set(args.groups)
    if want & {"model", "throughput"}:
        ckpt = tiny_checkpoint()
        serve = [PY, "-m", "lerobot_labvla.serving.websocket_server", f"--policy.path={ckpt}", "--port=0", "--device=cpu"]

    servers: dict[str, Server] = {}
    try:
        cost = f"{args.fixed_cost_ms:g} ms model"
        if have_openpi and "zero" in want:
            port = free_port()
            servers["openpi"] = Server([client_py, "-c", OPENPI_SERVER, str(port), "0"], logs / "openpi.log", port=port)
        if have_openpi and "fixed" in want:
            port = free_port()
            servers[f"openpi, {cost}"] = Server([client_py, "-c", OPENPI_SERVER, str(port), str(args.fixed_cost_ms)],
                                                logs / "openpi_cost.log", port=port)
        if "zero" in want:
            servers["labvla"] = Server([PY, "-c", LABVLA_ZERO_SERVER, "16", "0"], logs / "labvla_zero.log")
        if "fixed" in want:
            servers[f"labvla, {cost}"] = Server([PY, "-c", LABVLA_ZERO_SERVER, "16", str(args.fixed_cost_ms)],
                                                logs / "labvla_cost.log")
        if want & {"model", "throughput"}:
            servers["labvla+model"] = Server([*serve, "--max-batch=16"], logs / "labvla_model_b16.log")
        if "throughput" in want:
            servers["labvla+model, no batching"] = Server([*serve, "--max-batch=1"], logs / "labvla_model_b1.log")
        url = {k: f"ws://127.0.0.1:{v.port}" for k, v in servers.items()}

        overhead: dict[str, dict[int, dict]] = {}
        repeats: dict[str, dict[int, list[dict]]] = {}
        zero = [k for k in ("openpi", "labvla") if k in servers]
        fixed = [k for k in (f"openpi, {cost}", f"labvla, {cost}") if k in servers]
        groups = {"zero": (zero, args.repeats, args.requests),
                  "fixed": (fixed, args.fixed_cost_repeats, args.fixed_cost_requests),
                  "model": (["labvla+model"], 1, args.requests)}
        for group, n_repeats, n_requests in (groups[g] for g in args.groups if g in groups):
            for n in args.clients:
                per_round = max(1, n_requests // (n * args.rounds))
                pooled: dict[str, dict] = {k: {"rows": [], "wall_s": 0.0} for k in group}
                for rep in range(n_repeats):
                    res = load(client_py, [url[k] for k in group], n, per_round, args.rounds)
                    for k in group:
                        s = summarize(res[url[k]])
                        repeats.setdefault(k, {}).setdefault(n, []).append(s)
                        pooled[k]["rows"] += res[url[k]]["rows"]
                        pooled[k]["wall_s"] += res[url[k]]["wall_s"]
                        pooled[k]["client"] = res[url[k]]["client"]
                        print(f"  {k:22s} clients={n:2d} run {rep + 1}  overhead p50 {s['overhead_p50_ms']:6.2f} ms  p99 "
                              f"{s['overhead_p99_ms']:6.2f} ms  (rtt p50 {s['rtt_p50_ms']:.2f}, n={s['n']})", flush=True)
                for k in group:  # percentiles over all runs' requests together; each run's listed too
                    overhead.setdefault(k, {})[n] = {
                        **summarize(pooled[k]),
                        "runs_overhead_p50_ms": [r["overhead_p50_ms"] for r in repeats[k][n]],
                        "runs_overhead_p99_ms": [r["overhead_p99_ms"] for r in repeats[k][n]],
                    }

        throughput: dict[str, dict] = {}
        if "throughput" in want:
            tp_group = ["labvla+model", "labvla+model, no batching"]
            per_round = max(1, args.throughput_requests // (16 * args.rounds))
            res = load(client_py, [url[k] for k in tp_group], 16, per_round, args.rounds)
            throughput = {k: summarize(res[url[k]]) for k in tp_group}
    finally:
        for srv in servers.values():
            srv.stop()
    speedup = (throughput["labvla+model"]["requests_per_s"] / throughput["labvla+model, no batching"]["requests_per_s"]
               if throughput else None)

    print("\nProtocol overhead = round trip - server_timing.infer_ms (ms); two 224x224x3 uint8 images + state + prompt")
    print("(percentiles over the requests of all --repeats runs together; each run's p50 / p99 in brackets)")
    print(f"{'server':22s} {'clients':>7s} {'p50':>7s} {'p99':>7s} {'rtt p50':>8s} {'infer p50':>9s} {'batch':>6s}  runs")
    for name, rows in overhead.items():
        for n, s in rows.items():
            runs = " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(s["runs_overhead_p50_ms"], s["runs_overhead_p99_ms"]))
            print(f"{name:22s} {n:7d} {s['overhead_p50_ms']:7.2f} {s['overhead_p99_ms']:7.2f} {s['rtt_p50_ms']:8.2f} "
                  f"{s['infer_p50_ms']:9.2f} {s['mean_batch']:6.1f}  [{runs}]")
    if throughput:
        print("\nThroughput, tiny labvla checkpoint on CPU, 16 clients")
        for k, s in throughput.items():
            print(f"  {k:28s} {s['requests_per_s']:7.1f} req/s  (mean batch {s['mean_batch']:.1f}, rtt p50 {s['rtt_p50_ms']:.1f} ms)")
        print(f"  batching speed-up {speedup:.2f}x")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "git_commit": commit,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_at_start": load_at_start, "load_avg_at_end": os.getloadavg()},
        "client": client_note,
        "openpi_server": "Physical-Intelligence/openpi@15a9616 websocket_policy_server.py, zero policy" if have_openpi else None,
        "method": f"servers alternate in {args.rounds} rounds (+1 warm-up round each), {args.repeats} runs of the "
                  f"zero-model openpi/labvla comparison and {args.fixed_cost_repeats} of the {cost} one (percentiles "
                  "over all runs' requests pooled, each run's listed); overhead = rtt - infer_ms",
        "fixed_cost_model_ms": args.fixed_cost_ms,
        "overhead": {k: {str(n): s for n, s in v.items()} for k, v in overhead.items()},
        "groups": args.groups,
        **({"throughput_16_clients": throughput, "batching_speedup": speedup} if throughput else {}),
        "checkpoint": "tiny labvla (lerobot-train 1 step, backbone=tiny, 2x64 expert), CPU",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
