"""The ``clip`` encoder's loading, preprocessing and tokenising, on tiny CLIP-like models.

No package ships CLIP weights, so each test builds a model folder in ``tmp_path``:
a visual graph that flattens the pixels and projects them to 8 dimensions, a
textual graph that averages token embeddings over the context and projects them,
a WordLevel ``tokenizer.json`` with CLIP's start and end tokens, and a
``config.json``. The graphs are linear, so the test computes each expected vector
itself with numpy from the weights it wrote; that checks the preprocessing, the
token layout (start, tokens, end, padding) and the way the graphs are fed.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers

from spyglass.encoders.clip import (
    OPENAI_MEAN,
    OPENAI_STD,
    ClipConfig,
    ClipEncoder,
    preprocess,
)
from spyglass.errors import ConfigError, InvalidRequest
from tests.conftest import SHARED_DATA

SIZE = 4
CONTEXT = 6
DIM = 8
VOCAB = {
    "!": 0,  # id 0, the padding open_clip uses
    "<|startoftext|>": 1,
    "<|endoftext|>": 2,
    "[UNK]": 3,
    "a": 4,
    "photo": 5,
    "of": 6,
    "cat": 7,
    "dog": 8,
}
START, END, UNK = 1, 2, 3


class TinyClip:
    """The weights of the tiny model a test folder holds, to compute expectations."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.visual = rng.standard_normal((3 * SIZE * SIZE, DIM)).astype(np.float32)
        self.embedding = rng.standard_normal((len(VOCAB), DIM)).astype(np.float32)
        self.projection = rng.standard_normal((DIM, DIM)).astype(np.float32)

    def image_vector(self, pixels: np.ndarray) -> np.ndarray:
        """What the encoder should return for preprocessed ``pixels`` (3, SIZE, SIZE)."""
        return unit(pixels.reshape(-1) @ self.visual)

    def text_vector(self, ids: list[int], masked: bool = False) -> np.ndarray:
        """... for token ``ids`` (no padding): the mean over the padded context, or the mask."""
        padded = ids + [0] * (CONTEXT - len(ids))
        rows = self.embedding[ids if masked else padded]
        return unit(rows.mean(axis=0) @ self.projection)


def unit(vector: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = vector / np.linalg.norm(vector)
    return normalised


def visual_graph(
    tiny: TinyClip, *, name: str = "pixel_values", batch: str | int = "batch"
) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Flatten", [name], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "visual",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [batch, DIM])],
        [numpy_helper.from_array(tiny.visual, "w")],
    )
    return _model(graph)


def textual_graph(
    tiny: TinyClip,
    *,
    name: str = "input_ids",
    dtype: int = TensorProto.INT64,
    batch: str | int = "batch",
    with_mask: bool = False,
) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info(name, dtype, [batch, CONTEXT])]
    initializers = [
        numpy_helper.from_array(tiny.embedding, "table"),
        numpy_helper.from_array(tiny.projection, "proj"),
    ]
    nodes = [helper.make_node("Gather", ["table", name], ["tokens"], axis=0)]
    if with_mask:
        inputs.append(
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, CONTEXT])
        )
        initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
        initializers.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"))
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["tokens", "mask3"], ["kept"]),
            helper.make_node("ReduceSum", ["kept", "axis1"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
            helper.make_node("Div", ["summed", "count"], ["pooled"]),
        ]
    else:
        nodes.append(helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0))
    nodes.append(helper.make_node("MatMul", ["pooled", "proj"], ["text_embeds"]))
    graph = helper.make_graph(
        nodes,
        "textual",
        inputs,
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, [batch, DIM])],
        initializers,
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def write_tokenizer(path: Path) -> None:
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))


def flat_folder(root: Path, tiny: TinyClip, **config: object) -> Path:
    """A model folder in the flat layout; ``config`` overrides or adds config.json keys."""
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(visual_graph(tiny), root / "visual.onnx")
    onnx.save(textual_graph(tiny), root / "textual.onnx")
    write_tokenizer(root / "tokenizer.json")
    values: dict[str, object] = {"embed_dim": DIM, "image_size": SIZE, "context_length": CONTEXT}
    values.update(config)
    (root / "config.json").write_text(json.dumps(values), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny() -> TinyClip:
    return TinyClip()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny: TinyClip) -> Path:
    return flat_folder(tmp_path_factory.mktemp("clip") / "model", tiny)


