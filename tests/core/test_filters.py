import pytest
from pydantic import ValidationError

from autods.core.filters import Filters, check_clip, check_image, check_text, detect_language


def test_empty_spec_filters_nothing():
    spec = Filters()
    assert spec.as_params() is None
    assert check_image(spec, 1, 50_000, 10**9, None) is None
    assert check_text(spec, 0, 0, None) is None


def test_image_bounds_report_the_first_failure_with_its_value():
    spec = Filters(min_side=64, max_side=4096, max_aspect=3.0, min_bytes=100)
    failed = check_image(spec, 640, 32, 5_000, "a cat")
    assert (failed.reason, failed.value) == ("filter:min_side", 32)
    assert failed.detail == "min_side=32 (min 64)"
    failed = check_image(spec, 640, 100, 5_000, None)
    assert failed.reason == "filter:aspect" and failed.value == pytest.approx(6.4)
    assert check_image(spec, 300, 200, 99, None).reason == "filter:bytes"
    assert check_image(spec, 300, 200, 5_000, None) is None
    # Portrait and landscape are bounded alike.
    assert check_image(spec, 100, 640, 5_000, None).reason == "filter:aspect"


def test_caption_and_text_lengths():
    spec = Filters(min_caption_len=5, max_text_len=10)
    assert check_image(spec, 100, 100, 10, "cat").reason == "filter:caption_len"
    assert check_image(spec, 100, 100, 10, None).value == 0
    assert check_text(spec, 11, 11, None).reason == "filter:text_len"
    assert check_text(spec, 10, 10, None) is None


def test_language_filter_on_real_detection():
    spec = Filters(languages="en, de")
    assert spec.languages == ("en", "de")
    english = detect_language("The committee will meet again next week to discuss the budget.")
    french = detect_language("Le comité se réunira de nouveau la semaine prochaine.")
    assert english[0] == "en" and french[0] == "fr"
    assert check_text(spec, 60, 60, english) is None
    failed = check_text(spec, 50, 50, french)
    assert (failed.reason, failed.value) == ("filter:language", "fr")
    unsure = check_text(Filters(languages=["en"], min_language_score=0.99), 5, 5, ("en", 0.6))
    assert unsure.reason == "filter:language_score"


def test_clip_floor():
    spec = Filters(min_clip_score=0.2)
    assert check_clip(spec, 0.19).reason == "filter:clip_score"
    assert check_clip(spec, 0.2) is None
    assert check_clip(Filters(), -1.0) is None


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "filters.yaml"
    path.write_text("filters:\n  min_side: 128\n  languages: [en]\n  max_aspect: 2.5\n")
    spec = Filters.load(path, min_side=256, max_bytes=None)
    assert (spec.min_side, spec.languages, spec.max_aspect) == (256, ("en",), 2.5)
    assert spec.as_params() == {"min_side": 256, "max_aspect": 2.5, "languages": ["en"]}
    assert Filters.model_validate(spec.as_params()) == spec


@pytest.mark.parametrize("doc", [{"min_sides": 3}, {"min_side": 0},
                                 {"max_aspect": 0.5}, {"min_clip_score": 2}])
def test_bad_specs_are_refused(doc):
    with pytest.raises(ValidationError):
        Filters.model_validate(doc)
