"""Each corpus's dimensional ratings brought to the model's [0, 1]: the mapping, missing ratings, and ratings beyond
the scale named by utterance."""

from __future__ import annotations

import math

import pytest

from dataset_scripts.dimensions import CORPUS_SCALES, UNIT_SCALE, DimensionScale, parse_scale


def test_iemocap_and_msp_podcast_ratings_map_linearly_onto_0_1():
    iemocap = CORPUS_SCALES["iemocap"].to_unit([1.0, 3.0, 5.0, 2.5], list("abcd"), "valence", "IEMOCAP")
    assert iemocap == [0.0, 0.5, 1.0, 0.375]
    msp = CORPUS_SCALES["msp_podcast"].to_unit([1.0, 4.0, 7.0], list("abc"), "arousal", "MSP-Podcast")
    assert msp == [0.0, 0.5, 1.0]


def test_iemocap_averages_beyond_its_scale_are_clipped_and_missing_ratings_stay_missing():
    mapped = CORPUS_SCALES["iemocap"].to_unit([0.5, 5.5, None, math.nan], list("abcd"), "arousal", "IEMOCAP")
    assert mapped[:2] == [0.0, 1.0]
    assert math.isnan(mapped[2]) and math.isnan(mapped[3])


def test_ratings_beyond_the_scale_are_refused_naming_the_utterances():
    with pytest.raises(ValueError) as raised:
        CORPUS_SCALES["msp_podcast"].to_unit([4.0, 7.5, 0.0, math.inf], ["ok", "u1", "u2", "u3"], "valence", "MSP")
    message = str(raised.value)
    assert "MSP: 3 valence rating(s) outside its scale 1-7" in message
    assert "u1 (7.5)" in message and "u2 (0)" in message and "u3 (inf)" in message and "ok" not in message
    with pytest.raises(ValueError, match=r"--dimension_scale LOW,HIGH"):
        UNIT_SCALE.to_unit([3.0], ["x"], "arousal", "my dataset")


def test_a_stated_scale_is_parsed_and_a_malformed_one_refused():
    assert parse_scale("1, 5") == DimensionScale(1.0, 5.0)
    for text in ("1", "1,2,3", "low,high", "5,1"):
        with pytest.raises(ValueError, match="LOW,HIGH|low < high"):
            parse_scale(text)