@pytest.fixture(scope="module")
def encoder(folder: Path) -> ClipEncoder:
    return ClipEncoder(str(folder), threads=1)


def rgb(pixels: list[list[tuple[int, int, int]]]) -> Image.Image:
    return Image.fromarray(np.array(pixels, dtype=np.uint8), "RGB")


def by_hand(image: Image.Image, left: int, top: int, size: int) -> np.ndarray:
    """Crop at (left, top), /255, CLIP mean/std, channels first, with plain Python floats."""
    out = np.empty((3, size, size), dtype=np.float64)
    for c in range(3):
        for y in range(size):
            for x in range(size):
                value = image.getpixel((left + x, top + y))[c]  # type: ignore[index]
                out[c, y, x] = (value / 255.0 - OPENAI_MEAN[c]) / OPENAI_STD[c]
    return out


# preprocessing


def test_crop_and_normalise_exact_numbers() -> None:
    # 6 x 4: the short side is already 4, so no resize; the centre 4 columns are 1..4
    image = rgb([[(10 * x + y, 200 - 30 * x, 40 * y) for x in range(6)] for y in range(4)])
    got = preprocess(image, ClipConfig(image_size=4))
    assert got.shape == (3, 4, 4)
    assert got.dtype == np.float32
    # pixel (x=1, y=0) = (10, 170, 0): the top-left of the crop
    expected_first = [
        (10 / 255 - 0.48145466) / 0.26862954,
        (170 / 255 - 0.4578275) / 0.26130258,
        (0 / 255 - 0.40821073) / 0.27577711,
    ]
    np.testing.assert_allclose(got[:, 0, 0], expected_first, rtol=1e-6)
    np.testing.assert_allclose(got, by_hand(image, left=1, top=0, size=4), rtol=1e-5, atol=1e-6)


