"""Keras reference outputs for the authors' pretrained MesoNet weights (parity fixtures).

Rebuilds Meso4 and MesoInception4 in Keras exactly as the authors' ``classifiers.py``
(github.com/DariusAf/MesoNet) defines them, loads each of their four Keras 2.1.5 HDF5
weight files with Keras's own legacy-HDF5 loader, and writes the raw sigmoid output
(probability of REAL, the authors' convention: class folders ``df``=0, ``real``=1) on fixed
inputs to a JSON file. Our PyTorch port is tested against that file, so TensorFlow never
becomes a dependency of the project.

Setup (once, in a virtualenv outside the project):

    python3 -m venv /work/tfenv
    /work/tfenv/bin/pip install tensorflow-cpu h5py pillow numpy

(tested with tensorflow-cpu 2.21.0, Keras 3.15.1; Keras 3 reads the legacy Keras 2 HDF5
weights directly, no ``tf-keras`` needed.) Run from the repository root:

    /work/tfenv/bin/python tools/keras_reference.py --out tests/data/keras_reference.json

``--weights-dir`` and ``--images-dir`` default to ``../shared/reference/mesonet-keras/
{weights,test_images}`` relative to the repository root. Runs on CPU in a few seconds.

Weight loading: layers are given the file's own layer names (the file's ``conv2d_K``,
``batch_normalization_K`` and ``dense_K`` sorted by K are the creation order, i.e. the order
in which ``classifiers.py`` builds them) and loaded with ``model.load_weights(by_name=True)``.
Name-based loading matters for MesoInception4: several inception convolutions have identical
shapes (e.g. the 1x1 convs of the 4-channel branches), so a wrong order would load silently.
Afterwards every variable is checked against the HDF5 array, and a second copy loaded
topologically (by layer order) must give identical outputs.

Also recorded, under ``logits``: the same network's pre-sigmoid output (the final Dense with
a linear activation), because the sigmoid saturates to exactly 1.0 in float32 for
MesoInception4 on most inputs, where a probability comparison would test nothing.
Inputs are NHWC float32 in [0, 1]; a PyTorch consumer transposes them to NCHW. oneDNN is
turned off (``TF_ENABLE_ONEDNN_OPTS=0``) so reruns are bit-identical; with it on, outputs move
by < 2e-7 (probabilities) and < 4e-5 (logits of magnitude up to ~90).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections import deque
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain kernels: reproducible round-off

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from PIL import Image  # noqa: E402

IMGWIDTH = 256
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared" / "reference" / "mesonet-keras"

# file stem -> (our model name, architecture)
WEIGHT_FILES = {
    "Meso4_DF": "meso4",
    "Meso4_F2F": "meso4",
    "MesoInception_DF": "mesoinception4",
    "MesoInception_F2F": "mesoinception4",
}
RANDOM_SEEDS = (0, 1)
RANDOM_BATCH = 4
STRUCTURED_N = 2
WEIGHTED_KINDS = ("conv2d", "batch_normalization", "dense")


# ----------------------------------------------------------------------------- weights file


def _h5_weighted_layers(path: Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> weight arrays (in the file's ``weight_names`` order), weighted layers only."""
    out: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        group = f.get("model_weights", f)
        for raw in group.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            weight_names = group[name].attrs.get("weight_names", [])
            if len(weight_names):
                out[name] = [
                    np.asarray(group[name][w.decode() if isinstance(w, bytes) else w])
                    for w in weight_names
                ]
    return out


class FileNames:
    """Hands out the weight file's layer names per kind, in the order the layers were created.

    Keras 2 auto-names layers ``<kind>_<K>`` with a per-kind counter that increments at
    construction, so sorting the file's names by K recovers the order ``classifiers.py``
    builds them in (the counters need not start at 1: Meso4_DF starts at ``conv2d_5``).
    """

    def __init__(self, layer_names: list[str]) -> None:
        self._queues: dict[str, deque[str]] = {}
        for kind in WEIGHTED_KINDS:
            pattern = re.compile(rf"^{kind}(?:_(\d+))?$")
            matched = [(int(m.group(1) or 0), n) for n in layer_names if (m := pattern.match(n))]
            self._queues[kind] = deque(n for _, n in sorted(matched))
        unknown = set(layer_names) - {n for q in self._queues.values() for n in q}
        if unknown:
            raise ValueError(f"weighted layers of unexpected kind in file: {sorted(unknown)}")

    def next(self, kind: str) -> str:
        """The next name of ``kind`` in creation order."""
        if not self._queues[kind]:
            raise ValueError(f"architecture has more {kind} layers than the weights file")
        return self._queues[kind].popleft()

    def check_all_used(self) -> None:
        left = [n for q in self._queues.values() for n in q]
        if left:
            raise ValueError(f"weights file has layers the architecture lacks: {left}")


# ---------------------------------------------------------------------------- architectures
# ``names`` None: let Keras name the layers (used for the order-based cross-check).


def _name(names: FileNames | None, kind: str) -> str | None:
    return None if names is None else names.next(kind)


