"""Face identification: latency per photo and accuracy on augmented copies of real faces.

The faces that may be used here: scikit-image's astronaut (Eileen Collins, NASA,
public domain) and Kodak's kodim15 (a girl, "for unrestricted usage"), stretched
back from the shared 256x256 copy to its original 3:2 shape. Each is enrolled
once (its original photo) in a flat index (FAISS ``IndexFlatL2``); ``--copies``
seeded random copies of each (mirror, scale 0.6-2.5x, crop that keeps the face,
rotation up to 10 degrees, brightness and contrast +-35%, blur, JPEG quality
30-90) are then identified as the face route would: ``encode_faces`` (detect,
landmarks, descriptor), search, :func:`spyglass.faces.identify`.

Prints, for the default settings:

- latency per photo of detect + encode + identify, p50/p95, and of each step;
  target p95 <= 300 ms on the 2-core machine, one photo at a time;
- a large (3024 px) photo, to show what the scaled-down detection saves;
- accuracy: photos with a face found, top-1 accurate, wrong person, rejected as
  unknown; and the open-set case: each person queried with only the other one
  enrolled, where the right answer is ``unknown``;
- distances of copies to their own original and to the other person.

``--sweep`` repeats the latency and detection rate for several ``max_side``
values and upsample 0/1; ``--concurrency`` measures photos/s with 1 and 2 callers
sharing an encoder with ``threads`` 1 and 2.

    .venv/bin/python benchmarks/faces.py [--copies 40] [--sweep] [--concurrency]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import _common
import faiss
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from spyglass.encoders.face import MAX_DETECT_SIDE, FaceBox, FaceEncoder
from spyglass.faces import NO_FACE, Identification, identify

PHOTOS = _common.SHARED_DATA / "photos"
TARGET_MS = 300.0


def people() -> dict[str, Image.Image]:
    """The two real faces, as RGB photos."""
    with Image.open(PHOTOS / "color" / "skimage_astronaut.png") as image:
        astronaut = image.convert("RGB")
    with Image.open(PHOTOS / "grayscale_kodak256" / "kodim15.png") as image:
        girl = image.convert("RGB").resize((384, 256), Image.Resampling.LANCZOS)
    return {"eileen": astronaut, "girl": girl}


def augment(image: Image.Image, face: FaceBox, rng: random.Random) -> Image.Image:
    """A random copy of ``image`` that keeps the whole ``face`` in the frame."""
    width, height = image.size
    margins = (face.left, face.top, width - face.right, height - face.bottom)
    left, top, right, bottom = (int(m * rng.uniform(0.0, 0.8)) for m in margins)
    copy = image.crop((left, top, width - right, height - bottom))
    if rng.random() < 0.5:
        copy = ImageOps.mirror(copy)
    copy = copy.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR, expand=False)
    copy = ImageEnhance.Brightness(copy).enhance(rng.uniform(0.65, 1.35))
    copy = ImageEnhance.Contrast(copy).enhance(rng.uniform(0.65, 1.35))
    scale = rng.uniform(0.6, 2.5)
    size = (max(1, round(copy.width * scale)), max(1, round(copy.height * scale)))
    copy = copy.resize(size, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        copy = copy.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=rng.randint(30, 90))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


@dataclass(frozen=True)
class Query:
    person: str
    image: Image.Image


@dataclass(frozen=True)
class Result:
    person: str
    answer: Identification
    total_ms: float
    encode_ms: float
    search_ms: float


class Index:
    """A flat L2 index of enrolled descriptors and their labels."""

    def __init__(self, vectors: np.ndarray, labels: Sequence[str]) -> None:
        self.index = faiss.IndexFlatL2(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.labels = list(labels)

    def identify(self, vector: np.ndarray, k: int = 10) -> Identification:
        k = min(k, self.index.ntotal)
        squared, rows = self.index.search(vector[None, :], k)
        distances = np.sqrt(np.maximum(squared[0], 0.0))  # FAISS gives squared L2
        return identify(distances, [self.labels[int(i)] for i in rows[0]])


def run(encoder: FaceEncoder, index: Index, queries: Sequence[Query]) -> list[Result]:
    """Identify every query photo, one at a time, timing each step."""
    results: list[Result] = []
    for query in queries:
        start = time.perf_counter()
        faces = encoder.encode_faces(query.image)
        encoded = time.perf_counter()
        answer = index.identify(faces[0].vector) if faces else NO_FACE
        done = time.perf_counter()
        results.append(
            Result(
                person=query.person,
                answer=answer,
                total_ms=(done - start) * 1000,
                encode_ms=(encoded - start) * 1000,
                search_ms=(done - encoded) * 1000,
            )
        )
    return results


def percentiles(values: Sequence[float]) -> str:
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return f"p50 {p50:6.1f} ms  p95 {p95:6.1f} ms"


def detect_ms(encoder: FaceEncoder, queries: Sequence[Query]) -> list[float]:
    times: list[float] = []
    for query in queries:
        start = time.perf_counter()
        encoder.detect(query.image)
        times.append((time.perf_counter() - start) * 1000)
    return times


def accuracy(results: Sequence[Result], enrolled: set[str]) -> str:
    """Rates over ``results``; a query of a person not in ``enrolled`` should be unknown."""
    n = len(results)
    found = [r for r in results if r.answer.status != "no_face"]
    right = sum(1 for r in found if r.answer.person == r.person)
    wrong = sum(1 for r in found if r.answer.status == "success" and r.answer.person != r.person)
    unknown = sum(1 for r in found if r.answer.status == "unknown")
    members = all(r.person in enrolled for r in results)
    head = f"{n} photos: face found {len(found) / n:6.1%}"
    if members:
        return (
            f"{head}; of those, right person {right / max(len(found), 1):6.1%}, "
            f"wrong person {wrong / max(len(found), 1):5.1%}, "
            f"unknown {unknown / max(len(found), 1):5.1%}  "
            f"(top-1 over all photos {right / n:6.1%})"
        )
    return (
        f"{head}; of those, unknown (correct) {unknown / max(len(found), 1):6.1%}, "
        f"taken for an enrolled person {wrong / max(len(found), 1):5.1%}"
    )


def throughput(encoder: FaceEncoder, images: Sequence[Image.Image], callers: int) -> float:
    """Photos per second when ``callers`` threads share ``encoder`` over ``images``."""
    chunks = [images[i::callers] for i in range(callers)]
    barrier = threading.Barrier(callers + 1)

    def work(chunk: Sequence[Image.Image]) -> None:
        barrier.wait()
        for image in chunk:
            encoder.encode_faces(image)

    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return len(images) / (time.perf_counter() - start)


def timed(label: str, block: Callable[[], None]) -> None:
    with _common.CpuWatch() as watch:
        block()
    print(f"  [{label}] {watch}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=40, help="augmented copies per person")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--upsample", type=int, default=1)
    parser.add_argument("--max-side", type=int, default=MAX_DETECT_SIDE)
    parser.add_argument("--sweep", action="store_true", help="also try other max_side/upsample")
    parser.add_argument("--concurrency", action="store_true", help="also measure 2 callers")
    args = parser.parse_args()

    _common.wait_for_idle()
    print(f"code: {_common.code_version()}")
    started = time.perf_counter()
    encoder = FaceEncoder(upsample=args.upsample, max_side=args.max_side)
    print(
        f"encoder load {time.perf_counter() - started:.2f} s; upsample {args.upsample}, "
        f"max_side {args.max_side}, faiss threads {faiss.omp_get_max_threads()}"
    )

    originals = people()
    boxes = {name: encoder.detect(image)[0] for name, image in originals.items()}
    enrolled = encoder.encode_images(list(originals.values()))
    names = list(originals)
    rng = random.Random(args.seed)
    queries = [
        Query(name, augment(originals[name], boxes[name], rng))
        for name in names
        for _ in range(args.copies)
    ]
    sizes = [max(q.image.size) for q in queries]
    print(
        f"{len(queries)} copies of {len(names)} faces, long side {min(sizes)}-{max(sizes)} px "
        f"(median {statistics.median(sizes):.0f}); {sum(s > args.max_side for s in sizes)} "
        f"over max_side"
    )
    encoder.encode_faces(queries[0].image)  # warm up

    index = Index(enrolled, names)
    results: list[Result] = []
    detections: list[float] = []

    def closed_set() -> None:
        results.extend(run(encoder, index, queries))
        detections.extend(detect_ms(encoder, queries))

    print("\nlatency, one photo at a time (encode = detect + landmarks + descriptor):")
    timed("latency", closed_set)
    totals = [r.total_ms for r in results]
    p95 = float(np.percentile(totals, 95))
    verdict = "PASS" if p95 <= TARGET_MS else "FAIL"
    print(
        f"  detect + encode + identify  {percentiles(totals)}   target p95 <= "
        f"{TARGET_MS:.0f} ms: {verdict}"
    )
    print(f"  detect only                 {percentiles(detections)}")
    print(f"  encode_faces                {percentiles([r.encode_ms for r in results])}")
    print(f"  identify (flat search)      {percentiles([r.search_ms for r in results])}")
    small = [r.total_ms for r, s in zip(results, sizes, strict=True) if s <= args.max_side]
    large = [r.total_ms for r, s in zip(results, sizes, strict=True) if s > args.max_side]
    if small and large:
        print(
            f"  photos <= max_side ({len(small)}) {percentiles(small)}; "
            f"> max_side ({len(large)}) {percentiles(large)}"
        )

    big = originals["eileen"].resize((3024, 3024), Image.Resampling.BICUBIC)
    big_times = [r.total_ms for r in run(encoder, index, [Query("eileen", big)] * 5)]
    print(f"  a 3024x3024 photo           {percentiles(big_times)}")

    print("\naccuracy, everyone enrolled (one photo each):")
    print(f"  {accuracy(results, set(names))}")
    for name in names:
        own = [r for r in results if r.person == name]
        print(f"    {name:7s} {accuracy(own, set(names))}")
    print("open set, each person queried with only the other enrolled:")
    for name in names:
        others = [i for i, other in enumerate(names) if other != name]
        partial = Index(enrolled[others], [names[i] for i in others])
        asked = [q for q in queries if q.person == name]
        print(f"    {name:7s} {accuracy(run(encoder, partial, asked), set())}")

    print("\ndistances of the copies (largest face) to the enrolled originals:")
    for name in names:
        vectors = [
            f[0].vector
            for f in (encoder.encode_faces(q.image) for q in queries if q.person == name)
            if f
        ]
        for j, other in enumerate(names):
            d = np.linalg.norm(np.asarray(vectors) - enrolled[j], axis=1)
            kind = "same person " if other == name else "other person"
            print(
                f"    {name:7s} vs {other:7s} ({kind}): min {d.min():.3f}  median "
                f"{np.median(d):.3f}  p95 {np.percentile(d, 95):.3f}  max {d.max():.3f}"
            )
    between = float(np.linalg.norm(enrolled[0] - enrolled[1]))
    print(f"    originals to each other: {between:.3f}")

    if args.sweep:
        print("\nsweep (same copies): max_side x upsample -> face found, latency")
        for upsample in (0, 1):
            for side in (480, 640, 800, 1024):
                swept = FaceEncoder(upsample=upsample, max_side=side)
                swept.encode_faces(queries[0].image)
                with _common.CpuWatch() as watch:
                    out = run(swept, index, queries)
                found = sum(r.answer.status != "no_face" for r in out) / len(out)
                right = sum(r.answer.person == r.person for r in out) / len(out)
                print(
                    f"    upsample {upsample} max_side {side:4d}: found {found:6.1%}  top-1 "
                    f"{right:6.1%}  {percentiles([r.total_ms for r in out])}"
                )
                print(f"      [{watch}]")

    if args.concurrency:
        print("\nthroughput, photos/s (encode_faces over the copies):")
        images = [q.image for q in queries]
        for threads in (1, 2):
            shared = FaceEncoder(threads=threads, upsample=args.upsample, max_side=args.max_side)
            for callers in (1, 2):
                with _common.CpuWatch() as watch:
                    rate = throughput(shared, images, callers)
                print(f"    encoder threads={threads}, {callers} caller(s): {rate:5.2f} photos/s")
                print(f"      [{watch}]")


if __name__ == "__main__":
    main()
