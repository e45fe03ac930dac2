"""Speed of the ``image`` encoder (EfficientNet-Lite0 on torch), without the server around it.

Encodes the shared colour photos (11 images from 300 x 451 to 1000 x 872 pixels,
already decoded, cycled to the wanted count) in calls of 1 and of 16 images (the
encoder runs the network on 4 at a time, ``CHUNK_SIZE``), with torch using 1 and
then 2 intra-op threads, and prints milliseconds per image and images per second
for each, plus the share of the time spent in preprocessing (crop, resize,
scaling; one core whatever the threads).

    .venv/bin/python benchmarks/image_encoder.py [--images 64] [--batches 1 4 16]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Sequence

from _common import SHARED_DATA, CpuWatch, code_version, wait_for_idle
from PIL import Image

from spyglass.encoders.image import ImageEncoder, preprocess

PHOTOS = SHARED_DATA / "photos" / "color"


def load_photos(count: int) -> list[Image.Image]:
    """``count`` decoded RGB photos, cycling through the shared colour set."""
    photos = []
    for path in sorted(PHOTOS.iterdir()):
        with Image.open(path) as image:
            photos.append(image.convert("RGB"))
    if not photos:
        raise SystemExit(f"no photos in {PHOTOS}")
    return list(itertools.islice(itertools.cycle(photos), count))


def run(encoder: ImageEncoder, images: Sequence[Image.Image], batch: int) -> list[float]:
    """Seconds per call when ``images`` are encoded ``batch`` at a time."""
    times = []
    for start in range(0, len(images), batch):
        began = time.perf_counter()
        encoder.encode_images(images[start : start + batch])
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="images per call")
    args = parser.parse_args()

    images = load_photos(args.images)
    print(code_version())
    wait_for_idle()
    began = time.perf_counter()
    for image in images:
        preprocess(image)
    prep_ms = (time.perf_counter() - began) * 1000 / len(images)
    print(f"{len(images)} images; preprocessing alone {prep_ms:.2f} ms/image")

    for threads in args.threads:
        began = time.perf_counter()
        encoder = ImageEncoder(threads=threads)
        load_s = time.perf_counter() - began
        encoder.encode_images(images[:16])  # warm up: first-call allocations, kernel choice
        print(f"threads={threads}  load={load_s:.2f}s")
        for batch in args.batches:
            with CpuWatch() as watch:
                times = run(encoder, images, batch)
            total = sum(times)
            ms = total * 1000 / len(images)
            line = f"  batch {batch:>2}: {ms:6.1f} ms/image  {len(images) / total:6.1f} images/s"
            if batch == 1:
                line += f"  (p50 {statistics.median(times) * 1000:.1f} ms per call)"
            print(f"{line}  preprocessing {prep_ms / ms:.0%}", flush=True)
            print(f"    {watch}")


if __name__ == "__main__":
    main()
