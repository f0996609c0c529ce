"""Verdict words agree with their numbers, for any probability, threshold and band."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesonet.models.calibration import default_bands, verdict_for

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
inner = st.floats(min_value=0.001, max_value=0.999, allow_nan=False)


@given(p=unit, threshold=inner, card_threshold=inner, width=st.floats(0.0, 0.4))
def test_a_verdict_never_contradicts_its_probability(p, threshold, card_threshold, width):
    band = [max(0.0, card_threshold - width), min(1.0, card_threshold + width)]
    verdict = verdict_for(p, threshold, {"uncertain": band}, card_threshold)
    if verdict == "likely forged":
        assert p >= 0.5 and p >= threshold
    elif verdict == "likely real":
        assert p < 0.5 and p < threshold
    else:
        assert verdict == "uncertain"


def test_the_default_models_forged_samples_read_uncertain_not_forged():
    """The case that prompted the rule: threshold 0.449 with its band [0.438, 0.449] called
    0.455 "likely forged"; under one half it is uncertain, over the band's top forged."""
    bands = {"uncertain": [0.438, 0.449]}
    assert verdict_for(0.455, 0.449, bands, 0.449) == "uncertain"
    assert verdict_for(0.5, 0.449, bands, 0.449) == "likely forged"
    assert verdict_for(0.437, 0.449, bands, 0.449) == "likely real"
    assert verdict_for(0.44, 0.449, bands, 0.449) == "uncertain"


def test_a_threshold_over_one_half_keeps_the_band_above_it():
    bands = default_bands(0.7)
    assert verdict_for(0.69, 0.7, bands, 0.7) == "uncertain"
    assert verdict_for(0.4, 0.7, bands, 0.7) == "likely real"
    assert verdict_for(0.95, 0.7, bands, 0.7) == "likely forged"
