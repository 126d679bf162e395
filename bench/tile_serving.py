"""Deep Zoom tile serving: cached and cold tiles per second from a real server over loopback.

    nice -n 10 python -m bench.tile_serving [--clients 16] [--seconds 20] [--workers 2]

Goal (issue #13): at least 200 tiles/s from the cache on this machine (2 cores, shared by
client and server).

Setup: the fixture slide (:func:`exemplar.data.slide_fixture.build_slide_fixture`, a
2607x2304 pyramidal TIFF built from real microscopy tiles) imported into a detection
project as 512-px regions; one annotator with an API token. ``exemplar serve --workers N
--no-access-log`` runs as a subprocess on 127.0.0.1 (no learner: the project's oracle is
simulated).

1. **Cold**: every tile of the slide's top four Deep Zoom levels (the ones a viewer asks for
   around a region: 153 tiles) is fetched once by the clients, none of them made yet:
   tiles made from the slide (read, resized, JPEG-encoded, written to the disk cache) per
   second.
2. **Warm-up** (not measured): the same tiles again for a few seconds, so every web
   worker holds them in its in-memory cache.
3. **Cached**: ``--clients`` concurrent clients (one keep-alive HTTP/1.1 connection each,
   bearer token, :class:`bench.server_load.Http1`) fetch random tiles of that set for
   ``--seconds``: tiles per second and the latency percentiles.

Results go to ``bench/results/tile_serving.json`` and a markdown table row is printed. The
client shares the machine with the server: its CPU time is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.server_load import Http1, TransportError, _free_port, _pct, start_server

RESULTS = Path(__file__).parent / "results"
GOAL_TILES_PER_S = 200.0
PASSWORD = "tile bench password"
LEVELS = 4


def setup(base: Path) -> tuple[Path, str, int, list[str]]:
    """The project (slide imported), an API token, the slide's media id and tile paths."""
    from sqlalchemy import select

    from exemplar.data.slide_fixture import build_slide_fixture
    from exemplar.media.deepzoom import DeepZoom, TileCache
    from exemplar.project import Project
    from exemplar.server.routes.viewer import content_version
    from exemplar.store.accounts import add_user, create_token
    from exemplar.store.schema import Media

    fixture = build_slide_fixture(base / "nuclei.tif")
    root = base / "proj"
    with Project.init(root, ["nucleus", "micronucleus"], task="detection") as project:
        project.import_(fixture.path, region_size=512)
        user = add_user(project.db, "viewer", "annotator", PASSWORD)
        token = create_token(project.db, user.id, "bench")
        with project.db.read() as s:
            media = s.scalars(select(Media)).one()
            media_id, version = int(media.id), content_version(media.uid)
    # the pyramid's shape only (this cache is thrown away)
    pyramid = DeepZoom(fixture.path, TileCache(base / "scratch"), "shape")
    paths: list[str] = []
    for level in range(pyramid.level_count - LEVELS, pyramid.level_count):
        cols, rows = pyramid.level_tiles[level]
        paths.extend(
            f"/api/v1/slides/{media_id}-{version}_files/{level}/{c}_{r}.jpeg"
            for r in range(rows)
            for c in range(cols)
        )
    return root, token, media_id, paths


