"""The napari reader: a sample's frames scaled in µm and its ground truth as points (issue 14, part 3).

The reader function is tested without napari (it returns napari's layer data tuples); with napari
installed (the ``test`` extra has it, without Qt), the npe2 manifest is validated, npe2 finds the
reader for a sample folder, and napari's ``ViewerModel`` (no window) opens a sample with it.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import z2t_dask as z2t
from z2t_dask.errors import FormatError
from z2t_dask.io.registry import StackInfo
from z2t_dask.physics.emitters import Records
from z2t_dask.testing import tiny_config
from z2t_dask.tools import napari_reader
from z2t_dask.tools.napari_reader import napari_get_reader, read_sample, sample_layers
from z2t_dask.tools.preview import EDGE_STYLE, INSIDE_STYLE
from z2t_dask.tools.results import SampleFolder, open_sample

PX_X_NM, PX_Y_NM = 110.0, 95.0  # anisotropic on purpose: a swapped scale shows
MANIFEST = Path(napari_reader.__file__).parents[1] / "napari.yaml"


def _rgba(hex_colour: object) -> np.ndarray:
    text = str(hex_colour)
    return np.array([int(text[i : i + 2], 16) / 255 for i in (1, 3, 5)] + [1.0])


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny sample (24 x 20 px, 6 frames, records inside and at the edge) as OME-TIFF and OME-Zarr."""
    root = tmp_path_factory.mktemp("napari")
    cfg = tiny_config(optical={"use_default_config": False, "pixel_size_nm_x": PX_X_NM, "pixel_size_nm_y": PX_Y_NM})
    sample = z2t.simulate(cfg, seed=4)
    return {
        "ome-tiff": sample.save(root / "tiff" / "sample_004"),
        "ome-zarr": sample.save(root / "zarr" / "sample_004", format="ome-zarr"),
    }


@pytest.fixture(scope="module")
def folder(samples: dict[str, Path]) -> Path:
    return samples["ome-tiff"]


def test_sample_folder_opens_as_frames_in_um_and_points_of_the_records_inside(folder: Path) -> None:
    opened = open_sample(folder)
    records = opened.records
    assert 0 < int(records.inside.sum()) < len(records), "the sample needs records inside and at the edge"
    layers = read_sample(folder)
    assert [t for _, _, t in layers] == ["image", "points", "points"]

    (frames, image, _), (points, truth, _), (edge_points, edge, _) = layers
    assert isinstance(frames, da.Array), "frames go to napari lazily, as the dask array"
    assert frames.shape == (6, 20, 24)
    np.testing.assert_array_equal(frames.compute(), opened.frames.compute())
    assert image["scale"] == pytest.approx((1.0, PX_Y_NM / 1000, PX_X_NM / 1000), rel=1e-12)
    assert image["name"] == "sample_004" and image["axis_labels"] == ("t", "y", "x")
    assert image["metadata"]["pixel_size_nm"] == pytest.approx((PX_X_NM, PX_Y_NM))
    lo, hi = image["contrast_limits"]
    assert float(frames.min()) <= lo < hi <= float(frames.max())

    inside = np.asarray(records.inside, bool)
    assert len(points) == int(inside.sum())
    assert len(edge_points) == int((~inside).sum())
    # (t, y, x) = (frame_ix, row, column) in px with the image's scale: world = index * scale
    expected = np.column_stack([records.frame_ix, records.xyz[:, 1], records.xyz[:, 0]]).astype(np.float64)
    np.testing.assert_allclose(points, expected[inside], rtol=0, atol=1e-6)
    np.testing.assert_allclose(edge_points, expected[~inside], rtol=0, atol=1e-6)
    assert truth["scale"] == image["scale"] == edge["scale"]
    height, width = frames.shape[1:]
    assert np.all((points[:, 1] >= -0.5) & (points[:, 1] < height - 0.5))
    assert np.all((points[:, 2] >= -0.5) & (points[:, 2] < width - 0.5))
    assert not np.any(
        (edge_points[:, 1] >= -0.5)
        & (edge_points[:, 1] < height - 0.5)
        & (edge_points[:, 2] >= -0.5)
        & (edge_points[:, 2] < width - 0.5)
    ), "edge records lie outside the image"

    features = truth["features"]
    np.testing.assert_allclose(features["photons"], records.phot[inside])
    np.testing.assert_allclose(features["z_um"], records.xyz[inside, 2])
    np.testing.assert_array_equal(features["id"], records.id[inside])
    assert features["inside"].all() and not edge["features"]["inside"].any()
    # styles of z2t preview: cyan circles inside, red crosses at the edge
    assert set(np.asarray(truth["symbol"]).tolist()) == {"disc"}
    assert set(np.asarray(edge["symbol"]).tolist()) == {"x"}
    np.testing.assert_allclose(truth["border_color"], np.tile(_rgba(INSIDE_STYLE["edgecolors"]), (len(points), 1)))
    np.testing.assert_allclose(truth["face_color"][:, 3], 0.0)  # hollow circles
    np.testing.assert_allclose(edge["face_color"], np.tile(_rgba(EDGE_STYLE["color"]), (len(edge_points), 1)))


