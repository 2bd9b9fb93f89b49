"""The range test's results (trainlab.diagnosis.lr_finder.results): their JSON form."""

from __future__ import annotations

import math

from trainlab.diagnosis.lr_finder import check_lr


def test_to_json_is_json(healthy):
    import json

    data = json.loads(json.dumps(check_lr(healthy).to_json()))
    assert data["values"]["shape"] == "ok"
    assert len(data["values"]["seeds"]) == 3
    assert math.isclose(data["values"]["recipe_lr"], healthy.suggestion)