def test_centre_crop_rounds_like_torchvision() -> None:
    # 9 x 4 -> 5 spare columns; torchvision's int(round(2.5)) starts the crop at 2, not 3
    image = rgb([[(20 * x, 7 * y, 100) for x in range(9)] for y in range(4)])
    got = preprocess(image, ClipConfig(image_size=4))
    np.testing.assert_allclose(got, by_hand(image, left=2, top=0, size=4), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("width", "height", "resized", "box"),
    [
        (10, 20, (5, 10), (0, 2, 5, 7)),  # portrait: width -> 5, height int(5*20/10) = 10
        (20, 10, (10, 5), (2, 0, 7, 5)),  # landscape
        (7, 3, (11, 5), (3, 0, 8, 5)),  # height -> 5, width int(5*7/3) = 11, crop from round(3.0)
    ],
)
def test_shortest_side_resize_then_crop(
    width: int, height: int, resized: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    rng = np.random.default_rng(width * height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    got = preprocess(image, ClipConfig(image_size=5))
    step = image.resize(resized, Image.Resampling.BICUBIC).crop(box)
    np.testing.assert_allclose(got, by_hand(step, left=0, top=0, size=5), rtol=1e-5, atol=1e-6)


def test_squash_bilinear_and_own_statistics() -> None:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), "RGB")
    config = ClipConfig(
        image_size=4,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.25, 1.0),
        resize_mode="squash",
        interpolation="bilinear",
    )
    got = preprocess(image, config)
    step = np.asarray(image.resize((4, 4), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    expected = ((step - [0.5, 0.5, 0.5]) / [0.5, 0.25, 1.0]).transpose(2, 0, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_grayscale_and_rgba_become_rgb() -> None:
    gray = Image.fromarray(np.full((4, 4), 128, dtype=np.uint8), "L")
    got = preprocess(gray, ClipConfig(image_size=4))
    for c in range(3):
        np.testing.assert_allclose(got[c], (128 / 255 - OPENAI_MEAN[c]) / OPENAI_STD[c], rtol=1e-6)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 10))
    np.testing.assert_allclose(
        preprocess(rgba, ClipConfig(image_size=4)),
        preprocess(Image.new("RGB", (4, 4), (255, 0, 0)), ClipConfig(image_size=4)),
    )


# the encoder on the tiny model


def test_identity_and_dim_from_model(encoder: ClipEncoder) -> None:
    assert encoder.name == "clip"
    assert encoder.inputs == frozenset({"image", "text"})
    assert encoder.metric == "cosine"
    assert encoder.dim == DIM
    assert encoder.config == ClipConfig(image_size=SIZE, context_length=CONTEXT, embed_dim=DIM)


def test_images_match_the_graph_computed_by_hand(encoder: ClipEncoder, tiny: TinyClip) -> None:
    photos = [
        Image.open(SHARED_DATA / "photos" / "color" / n)
        for n in ("skimage_coffee.png", "skimage_rocket.jpg")
    ]
    vectors = encoder.encode_images(photos)
    assert vectors.shape == (2, DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    for photo, vector in zip(photos, vectors, strict=True):
        expected = tiny.image_vector(preprocess(photo, encoder.config))
        np.testing.assert_allclose(vector, expected, atol=1e-5)
    assert abs(float(vectors[0] @ vectors[1])) < 0.99  # two photos, two vectors


def test_tokens_are_wrapped_padded_and_truncated(encoder: ClipEncoder) -> None:
    ids, mask = encoder.tokenize(["A photo of a CAT", "", "a a a a a a a a", "a zebra"])
    assert ids.dtype == np.int64
    assert ids.tolist() == [
        [START, 4, 5, 6, 4, END],  # lower-cased by the encoder; the tokenizer does not
        [START, END, 0, 0, 0, 0],
        [START, 4, 4, 4, 4, END],  # 8 tokens cut to CONTEXT - 2, the end token kept
        [START, 4, UNK, END, 0, 0],
    ]
    assert mask.tolist() == [[1] * 6, [1, 1, 0, 0, 0, 0], [1] * 6, [1, 1, 1, 1, 0, 0]]


def test_texts_match_the_graph_computed_by_hand(encoder: ClipEncoder, tiny: TinyClip) -> None:
    vectors = encoder.encode(["a photo of a cat", "a dog", ""])
    assert vectors.shape == (3, DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    tokens = [[START, 4, 5, 6, 4, END], [START, 4, 8, END], [START, END]]  # the first truncated
    for ids, vector in zip(tokens, vectors, strict=True):
        np.testing.assert_allclose(vector, tiny.text_vector(ids), atol=1e-5)


def test_empty_batches(encoder: ClipEncoder) -> None:
    assert encoder.encode([]).shape == (0, DIM)
    assert encoder.encode_images([]).shape == (0, DIM)
    assert encoder.encode_images([]).dtype == np.float32


def test_bad_inputs_name_the_field(encoder: ClipEncoder) -> None:
    with pytest.raises(InvalidRequest) as text_error:
        encoder.encode(["fine", 3])  # type: ignore[list-item]
    assert text_error.value.field == "text"
    with pytest.raises(InvalidRequest) as image_error:
        encoder.encode_images([b"not decoded"])  # type: ignore[list-item]
    assert image_error.value.field == "image"


def test_more_inputs_than_one_call_takes(encoder: ClipEncoder) -> None:
    texts = [f"a {'cat' if i % 2 else 'dog'}" for i in range(150)]  # 3 calls of <= 64
    vectors = encoder.encode(texts)
    np.testing.assert_allclose(
        vectors[0::2], np.repeat(encoder.encode(["a dog"]), 75, axis=0), atol=1e-6
    )
    np.testing.assert_allclose(
        vectors[1::2], np.repeat(encoder.encode(["a cat"]), 75, axis=0), atol=1e-6
    )


def test_threads_get_the_same_vectors(encoder: ClipEncoder) -> None:
    photo = Image.open(SHARED_DATA / "photos" / "color" / "skimage_chelsea.png")
    photo.load()
    expected_image = encoder.encode_images([photo])
    expected_text = encoder.encode(["a photo of a cat"])
    results: list[tuple[np.ndarray, np.ndarray]] = []

    def work() -> None:
        for _ in range(20):
            results.append((encoder.encode_images([photo]), encoder.encode(["a photo of a cat"])))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40
    for image_vector, text_vector in results:
        np.testing.assert_array_equal(image_vector, expected_image)
        np.testing.assert_array_equal(text_vector, expected_text)


# other layouts and graph shapes


def test_immich_layout_with_fixed_batch_and_int32_tokens(tmp_path: Path, tiny: TinyClip) -> None:
    (tmp_path / "visual").mkdir()
    (tmp_path / "textual").mkdir()
    onnx.save(visual_graph(tiny, name="image", batch=1), tmp_path / "visual" / "model.onnx")
    onnx.save(
        textual_graph(tiny, name="text", dtype=TensorProto.INT32, batch=1),
        tmp_path / "textual" / "model.onnx",
    )
    write_tokenizer(tmp_path / "textual" / "tokenizer.json")
    open_clip_config = {
        "embed_dim": DIM,
        "vision_cfg": {"image_size": SIZE, "layers": 12},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": len(VOCAB)},
    }
    (tmp_path / "config.json").write_text(json.dumps(open_clip_config), encoding="utf-8")
    preprocess_cfg = {
        "size": [SIZE, SIZE],
        "mode": "RGB",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
    (tmp_path / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess_cfg))

    encoder = ClipEncoder(str(tmp_path))
    assert encoder.config == ClipConfig(
        image_size=SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        context_length=CONTEXT,
        embed_dim=DIM,
    )
    photos = [
        Image.open(SHARED_DATA / "photos" / "color" / n)
        for n in ("skimage_coffee.png", "sklearn_china.jpg")
    ]
    vectors = encoder.encode_images(photos)  # two rows through a graph of batch 1
    for photo, vector in zip(photos, vectors, strict=True):
        np.testing.assert_allclose(
            vector, tiny.image_vector(preprocess(photo, encoder.config)), atol=1e-5
        )
    texts = encoder.encode(["a cat", "a dog"])
    np.testing.assert_allclose(texts[0], tiny.text_vector([START, 4, 7, END]), atol=1e-5)
    np.testing.assert_allclose(texts[1], tiny.text_vector([START, 4, 8, END]), atol=1e-5)


def test_textual_graph_with_attention_mask(tmp_path: Path, tiny: TinyClip) -> None:
    folder = flat_folder(tmp_path, tiny)
    onnx.save(textual_graph(tiny, with_mask=True), folder / "textual.onnx")
    vector = ClipEncoder(str(folder)).encode(["a cat"])[0]
    np.testing.assert_allclose(vector, tiny.text_vector([START, 4, 7, END], masked=True), atol=1e-5)
    assert not np.allclose(vector, tiny.text_vector([START, 4, 7, END]), atol=1e-3)


# configuration errors


def test_no_model_path_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"clip_model_path \(SPYGLASS_CLIP_MODEL_PATH\)"):
        ClipEncoder()


@pytest.mark.parametrize(
    "missing", ["visual.onnx", "textual.onnx", "tokenizer.json", "config.json"]
)
def test_missing_file_names_the_setting_and_the_file(
    tmp_path: Path, tiny: TinyClip, missing: str
) -> None:
    folder = flat_folder(tmp_path, tiny)
    (folder / missing).unlink()
    with pytest.raises(ConfigError, match=r"clip_model_path \(SPYGLASS_CLIP_MODEL_PATH\)") as error:
        ClipEncoder(str(folder))
    assert f"has no {missing}" in str(error.value)


def test_path_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SPYGLASS_CLIP_MODEL_PATH.*is not a folder"):
        ClipEncoder(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"embed_dim": 16}, "returns 8-d, config.json embed_dim 16"),
        ({"image_size": None}, "no image_size"),
        ({"image_size": 5}, "does not take the inputs its config describes"),
        ({"image_mean": [0.5, 0.5]}, "image mean must be three numbers"),
        ({"resize_mode": "longest"}, "resize_mode 'longest' is not supported"),
        ({"context_length": 0}, "context_length must be a positive integer"),
    ],
)
def test_config_that_does_not_fit_the_model(
    tmp_path: Path, tiny: TinyClip, config: dict[str, object], message: str
) -> None:
    folder = flat_folder(tmp_path, tiny, **config)
    with pytest.raises(ConfigError, match=message):
        ClipEncoder(str(folder))


def test_tokenizer_without_clip_tokens(tmp_path: Path, tiny: TinyClip) -> None:
    folder = flat_folder(tmp_path, tiny)
    Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(
        str(folder / "tokenizer.json")
    )
    with pytest.raises(ConfigError, match=r"no <\|startoftext\|> token"):
        ClipEncoder(str(folder))
