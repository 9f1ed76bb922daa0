"""Figures: saved as PNG and PDF, and a rerun that differs only by float noise keeps the committed PNG."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genie_utils import plots  # noqa: E402


def picture(shift: float):
    figure, axis = plt.subplots(figsize=(plots.COLUMN_INCHES, 1.5))
    axis.imshow(np.full((8, 8, 3), 0.5 + shift))
    return figure


def test_float_noise_keeps_the_png_and_a_real_change_replaces_it(tmp_path):
    profile = {"root": str(tmp_path), "paths": {"figures": "figures"}}
    path = plots.save(picture(0.0), profile, "grey")
    assert path.with_suffix(".pdf").is_file() and not list(path.parent.glob(".*"))
    first = path.read_bytes()
    plots.save(picture(1 / 255), profile, "grey")  # one grey level: another machine's float noise
    assert path.read_bytes() == first
    plots.save(picture(20 / 255), profile, "grey")
    assert path.read_bytes() != first


def test_plots_are_saved_at_a_higher_resolution_than_image_grids(tmp_path):
    from PIL import Image

    profile = {"root": str(tmp_path), "paths": {"figures": "figures"}}
    figure, axis = plt.subplots(figsize=(plots.COLUMN_INCHES, 1.5))
    axis.plot([0, 1], [0, 1])
    with Image.open(plots.save(figure, profile, "line")) as line, Image.open(plots.save(picture(0), profile, "img")) as grid:
        assert round(line.info["dpi"][0]) == plots.PLOT_DPI and round(grid.info["dpi"][0]) == plots.IMAGE_DPI
