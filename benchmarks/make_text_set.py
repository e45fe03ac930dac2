"""Build text100k: a real sentence-embedding set (100,000 base + 1,000 queries) with ground truth.

The text is English prose that Python packages ship: docstrings and comments of
the ``.py`` files of the standard library and of the venv's site-packages. Each
file's docstrings (``ast``) and comment runs (``tokenize``; consecutive comment
lines joined) are split into sentences; a sentence is kept when it is 30-300
characters long, mostly letters, at least five words and not code-like, and
only its first occurrence is kept. Files are read in sorted path order, so the
sentence list is deterministic for a given set of installed packages; a seeded
shuffle (``--seed``) then picks the queries and the base, disjoint.

The default encoder (``create_encoder("text")``: all-MiniLM-L6-v2, int8 ONNX,
384-d, unit vectors) embeds them with ``--threads`` onnxruntime threads in calls
of ``--batch`` sentences. Ground truth is exact: the top-100 base rows of each
query by inner product (FAISS ``IndexFlatIP``; equal to cosine on unit vectors).

Writes to benchmarks/out/text100k/: base.npy and query.npy (float32, L2
normalised), texts.jsonl (``{"id", "text"}``: ids ``b<row>`` for the base, then
``q<row>`` for the queries), gt_ip_neighbors.npy (int64, queries x 100),
gt_ip_scores.npy, sources.txt and meta.json.

    .venv/bin/python benchmarks/make_text_set.py            # ~6-10 min on 2 cores
    .venv/bin/python benchmarks/make_text_set.py --extract-only
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import multiprocessing
import os
import random
import re
import sys
import sysconfig
import time
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
from _common import REPO, TEXT_SET

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])")
WHITESPACE = re.compile(r"\s+")
CODE_LIKE = re.compile(
    r"(>>>|::|==|!=|\(\)|->|\+=|\w+\.\w+\(|\bdef |\bself\.|[{}\[\]<>|\\$@#~]|__)"
)
MIN_CHARS, MAX_CHARS = 30, 300


def python_sources() -> list[Path]:
    """The .py files of the standard library (with its tests and its own site-packages)
    and of the venv's site-packages, sorted by path."""
    paths = sysconfig.get_paths()
    roots = {Path(paths["stdlib"]), Path(paths["purelib"]), Path(paths["platlib"])}
    files: set[Path] = set()
    for root in roots:
        for path in root.rglob("*.py"):
            if "__pycache__" not in path.parts and path.is_file():
                files.add(path.resolve())
    return sorted(files)


def docstrings(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=True)
            if text:
                yield text


def comment_runs(source: str) -> Iterator[str]:
    """Comments, consecutive comment lines joined into one text."""
    run: list[str] = []
    last_line = -2
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT:
                continue
            text = token.string.lstrip("#").strip()
            line = token.start[0]
            if line != last_line + 1 and run:
                yield " ".join(run)
                run = []
            if text and not text.startswith("!") and "noqa" not in text and "type:" not in text:
                run.append(text)
            last_line = line
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    if run:
        yield " ".join(run)


def sentences(text: str) -> Iterator[str]:
    """Paragraphs of ``text`` (blank-line separated), flattened and split into sentences."""
    for paragraph in re.split(r"\n\s*\n", text):
        flat = WHITESPACE.sub(" ", paragraph).strip()
        for sentence in SENTENCE_END.split(flat):
            yield sentence.strip()


def keep(sentence: str) -> bool:
    if not MIN_CHARS <= len(sentence) <= MAX_CHARS:
        return False
    if CODE_LIKE.search(sentence) or len(sentence.split()) < 5:
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters >= 0.8 * len(sentence) and sentence[0].isalpha()


