"""Time the validate stage on a synthetic dataset of realistic size (not a test; run by hand).

    python -m tests.validation.bench --rows 4000 --size 224 [--share-siblings] [--image-sample N]

Views are render-like PNGs (shaded boxes on a lit gradient). Without --share-siblings every image's
bytes are distinct (a text chunk makes them so), the worst case for the decoder; with it, siblings
share their parent's views as in collected trees. In one side-by-side measurement real 224 px renders
took about 1.4x as long to decode as these, so treat the numbers as a lower bound for distinct images.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from octopus.data import schema
from tests.validation import dataset as ds


def render_like(seed: int, size: int) -> bytes:
    """Shaded boxes on a lit gradient: PNGs of about the size and decoding cost of the renderer's views."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    light = (0.55 + 0.3 * yy + 0.15 * np.sin(3 * xx + seed))[..., None]
    img = rng.integers(60, 200, 3).astype(np.float32) * light
    for _ in range(10):
        x0, y0 = rng.integers(0, size - 8, 2)
        w, h = rng.integers(8, size // 2, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3) * light[y0:y0 + h, x0:x0 + w] * rng.uniform(0.8, 1.2)
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def tag(png: bytes, text: str) -> bytes:
    """The same image with a tEXt chunk before IEND: other bytes, same pixels and decoding work."""
    data = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:-12] + chunk + png[-12:]


def build(directory: Path, rows: int, size: int, share: bool, shard_rows: int = 256) -> None:
    trees = -(-rows // 5)
    states = 2 * trees if share else 400
    with ThreadPoolExecutor(4) as pool:
        pngs = list(pool.map(lambda k: render_like(k, size), range(states * schema.N_VIEWS)))
    train = [(t, sc) for t, split, sc in ds.SUITE if split == "train"]
    out: list[dict] = []
    for t in range(trees):
        task, scene = train[t % len(train)]
        for r in ds.tree(task, scene, t // len(train), t % 2 == 0, 0, size=8):
            state = (2 * t + min(r["depth"], 1)) if share else (len(out) % states)
            views = pngs[state * schema.N_VIEWS:(state + 1) * schema.N_VIEWS]
            r["images"] = [{"bytes": v if share else tag(v, f"{len(out)}/{k}"), "path": None}
                           for k, v in enumerate(views)]
            out.append(r)
    out = out[:rows]
    for k in range(0, len(out), shard_rows):
        schema.write_rows(out[k:k + shard_rows], directory / f"shard-{k // shard_rows:05d}.parquet")
    ds.write_manifest(directory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--share-siblings", action="store_true")
    ap.add_argument("--image-sample", type=int, default=0)
    args = ap.parse_args()
    gx_import = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); "
                                "import great_expectations; print(time.perf_counter() - t)"],
                               capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build(tmp / "dataset", args.rows, args.size, args.share_siblings)
        built = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in (tmp / "dataset").glob("*.parquet")) / 2**20
        suite = ds.write_suite(tmp / "suite" / "tasks.json")
        t0 = time.perf_counter()
        from octopus.validation import validate_dataset
        imported = time.perf_counter() - t0
        params = ds.make_params(size=args.size, image_sample=args.image_sample)
        report = validate_dataset(tmp / "dataset", suite, params, tmp / "docs")
    print(json.dumps({"rows": report.rows, "size": args.size, "share_siblings": args.share_siblings,
                      "dataset_mb": round(size_mb, 1), "build_s": round(built, 1),
                      "gx_import_s_fresh_process": float(gx_import), "package_import_s": round(imported, 2),
                      "validate_s": {k: round(v, 2) for k, v in report.seconds.items()},
                      "success": report.success, "failed": report.failed}, indent=1))


if __name__ == "__main__":
    main()