def _conv(names: FileNames | None, filters: int, size: int, dilation: int = 1) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        (size, size),
        dilation_rate=dilation,
        strides=1,
        padding="same",
        activation="relu",
        name=_name(names, "conv2d"),
    )


def _bn(names: FileNames | None) -> layers.BatchNormalization:
    # Keras 2.1.5 defaults, identical in Keras 3: epsilon=1e-3, momentum=0.99.
    return layers.BatchNormalization(name=_name(names, "batch_normalization"))


def _head(names: FileNames | None, x, final_activation: str):
    y = layers.Flatten()(x)
    y = layers.Dropout(0.5)(y)
    y = layers.Dense(16, name=_name(names, "dense"))(y)
    y = layers.LeakyReLU(negative_slope=0.1)(y)
    y = layers.Dropout(0.5)(y)
    return layers.Dense(1, activation=final_activation, name=_name(names, "dense"))(y)


def build_meso4(names: FileNames | None, final_activation: str = "sigmoid") -> keras.Model:
    """Meso4 as in the authors' classifiers.py."""
    x = layers.Input(shape=(IMGWIDTH, IMGWIDTH, 3))
    h = x
    for filters, size, pool in ((8, 3, 2), (8, 5, 2), (16, 5, 2), (16, 5, 4)):
        h = _conv(names, filters, size)(h)
        h = _bn(names)(h)
        h = layers.MaxPooling2D(pool_size=(pool, pool), padding="same")(h)
    return keras.Model(inputs=x, outputs=_head(names, h, final_activation), name="meso4")


def _inception(names: FileNames | None, x, a: int, b: int, c: int, d: int):
    # Creation order matters (it fixes the file's layer numbering): a, b 1x1, b 3x3, c 1x1,
    # c 3x3 dilated 2, d 1x1, d 3x3 dilated 3.
    x1 = _conv(names, a, 1)(x)
    x2 = _conv(names, b, 1)(x)
    x2 = _conv(names, b, 3)(x2)
    x3 = _conv(names, c, 1)(x)
    x3 = _conv(names, c, 3, dilation=2)(x3)
    x4 = _conv(names, d, 1)(x)
    x4 = _conv(names, d, 3, dilation=3)(x4)
    return layers.Concatenate(axis=-1)([x1, x2, x3, x4])


def build_mesoinception4(names: FileNames | None, final_activation: str = "sigmoid") -> keras.Model:
    """MesoInception4 as in the authors' classifiers.py."""
    x = layers.Input(shape=(IMGWIDTH, IMGWIDTH, 3))
    h = _inception(names, x, 1, 4, 4, 2)
    h = _bn(names)(h)
    h = layers.MaxPooling2D(pool_size=(2, 2), padding="same")(h)
    h = _inception(names, h, 2, 4, 4, 2)
    h = _bn(names)(h)
    h = layers.MaxPooling2D(pool_size=(2, 2), padding="same")(h)
    for pool in (2, 4):
        h = _conv(names, 16, 5)(h)
        h = _bn(names)(h)
        h = layers.MaxPooling2D(pool_size=(pool, pool), padding="same")(h)
    return keras.Model(inputs=x, outputs=_head(names, h, final_activation), name="mesoinception4")


BUILDERS = {"meso4": build_meso4, "mesoinception4": build_mesoinception4}


def load_model(path: Path, arch: str, final_activation: str = "sigmoid") -> keras.Model:
    """Build ``arch`` named after ``path``'s layers, load by name, verify every variable.

    ``final_activation="linear"`` gives the same network without its last sigmoid (logits).
    """
    stored = _h5_weighted_layers(path)
    names = FileNames(list(stored))
    model = BUILDERS[arch](names, final_activation)
    names.check_all_used()
    model.load_weights(str(path), by_name=True)
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        expected = stored[layer.name]
        if len(current) != len(expected) or not all(
            np.array_equal(c, e) for c, e in zip(current, expected, strict=True)
        ):
            raise RuntimeError(f"{path.name}: layer {layer.name} not loaded from the file")
    return model


def load_model_topological(path: Path, arch: str) -> keras.Model:
    """Same architecture with Keras's default names, loaded by layer order (cross-check)."""

    model = BUILDERS[arch](None)
    model.load_weights(str(path))
    return model


# ----------------------------------------------------------------------------------- inputs


def random_inputs() -> np.ndarray:
    return np.concatenate(
        [
            np.random.default_rng(seed).random(
                (RANDOM_BATCH, IMGWIDTH, IMGWIDTH, 3), dtype=np.float32
            )
            for seed in RANDOM_SEEDS
        ]
    )


def structured_inputs() -> np.ndarray:
    h = np.arange(IMGWIDTH, dtype=np.float64)[:, None, None]
    w = np.arange(IMGWIDTH, dtype=np.float64)[None, :, None]
    c = np.arange(3, dtype=np.float64)[None, None, :]
    return np.stack(
        [
            0.5 + 0.5 * np.sin(0.05 * (h + 1) * (c + 1) + 0.03 * w * (i + 1))
            for i in range(STRUCTURED_N)
        ]
    ).astype(np.float32)