def test_edge_records_merged_or_left_out(folder: Path) -> None:
    records = open_sample(folder).records
    inside = np.asarray(records.inside, bool)

    merged = read_sample(folder, edge="merge")
    assert [t for _, _, t in merged] == ["image", "points"]
    data, kwargs, _ = merged[1]
    assert len(data) == len(records)
    np.testing.assert_array_equal(kwargs["features"]["inside"], inside)
    np.testing.assert_array_equal(np.asarray(kwargs["symbol"]) == "x", ~inside)
    np.testing.assert_allclose(
        kwargs["border_color"][~inside], np.tile(_rgba(EDGE_STYLE["color"]), ((~inside).sum(), 1))
    )

    excluded = read_sample(folder, edge="exclude")
    assert [t for _, _, t in excluded] == ["image", "points"]
    assert len(excluded[1][0]) == int(inside.sum())

    with pytest.raises(ValueError, match="edge must be"):
        read_sample(folder, edge="all")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr"])
def test_the_stack_itself_opens_with_its_folders_truth(samples: dict[str, Path], fmt: str) -> None:
    folder = samples[fmt]
    stack = folder / f"sample_004{'.ome.tiff' if fmt == 'ome-tiff' else '.ome.zarr'}"
    assert napari_get_reader(str(stack)) is read_sample
    assert napari_get_reader([str(stack)]) is read_sample
    layers = read_sample(str(stack))
    by_folder = read_sample(folder)
    assert [k["name"] for _, k, _ in layers] == [k["name"] for _, k, _ in by_folder]
    assert layers[0][1]["scale"] == pytest.approx((1.0, PX_Y_NM / 1000, PX_X_NM / 1000), rel=1e-12)
    np.testing.assert_array_equal(layers[0][0].compute(), by_folder[0][0].compute())
    np.testing.assert_array_equal(layers[1][0], by_folder[1][0])


def test_a_stack_of_another_folder_opens_as_frames_only(folder: Path, tmp_path: Path) -> None:
    stack = tmp_path / "other.ome.tiff"  # a copy beside no emitters.h5 of its own
    shutil.copy(folder / "sample_004.ome.tiff", stack)
    layers = read_sample(stack)
    assert [t for _, _, t in layers] == ["image"]
    assert layers[0][1]["name"] == "other.ome.tiff"
    assert layers[0][1]["scale"] == pytest.approx((1.0, PX_Y_NM / 1000, PX_X_NM / 1000), rel=1e-12)
    # a stack in a sample folder that is not that folder's stack gets no truth either
    extra = folder.parent / "extra_copy"
    extra.mkdir(exist_ok=True)
    shutil.copy(folder / "sample_004.ome.tiff", extra / "extra_copy.ome.tiff")
    shutil.copy(folder / "emitters.h5", extra / "emitters.h5")
    shutil.copy(folder / "sample_004.ome.tiff", extra / "zzz.ome.tiff")
    assert [t for _, _, t in read_sample(extra / "zzz.ome.tiff")] == ["image"]
    assert [t for _, _, t in read_sample(extra / "extra_copy.ome.tiff")] == ["image", "points", "points"]


def test_truth_without_a_stack_uses_the_configs_pixel_size(folder: Path, tmp_path: Path) -> None:
    only_truth = tmp_path / "truth_only"
    only_truth.mkdir()
    shutil.copy(folder / "emitters.h5", only_truth / "emitters.h5")
    layers = read_sample(only_truth)
    assert [t for _, _, t in layers] == ["points", "points"]
    assert layers[0][1]["scale"] == pytest.approx((1.0, PX_Y_NM / 1000, PX_X_NM / 1000), rel=1e-12)


def test_get_reader_declines_what_it_cannot_read(folder: Path, tmp_path: Path) -> None:
    assert napari_get_reader(folder) is read_sample
    assert napari_get_reader(str(folder)) is read_sample
    assert napari_get_reader(folder / "emitters.h5") is None  # the truth alone: open its folder
    assert napari_get_reader(tmp_path) is None  # an empty folder
    assert napari_get_reader(tmp_path / "missing.ome.tiff") is None
    assert napari_get_reader([str(folder), str(folder)]) is None  # napari's stacks of several paths
    with pytest.raises(FileNotFoundError, match="missing"):
        read_sample(tmp_path / "missing")
    with pytest.raises(FormatError, match="one path"):
        read_sample([str(folder), str(folder)])


