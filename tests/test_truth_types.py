"""One type for the ground truth: a simulated sample and the folder it was saved to give the same."""

from __future__ import annotations

import numpy as np
import pytest

import z2t_dask as z2t
from z2t_dask.physics.emitters import EmitterTable, Records
from z2t_dask.testing import tiny_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[z2t.Sample, object]:
    sample = z2t.simulate(tiny_config(), seed=3)
    folder = sample.save(tmp_path_factory.mktemp("s") / "sample_003")
    return sample, z2t.open_sample(folder)


def test_records_and_emitters_have_one_type(saved) -> None:
    sample, folder = saved
    assert type(sample.records) is type(folder.records) is Records
    assert type(sample.emitters) is type(folder.emitters) is EmitterTable


@pytest.mark.parametrize("table", ["records", "emitters"])
def test_same_columns_by_attribute_and_key(saved, table: str) -> None:
    sample, folder = saved
    a, b = getattr(sample, table), getattr(folder, table)
    assert a.keys() == b.keys() and len(a) == len(b) > 0
    for name in a.keys():
        assert getattr(a, name) is a[name] and getattr(b, name) is b[name]
        np.testing.assert_array_equal(a[name], b[name])  # the file stores exactly the simulated values
    assert dict(a.items()).keys() == a.as_dict().keys()
    with pytest.raises(KeyError, match="no column 'nope'"):
        a["nope"]


def test_original_files_get_inside_from_the_image_and_keep_extra_columns() -> None:
    rec = Records.from_mapping(
        {
            "xyz": np.array([[0.0, 0.0, 0.0], [9.6, 2.0, 0.1]]),
            "phot": np.ones(2),
            "frame_ix": np.zeros(2, np.int64),
            "id": np.arange(2),
            "bg": np.full(2, 7.0),
        },
        image_shape=(10, 10),
    )
    assert rec.inside.tolist() == [True, False]  # x = 9.6 >= W - 0.5
    assert rec["bg"].tolist() == [7.0, 7.0] and "bg" in rec and rec.keys()[-1] == "bg"
    em = EmitterTable.from_mapping({"xyz": np.zeros((3, 3))})
    assert em.id.tolist() == [0, 1, 2] and em.intensity.tolist() == [0.0, 0.0, 0.0]