class Fetch:
    """Latencies, bytes and errors of one phase."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.bytes = 0
        self.errors: dict[str, int] = {}

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def _get(http: Http1, path: str, fetch: Fetch) -> None:
    t0 = time.perf_counter()
    try:
        status, data = await http.request("GET", path)
    except TransportError as exc:
        fetch.error(str(exc)[:80])
        return
    if status != 200:
        fetch.error(f"HTTP {status}")
        return
    fetch.ms.append(1000 * (time.perf_counter() - t0))
    fetch.bytes += len(data)


async def each_once(port: int, token: str, paths: list[str], clients: int) -> tuple[Fetch, float]:
    """Every path fetched once, by ``clients`` connections taking the next one in turn."""
    fetch = Fetch()
    todo = list(paths)
    connections = [Http1("127.0.0.1", port, token) for _ in range(clients)]

    async def worker(http: Http1) -> None:
        while todo:
            await _get(http, todo.pop(), fetch)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(h) for h in connections))
    finally:
        for h in connections:
            await h.close()
    return fetch, time.perf_counter() - t0


async def for_seconds(
    port: int, token: str, paths: list[str], clients: int, seconds: float, seed: int
) -> tuple[Fetch, float]:
    """Random paths fetched by ``clients`` connections until ``seconds`` have passed."""
    fetch = Fetch()
    connections = [Http1("127.0.0.1", port, token) for _ in range(clients)]
    end = time.perf_counter() + seconds

    async def worker(http: Http1, rng: random.Random) -> None:
        while time.perf_counter() < end:
            await _get(http, rng.choice(paths), fetch)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(
            *(worker(h, random.Random(seed + k)) for k, h in enumerate(connections))
        )
    finally:
        for h in connections:
            await h.close()
    return fetch, time.perf_counter() - t0


def _phase(fetch: Fetch, wall: float) -> dict[str, Any]:
    return {
        "tiles": len(fetch.ms),
        "wall_s": round(wall, 2),
        "tiles_per_s": round(len(fetch.ms) / wall, 1),
        "mib_per_s": round(fetch.bytes / wall / 2**20, 2),
        "mean_tile_kib": round(fetch.bytes / max(len(fetch.ms), 1) / 1024, 1),
        "latency": _pct(fetch.ms),
        "errors": fetch.errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="web worker processes")
    parser.add_argument("--out", type=Path, default=RESULTS / "tile_serving.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tile-bench-") as tmp:
        base = Path(tmp)
        root, token, _, paths = setup(base)
        port = _free_port()
        exe = Path(sys.executable).with_name("exemplar")
        cmd = [str(exe), "serve", str(root), "--port", str(port), "--workers", str(args.workers)]
        cmd.append("--no-access-log")
        proc = start_server(cmd, port, base / "server.log")
        cpu_self = time.process_time()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before = os.getloadavg()
        try:
            cold, cold_wall = uvloop.run(each_once(port, token, paths, args.clients))
            uvloop.run(for_seconds(port, token, paths, args.clients, args.warmup, seed=1))
            client_before = time.process_time()
            warm, warm_wall = uvloop.run(
                for_seconds(port, token, paths, args.clients, args.seconds, seed=2)
            )
            client_cpu = time.process_time() - client_before
            load_after = os.getloadavg()
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        tiles_on_disk = len(list((root / "cache" / "tiles").rglob("*.jpeg")))

    cached = _phase(warm, warm_wall)
    result = {
        "goal_cached_tiles_per_s": GOAL_TILES_PER_S,
        "met": cached["tiles_per_s"] >= GOAL_TILES_PER_S and not warm.errors,
        "cached": cached,
        "cold": _phase(cold, cold_wall),
        "distinct_tiles": len(paths),
        "tiles_on_disk": tiles_on_disk,
        "clients": args.clients,
        "workers": args.workers,
        "client_cpu_ms_per_tile": round(1000 * client_cpu / max(len(warm.ms), 1), 3),
        "server_cpu_s_start_to_stop": round(
            (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 1
        ),
        "total_cpu_s_of_run": round(time.process_time() - cpu_self, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "niceness": os.nice(0),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": "python -m bench.tile_serving " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    lat = cached["latency"]
    print(
        "\n| clients | workers | cached tiles/s | p50 ms | p99 ms | cold tiles/s | goal |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {args.clients} | {args.workers} | {cached['tiles_per_s']} | {lat.get('p50_ms')} | "
        f"{lat.get('p99_ms')} | {result['cold']['tiles_per_s']} | "
        f"{'met' if result['met'] else 'NOT met'} (>= {GOAL_TILES_PER_S:g}) |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
