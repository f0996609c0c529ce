"""Training configs and checkpoints as untrusted input (issue 25): one validator, run before any
data is read, with the model card's rules for names; every refusal one line, exit 2.

A Hypothesis test feeds random TOML configs (options and [[sources]]) and expects a config or
one line of TrainingError, never another exception.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mesonet.training import checkpoint as checkpoint_module
from mesonet.training.checkpoint import load_checkpoint
from mesonet.training.config import TrainConfig, from_mapping, resolve_config
from mesonet.training.errors import TrainingError
from mesonet.training.sources import SourceSpec, check_sources, load_sources


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``mesonet ARGS`` as a user runs it: (exit code, what it printed on stderr)."""
    from mesonet.cli import main

    monkeypatch.setattr("sys.argv", ["mesonet", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.fixture
def no_data_read(monkeypatch):
    """Fails the test if training gets as far as reading its data."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the data was read before the config was checked")

    monkeypatch.setattr("mesonet.training.loop.load_run_data", refuse)
    monkeypatch.setattr("mesonet.training.loop.data_folder", refuse)


def toml(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


# --------------------------------------------------------------------------- numbers (item 12)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("lr = inf", "lr must be a finite number"),
        ("lr = nan", "lr must be a finite number"),
        ("weight_decay = nan", "weight_decay must be a finite number"),
        ("weight_decay = -1.0", "weight_decay must be 0 or more"),
        ("min_lr = nan", "min_lr must be a finite number"),
        ("min_lr = -inf", "min_lr must be a finite number"),
        ("max_zip_ratio = inf", "max_zip_ratio must be a finite number"),
        ("body_lr_scale = inf", "body_lr_scale must be a finite number"),
        ("lr_factor = nan", "lr_factor must be a finite number"),
        ("seed = 99999999999999999999999", "seed must be a 64-bit integer"),
        ("lr = 1" + "0" * 400, "lr must be a finite number"),
        ("workers = 100000", "workers must be at most"),
    ],
)
def test_config_numbers_must_be_finite_and_in_range(tmp_path, line, words):
    with pytest.raises(TrainingError, match=words) as caught:
        resolve_config(toml(tmp_path / "c.toml", line + "\n"))
    assert "\n" not in str(caught.value)


def test_a_config_with_infinite_lr_is_refused_before_any_data_is_read(
    tmp_path, monkeypatch, capsys, no_data_read
):
    config = toml(tmp_path / "c.toml", 'lr = inf\n[[sources]]\npath = "data"\n')
    code, err = run_cli(monkeypatch, capsys, "train", "--config", str(config), "-o", "run")
    assert code == 2 and err.count("\n") == 1 and "lr must be a finite number" in err
    assert "Traceback" not in err


def test_direct_configs_are_checked_the_same_way():
    for bad in ({"lr": math.inf}, {"weight_decay": math.nan}, {"min_lr": math.nan}):
        with pytest.raises(TrainingError, match="finite number"):
            TrainConfig(**bad)
    with pytest.raises(TrainingError, match="must be a number"):
        TrainConfig(lr="0.1")  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="must be an integer"):
        from_mapping({"epochs": 2.5})


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "words"),
    [("   ", "is empty"), ("a\nb", "control characters"), ("x" * 300, "over the 200")],
)
def test_a_config_name_the_card_would_refuse_is_refused_at_config_time(tmp_path, name, words):
    with pytest.raises(TrainingError, match=words) as caught:
        from_mapping({"name": name})
    assert "\n" not in str(caught.value) and "cannot name a model" in str(caught.value)
    assert from_mapping({"name": ""}).name == ""  # the default: "<arch>.<out folder>"
    assert from_mapping({"name": "meso4.mine"}).name == "meso4.mine"


def test_a_source_name_follows_the_card_rules():
    with pytest.raises(TrainingError, match="its name is empty"):
        SourceSpec("data", name="  ")
    with pytest.raises(TrainingError, match="needs a path"):
        SourceSpec("   ")
    with pytest.raises(TrainingError, match="finite number"):
        SourceSpec("data", weight=math.inf)


def test_train_checks_the_config_and_the_cards_name_before_reading_data(tmp_path, no_data_read):
    from mesonet.training import train

    (tmp_path / "data").mkdir()
    config = TrainConfig()
    config.lr = math.inf  # changed after it was made: train() checks it again
    with pytest.raises(TrainingError, match="lr must be a finite number"):
        train(tmp_path / "data", tmp_path / "run", config)
    # no name given: the card would be called "meso4.<folder>", which it must accept
    with pytest.raises(TrainingError, match="card's name .* would be refused .*control"):
        train(tmp_path / "data", tmp_path / "run\nx", TrainConfig())
    assert not (tmp_path / "run\nx").exists()


# --------------------------------------------------------------------------- files


def test_a_non_utf8_config_is_one_line_exit_2(tmp_path, monkeypatch, capsys, no_data_read):
    config = toml(tmp_path / "c.toml", b'name = "caf\xe9"\n')
    with pytest.raises(TrainingError, match=r"not UTF-8 text \(byte 11 is 0xe9\)"):
        resolve_config(config)
    code, err = run_cli(monkeypatch, capsys, "train", "d", "--config", str(config), "-o", "r")
    assert code == 2 and err.count("\n") == 1 and "not UTF-8" in err


def test_unreadable_tomls_are_one_line(tmp_path):
    cases = {
        "deep.toml": "a = " + "[" * 5000 + "]" * 5000,
        "digits.toml": "epochs = 1" + "0" * 5000,
        "bad.toml": "lr = = 1",
    }
    for name, text in cases.items():
        with pytest.raises(TrainingError) as caught:
            resolve_config(toml(tmp_path / name, text))
        assert "\n" not in str(caught.value) and name in str(caught.value)
    with pytest.raises(TrainingError, match="is a folder"):
        resolve_config(tmp_path)


def test_a_config_whose_sources_are_all_holdouts_says_so(
    tmp_path, monkeypatch, capsys, no_data_read
):
    config = toml(tmp_path / "c.toml", '[[sources]]\npath = "v"\nname = "v"\nholdout = true\n')
    with pytest.raises(TrainingError, match="every source is a holdout"):
        check_sources(load_sources(config))
    code, err = run_cli(monkeypatch, capsys, "train", "--config", str(config), "-o", "run")
    assert code == 2 and err.count("\n") == 1
    assert "every source is a holdout (v)" in err and "give [[sources]]" not in err


# --------------------------------------------------------------------------- checkpoints


def test_a_corrupt_checkpoint_is_one_line_without_torchs_unsafe_advice(tmp_path):
    obj = tmp_path / "obj.pt"
    torch.save({"layer": torch.nn.Linear(1, 1)}, obj)  # a pickled module: refused
    zipped = tmp_path / "cut.pt"
    zipped.write_bytes(obj.read_bytes()[:200])
    noise = tmp_path / "noise.pt"
    noise.write_bytes(pickle.dumps([1, 2]) + b"\x00" * 10)
    for path in (obj, zipped, noise):
        with pytest.raises(TrainingError) as caught:
            load_checkpoint(path)
        text = str(caught.value)
        assert "\n" not in text and "weights_only" not in text and "\x1b" not in text, text
        assert text.startswith(str(path))
    with pytest.raises(TrainingError, match="never unpickled"):
        load_checkpoint(obj)


def test_an_empty_checkpoint_says_it_is_empty(tmp_path):
    empty = tmp_path / "last.pt"
    empty.touch()
    with pytest.raises(TrainingError, match=r"is empty \(0 bytes\)") as caught:
        load_checkpoint(empty)
    assert not str(caught.value).endswith("()")


def test_a_checkpoint_missing_its_parts_is_named_damaged(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": checkpoint_module.CHECKPOINT_FORMAT, "epoch": 1}, path)
    with pytest.raises(TrainingError, match="damaged mesonet checkpoint .*config"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- fuzzing


def _toml_value(value) -> str:
    """``value`` spelled in TOML (floats as TOML spells nan and inf)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = (c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in value)
        return '"' + "".join(escaped) + '"'
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


FIELDS = sorted(f for f in TrainConfig.__dataclass_fields__)
VALUES = st.recursive(
    st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, 2, 8, 64, -1])
    | st.floats()
    | st.sampled_from([0.0, 0.1, 0.5, 1e-3, 1.0, 200.0])
    | st.text(max_size=6)
    | st.sampled_from(["meso4", "youden", "min", "none", "bce", "fp32", "plateau", "  "]),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=4,
)
SOURCE_KEYS = ["path", "weight", "holdout", "name", "val_fraction", "max_val", "other"]
CHOICES = {
    "arch": ["meso4", "meso4w"],
    "loss": ["bce", "mse"],
    "balance": ["weight", "none"],
    "augment": ["none", "light"],
    "precision": ["fp32"],
    "threshold_rule": ["youden", "eer"],
    "schedule": ["plateau", "step"],
    "synthetic": ["none", "sbi"],
    "select": ["min", "mean", " "],
    "name": ["", "meso4.mine", "   ", "a\tb"],
    "init": ["", " "],
}


