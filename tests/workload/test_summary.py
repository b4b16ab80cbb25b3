import math

import pytest

from rlspec.workload import Request, describe


def test_describe_numbers():
    reqs = [
        Request(request_id=i, arrival_s=t, prompt_len=p, output_len=o)
        for i, (t, p, o) in enumerate([(0.0, 10, 1), (1.0, 20, 2), (3.0, 30, 3)])
    ]
    d = describe(reqs)
    assert d["count"] == 3
    assert d["span_s"] == 3.0
    assert d["rate_rps"] == 1.0
    assert d["prompt_mean"] == 20.0 and d["prompt_p50"] == 20.0
    assert d["output_p99"] == pytest.approx(2.98)
    assert d["interarrival_cv"] == pytest.approx(0.5 / 1.5)


def test_describe_empty_and_single():
    assert describe([])["count"] == 0 and math.isnan(describe([])["span_s"])
    one = describe([Request(request_id=0, arrival_s=2.0, prompt_len=5, output_len=6)])
    assert one["span_s"] == 0.0 and math.isnan(one["rate_rps"]) and one["prompt_mean"] == 5.0
