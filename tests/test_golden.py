"""The bundled model's judgements of the casting test split, against a file recorded before the
package was restructured: same labels, decisions and scores, on the default backend and PyTorch."""

import json
from pathlib import Path

import pytest
from conftest import REAL_DATA, real_data_available

from castinspect.core.io import expand_paths
from castinspect.inference.predict import Predictor

GOLDEN = Path(__file__).parent / "golden" / "bundled_test_split.json"


@pytest.mark.slow
@pytest.mark.skipif(not real_data_available(), reason="the casting dataset is not beside the project")
@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_bundled_model_judges_the_test_split_as_recorded(backend):
    golden = json.loads(GOLDEN.read_text())
    root = REAL_DATA / "test"
    files = expand_paths([root / "def_front", root / "ok_front"])
    # The model's own decisions, as recorded: photos it finds unfamiliar are tested elsewhere.
    predictor = Predictor.load(backend=backend, on_unfamiliar="judge")
    assert predictor.model_id == golden["model"] and predictor.threshold == golden["threshold"]
    got = list(predictor.predict(files))
    assert [str(Path(i.source).relative_to(root)) for i in got] == [p["path"] for p in golden["photos"]]
    for insp, want in zip(got, golden["photos"]):
        assert (insp.label, insp.decision) == (want["label"], want["decision"]), want["path"]
        assert insp.p_defect == pytest.approx(want["p_defect"][backend], abs=1e-6), want["path"]
    # In distribution: 0.5% of validation photos left outside, so at most 1% here (with margin).
    unfamiliar = [i.source for i in got if not i.familiar]
    assert len(unfamiliar) <= 0.01 * len(got), unfamiliar