def plausible(key: str):
    """Values of ``key``'s own type, mostly in range (so some configs are accepted)."""
    kind = type(TrainConfig.__dataclass_fields__[key].default)
    if key in CHOICES:
        return st.sampled_from(CHOICES[key])
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(0, 64) | st.sampled_from([-1, 2**63, 2**64])
    if kind is float:
        return st.floats(0.01, 0.99) | st.sampled_from([math.nan, math.inf, -1.0, 0.0, 1e308])
    return VALUES


@st.composite
def toml_configs(draw) -> str:
    lines = []
    keys = draw(st.lists(st.sampled_from([*FIELDS, "bogus"]), max_size=6, unique=True))
    options = {
        key: draw(plausible(key) if key in FIELDS and draw(st.integers(0, 5)) else VALUES)
        for key in keys
    }
    if draw(st.booleans()):
        lines.append("[train]")
    lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()]
    for _ in range(draw(st.integers(0, 3))):
        source = draw(st.dictionaries(st.sampled_from(SOURCE_KEYS), VALUES, max_size=4))
        lines.append("[[sources]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in source.items()]
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 9)) == 0:  # now and then a byte or two off
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["=", "[", '"', "\x00", "\udcff"])) + text[at:]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=toml_configs())
def test_random_toml_configs_load_or_fail_in_one_line(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "fuzz.toml"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    try:
        config = resolve_config(path)
        sources = load_sources(path)
        if sources:
            check_sources(sources)
    except TrainingError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        event(f"refused: {message.split(': ')[-1][:30]}")
        return
    event("accepted")
    config.validate()
    for key in ("lr", "min_lr", "weight_decay", "lr_factor", "max_zip_ratio"):
        assert math.isfinite(getattr(config, key))
    assert config.name == "" or config.name.strip()