def file_sentences(path: Path) -> list[str]:
    """The kept sentences of one file's docstrings and comments, in order (may repeat)."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    texts: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            texts.extend(docstrings(ast.parse(source)))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    texts.extend(comment_runs(source))
    return [s for text in texts for s in sentences(text) if keep(s)]


def extract(files: list[Path], processes: int) -> tuple[list[str], list[str]]:
    """Unique kept sentences in file order, and the files that gave any.

    Files are parsed in ``processes`` worker processes; ``imap`` keeps file order,
    so the result does not depend on the number of processes.
    """
    seen: set[str] = set()
    found: list[str] = []
    used: list[str] = []
    with multiprocessing.Pool(processes) as pool:
        for path, kept in zip(files, pool.imap(file_sentences, files, chunksize=16), strict=True):
            before = len(found)
            for sentence in kept:
                if sentence not in seen:
                    seen.add(sentence)
                    found.append(sentence)
            if len(found) > before:
                used.append(str(path))
    return found, used


def embed(texts: list[str], threads: int, batch: int) -> tuple[np.ndarray, float]:
    from spyglass.encoders import create_encoder

    encoder = create_encoder("text", threads=threads)
    encoder.encode(texts[:batch])  # warm up
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    started = time.perf_counter()
    last = started
    for start in range(0, len(texts), batch):
        stop = min(start + batch, len(texts))
        out[start:stop] = encoder.encode(texts[start:stop])
        now = time.perf_counter()
        if now - last >= 15 or stop == len(texts):
            rate = stop / (now - started)
            eta = (len(texts) - stop) / rate
            print(
                f"  embedded {stop:>7,}/{len(texts):,}  {rate:6.1f} sentences/s  eta {eta:5.0f} s",
                flush=True,
            )
            last = now
    return out, len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--batch", type=int, default=64, help="sentences per encode call")
    parser.add_argument("--gt-k", type=int, default=100)
    parser.add_argument("--out", type=Path, default=TEXT_SET)
    parser.add_argument("--extract-only", action="store_true", help="print counts and samples")
    args = parser.parse_args()

    wanted = args.base + args.queries
    started = time.perf_counter()
    files = python_sources()
    # every file is read (no early stop at the count wanted), then the seed picks the sample
    pool, used = extract(files, processes=os.cpu_count() or 1)
    print(
        f"{len(files):,} .py files, {len(used):,} with kept text: {len(pool):,} unique "
        f"sentences of {MIN_CHARS}-{MAX_CHARS} chars in {time.perf_counter() - started:.1f} s"
    )
    if len(pool) < wanted:
        raise SystemExit(f"only {len(pool):,} sentences, {wanted:,} wanted")
    order = list(range(len(pool)))
    random.Random(args.seed).shuffle(order)
    chosen = [pool[i] for i in order[:wanted]]
    query_texts, base_texts = chosen[: args.queries], chosen[args.queries :]
    lengths = np.array([len(s) for s in chosen])
    print(
        f"chosen {len(base_texts):,} base + {len(query_texts):,} queries (seed {args.seed}); "
        f"chars mean {lengths.mean():.0f}, median {np.median(lengths):.0f}"
    )
    if args.extract_only:
        for sentence in random.Random(1).sample(chosen, 25):
            print("  |", sentence)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"embedding {wanted:,} sentences: threads={args.threads}, batch={args.batch}", flush=True)
    vectors, rate = embed(base_texts + query_texts, args.threads, args.batch)
    print(
        f"encoder throughput: {rate:.1f} sentences/s (threads={args.threads}, batch={args.batch})"
    )
    norms = np.linalg.norm(vectors, axis=1)
    print(f"vector norms: min {norms.min():.6f}, max {norms.max():.6f}")
    vectors /= norms[:, None]
    base, query = vectors[: args.base], vectors[args.base :]

    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    gt_scores, gt_ids = flat.search(query, args.gt_k)
    print(
        f"exact top-{args.gt_k}: mean top-1 score {gt_scores[:, 0].mean():.3f}, "
        f"mean 10th {gt_scores[:, 9].mean():.3f}, mean 100th {gt_scores[:, -1].mean():.3f}"
    )

    np.save(args.out / "base.npy", np.ascontiguousarray(base, dtype=np.float32))
    np.save(args.out / "query.npy", np.ascontiguousarray(query, dtype=np.float32))
    np.save(args.out / "gt_ip_neighbors.npy", gt_ids.astype(np.int64))
    np.save(args.out / "gt_ip_scores.npy", gt_scores.astype(np.float32))
    with (args.out / "texts.jsonl").open("w", encoding="utf-8") as handle:
        for i, text in enumerate(base_texts):
            handle.write(json.dumps({"id": f"b{i}", "text": text}, ensure_ascii=False) + "\n")
        for i, text in enumerate(query_texts):
            handle.write(json.dumps({"id": f"q{i}", "text": text}, ensure_ascii=False) + "\n")
    (args.out / "sources.txt").write_text("\n".join(used) + "\n", encoding="utf-8")
    meta = {
        "base": len(base_texts),
        "queries": len(query_texts),
        "dim": int(base.shape[1]),
        "encoder": "text (all-MiniLM-L6-v2 int8 ONNX)",
        "threads": args.threads,
        "batch": args.batch,
        "encoder_sentences_per_s": round(rate, 1),
        "seed": args.seed,
        "pool_sentences": len(pool),
        "files_used": len(used),
        "python": sys.version.split()[0],
        "gt": f"top-{args.gt_k} by inner product, faiss IndexFlatIP",
        "made_by": str(Path(__file__).relative_to(REPO)),
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