def test_several_channels_give_one_image_layer_each_and_split_points(folder: Path) -> None:
    """A (T, C, Y, X) stack and records with a ``channel`` column (no writer makes them yet)."""
    opened = open_sample(folder)
    frames = opened.frames
    two = da.stack([frames, frames + 1], axis=1)  # (T, C, Y, X)
    info = opened.stack_info
    records = opened.records
    channel = (np.arange(len(records)) % 2).astype(np.int64)
    with_channel = Records(
        xyz=records.xyz,
        phot=records.phot,
        frame_ix=records.frame_ix,
        id=records.id,
        inside=records.inside,
        extra={"channel": channel},
    )

    class TwoChannels(SampleFolder):
        @property
        def records(self) -> Records:
            return with_channel

    multi = TwoChannels(path=opened.path, stack=opened.stack, format=opened.format, truth=opened.truth)
    multi.__dict__["frames"] = two  # the cached properties, as a 4-D stack would fill them
    multi.__dict__["stack_info"] = StackInfo(
        format=info.format,
        shape=two.shape,
        dtype=info.dtype,
        pixel_size_nm=info.pixel_size_nm,
        units=info.units,
        attrs=info.attrs,
        extra={**info.extra, "axes": "TCYX"},
    )
    layers = sample_layers(multi, edge="merge")
    images = [(d, k) for d, k, t in layers if t == "image"]
    assert [k["name"] for _, k in images] == ["sample_004 [ch 0]", "sample_004 [ch 1]"]
    for c, (data, kwargs) in enumerate(images):
        assert data.shape == frames.shape
        np.testing.assert_array_equal(data.compute(), frames.compute() + c)
        assert kwargs["blending"] == "additive" and kwargs["metadata"]["channel"] == c
        assert kwargs["scale"] == pytest.approx((1.0, PX_Y_NM / 1000, PX_X_NM / 1000), rel=1e-12)
    points = [(d, k) for d, k, t in layers if t == "points"]
    assert [k["name"] for _, k in points] == ["sample_004 truth [ch 0]", "sample_004 truth [ch 1]"]
    assert [len(d) for d, _ in points] == [int((channel == 0).sum()), int((channel == 1).sum())]


# ------------------------------------------------------------------------------ with napari


def test_manifest_is_valid_and_installed_as_the_entry_point() -> None:
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "z2t-dask"
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories
    assert {"*.ome.tiff", "*.ome.tif", "*.ome.zarr"} <= set(reader.filename_patterns)
    (command,) = manifest.contributions.commands
    assert command.python_name == "z2t_dask.tools.napari_reader:napari_get_reader"
    points = {ep.name: ep.value for ep in metadata.entry_points(group="napari.manifest")}
    assert points.get("z2t-dask") == "z2t_dask:napari.yaml", (
        "the installed z2t-dask has no napari.manifest entry point: reinstall it (pip install -e .)"
    )


def _plugin_manager():  # type: ignore[no-untyped-def]
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()  # napari does this when its Viewer starts; a ViewerModel alone does not
    if "z2t-dask" not in {m.name for m in pm.iter_manifests()}:
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
    return pm


def test_npe2_finds_the_reader_for_a_sample_folder_and_its_stacks(samples: dict[str, Path]) -> None:
    pm = _plugin_manager()
    paths = [
        samples["ome-tiff"],
        samples["ome-tiff"] / "sample_004.ome.tiff",
        samples["ome-zarr"] / "sample_004.ome.zarr",
    ]
    for path in paths:
        assert "z2t-dask" in {r.plugin_name for r in pm.iter_compatible_readers([str(path)])}, path
    import npe2

    layers = npe2.read([str(samples["ome-tiff"])], stack=False, plugin_name="z2t-dask")
    assert [t for _, _, t in layers] == ["image", "points", "points"]


@pytest.mark.slow
def test_napari_viewer_model_opens_a_sample_in_physical_units(folder: Path) -> None:
    pytest.importorskip("napari")
    _plugin_manager()
    from napari.components import ViewerModel

    records = open_sample(folder).records
    viewer = ViewerModel()
    image, truth, edge = viewer.open(str(folder), plugin="z2t-dask")
    assert type(image).__name__ == "Image" and type(truth).__name__ == "Points" == type(edge).__name__
    np.testing.assert_allclose(image.scale, (1.0, PX_Y_NM / 1000, PX_X_NM / 1000))
    np.testing.assert_allclose(truth.scale, image.scale)
    assert len(truth.data) == int(records.inside.sum())
    assert len(edge.data) == int((~records.inside).sum())
    assert [str(u) for u in image.units][1:] == ["micrometer", "micrometer"]
    assert set(truth.features.columns) >= {"photons", "z_um", "inside", "id", "frame"}
    # a record at (x, y) px of frame t and pixel (r=y, c=x) of frame t are one world point, in µm
    t, y, x = truth.data[0]
    world = np.asarray(truth.data_to_world(truth.data[0]), float)
    np.testing.assert_allclose(world, np.asarray(image.data_to_world((t, y, x)), float))
    np.testing.assert_allclose(world, (t, y * PX_Y_NM / 1000, x * PX_X_NM / 1000))
    assert [str(s.value) for s in edge.symbol[:1]] == ["x"]