def image_paths(images_dir: Path) -> list[Path]:
    paths = sorted(images_dir.glob("*/*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no */*.jpg under {images_dir}")
    return paths


def load_images_keras(paths: list[Path]) -> np.ndarray:
    """The authors' pipeline: Keras load_img(target_size) with its default nearest resize, /255."""
    return np.stack(
        [
            keras.utils.img_to_array(
                keras.utils.load_img(p, target_size=(IMGWIDTH, IMGWIDTH)), dtype="float32"
            )
            / 255.0
            for p in paths
        ]
    ).astype(np.float32)


def load_images_bilinear(paths: list[Path]) -> np.ndarray:
    """PIL RGB, bilinear resize to 256x256, /255."""
    return np.stack(
        [
            np.asarray(
                Image.open(p).convert("RGB").resize((IMGWIDTH, IMGWIDTH), Image.BILINEAR),
                dtype=np.float32,
            )
            / 255.0
            for p in paths
        ]
    ).astype(np.float32)


# ------------------------------------------------------------------------------------ main


def predict(model: keras.Model, x: np.ndarray) -> list[float]:
    out = model(x, training=False).numpy()
    assert out.shape == (len(x), 1), out.shape
    return [float(v) for v in out[:, 0]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests/data/keras_reference.json")
    parser.add_argument("--weights-dir", type=Path, default=SHARED / "weights")
    parser.add_argument("--images-dir", type=Path, default=SHARED / "test_images")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads")
    args = parser.parse_args(argv)

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    paths = image_paths(args.images_dir)
    rel = [p.relative_to(args.images_dir).as_posix() for p in paths]
    inputs = {
        "random": random_inputs(),
        "structured": structured_inputs(),
        "test_images": load_images_keras(paths),
        "test_images_bilinear": load_images_bilinear(paths),
    }

    models: dict[str, dict] = {}
    for stem, arch in WEIGHT_FILES.items():
        path = args.weights_dir / f"{stem}.h5"
        model = load_model(path, arch)
        entry: dict = {
            "arch": arch,
            "weights_file": path.name,
            "weights_sha256": sha256(path),
            "trainable_params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
            "non_trainable_params": int(
                sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
            ),
        }

        def keyed(key: str, values: list[float]) -> list[float] | dict[str, float]:
            return dict(zip(rel, values, strict=True)) if key.startswith("test_images") else values

        logit_model = load_model(path, arch, final_activation="linear")
        topo = load_model_topological(path, arch)  # Keras's order-based loader, as a cross-check
        entry["logits"] = {}
        for key, x in inputs.items():
            probs = predict(model, x)
            logits = predict(logit_model, x)
            if not np.array_equal(predict(topo, x), probs):
                raise RuntimeError(f"{stem}/{key}: topological and by-name loading disagree")
            if not np.allclose(1 / (1 + np.exp(-np.asarray(logits))), probs, rtol=0, atol=1e-6):
                raise RuntimeError(f"{stem}/{key}: sigmoid(logit) differs from the output")
            entry[key] = keyed(key, probs)
            entry["logits"][key] = keyed(key, logits)

        models[stem] = entry
        print(f"{stem}: {entry['trainable_params']} trainable params", file=sys.stderr)
        for name, p in entry["test_images"].items():
            b = entry["test_images_bilinear"][name]
            lg = entry["logits"]["test_images"][name]
            print(
                f"  {name:22s} p_real nearest={p:.6f} (logit {lg:+.3f}) bilinear={b:.6f}",
                file=sys.stderr,
            )

    result = {
        "generator": "tools/keras_reference.py",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "output": "raw sigmoid output of the Keras model = probability of REAL "
        "(authors' convention; fake_probability = 1 - this); models.*.logits holds the same "
        "network's pre-sigmoid output (final Dense with linear activation), which stays "
        "informative where the sigmoid saturates at 1.0 in float32",
        "layout": "all inputs NHWC float32 (N, 256, 256, 3) in [0, 1]; transpose to NCHW for torch",
        "inputs": {
            "random": "np.concatenate([np.random.default_rng(seed).random((4, 256, 256, 3), "
            "dtype=np.float32) for seed in (0, 1)]): 8 inputs, seed 0 first",
            "structured": "x[i, h, w, c] = 0.5 + 0.5 * sin(0.05 * (h + 1) * (c + 1) + "
            "0.03 * w * (i + 1)) for i in (0, 1), computed in float64 then cast to float32",
            "test_images": "authors' pipeline: keras.utils.load_img(path, target_size=(256, 256)) "
            "(PIL, default interpolation 'nearest'), img_to_array float32, / 255; keys are "
            "paths relative to --images-dir",
            "test_images_bilinear": "PIL Image.open(p).convert('RGB').resize((256, 256), "
            "Image.BILINEAR), float32, / 255",
        },
        "models": models,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
