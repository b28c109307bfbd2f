"""data.source = "tfds": a TFDS dataset prepared here in the array_record format (no download, no
TensorFlow: tensorflow-datasets 4.9 writes it with numpy and PIL), read by index.

Fast: the field mapping (coco_captions' `captions/text` list → NAME and NAME_0…k) against the
examples as generated. Slow: training through `data.source` and evaluating on the test split.
"""
import io
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers.tiny import tiny_config

tfds = pytest.importorskip("tensorflow_datasets")

from bigvl.data.records import decode_example, write_records  # noqa: E402
from bigvl.data.tfds_source import TfdsSource  # noqa: E402
from tests.helpers.fake_download import COLOURS, PLACES  # noqa: E402


def _example(i: int):
    colour, place = list(COLOURS)[i % 8], i % 4
    pixels = np.empty((40, 40, 3), np.uint8)
    pixels[:] = COLOURS[colour]
    y, x = divmod(place, 2)
    pixels[y * 20 + 2:y * 20 + 18, x * 20 + 2:x * 20 + 18] = 128
    pixels[0, :2, 0] = i % 256, i // 256  # every image's bytes differ
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    texts = [f"a {colour} image with a box at the {PLACES[place]}", f"{colour} background", f"box {PLACES[place]}"]
    return out.getvalue(), {"image": out.getvalue(), "image/id": i,
                            "captions": {"text": texts, "id": [3 * i, 3 * i + 1, 3 * i + 2]}}


class TinyCocoCaptions(tfds.core.GeneratorBasedBuilder):
    """coco_captions' features (image, image/id, captions/{text,id}) at a few examples."""
    # A one-part module name: for a dotted one (tests.test_tfds_source) tfds looks for checksum files
    # inside the package, through importlib_resources, which this fixture needs neither of.
    __module__ = "test_tfds_source"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "image/id": np.int64,
            "captions": tfds.features.Sequence({"text": tfds.features.Text(), "id": np.int64})}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 96), "test": self._generate_examples(1000, 32)}

    def _generate_examples(self, start, count):
        for i in range(start, start + count):
            yield i, _example(i)[1]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    TinyCocoCaptions(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def data_config(c, data_dir, split="train"):
    c.data.source = "tfds"
    c.data.tfds_name, c.data.tfds_split, c.data.tfds_data_dir = "tiny_coco_captions", split, str(data_dir)
    c.data.tfds_captions = ["short=captions/text"]
    c.data.train_paths = []
    return c


def test_examples_map_to_records_without_tensorflow(tfds_dir, tmp_path):
    source = TfdsSource(data_config(tiny_config(tmp_path), tfds_dir, "test").data)
    assert len(source) == 32
    seen = set()
    for index in range(len(source)):
        _, data = source[index]
        record = decode_example(data)
        image_id = int(np.argmax([record["image"] == _example(i)[0] for i in range(1000, 1032)])) + 1000
        image, want = _example(image_id)
        assert record["image"] == image  # the stored JPEG bytes, undecoded
        texts = want["captions"]["text"]
        assert record["captions"] == {"short": texts[0], **{f"short_{k}": t for k, t in enumerate(texts)}}
        seen.add(image_id)
    assert len(seen) == 32
    assert "tensorflow" not in sys.modules
    c = data_config(tiny_config(tmp_path), tfds_dir)
    c.data.tfds_name = "no_such_dataset"
    with pytest.raises(FileNotFoundError, match="data.tfds_name"):
        TfdsSource(c.data)


@pytest.mark.slow
def test_train_through_data_source_and_evaluate(tfds_dir, tmp_path):
    from bigvl.config import validate
    from bigvl.train.loop import train_and_evaluate
    c = data_config(tiny_config(tmp_path, total_steps=20, ckpt_steps=20, log_steps=5, batch_size=16), tfds_dir)
    c.data.tokenizer = str(tmp_path / "tok.model")
    from bigvl.data.tokenizer import train_tokenizer
    train_tokenizer([t for i in range(96) for t in _example(i)[1]["captions"]["text"]], tmp_path / "tok", 512)
    c.data.tfds_alt_key = "captions/text"  # the first of a list: coco's first caption as the alt-text
    c.data.caption_strategy, c.data.uniform_fields = "uniform", ["alt", "short_1", "short_2"]
    test = TfdsSource(data_config(tiny_config(tmp_path), tfds_dir, "test").data)
    write_records(str(tmp_path / "test.array_record"), (test[i][1] for i in range(len(test))))
    c.evals.retrieval.update(split=str(tmp_path / "test.array_record"), field="short")
    validate(c)
    metrics = train_and_evaluate(c, str(tmp_path / "run"))
    assert 0.0 <= metrics["retrieval/t2i_r1"] <= 1.0 and np.isfinite(metrics["retrieval/i2t_r1"])


def test_source_keys_are_checked(tmp_path):
    from bigvl.config import ConfigError, validate
    c = tiny_config(tmp_path)
    c.data.source = "tfrecord"
    with pytest.raises(ConfigError, match="data.source"):
        validate(c)
    c.data.source = "tfds"
    with pytest.raises(ConfigError, match="data.tfds_name"):
        validate(c)
    c.data.tfds_name, c.data.train_paths = "coco_captions", []
    validate(c)  # no train_paths needed
    from bigvl.data.tfds_source import parse_captions
    assert parse_captions(["short=captions/text"]) == [("short", "captions/text")]
    with pytest.raises(ValueError, match="data.tfds_captions"):
        parse_captions(["captions/text"])
