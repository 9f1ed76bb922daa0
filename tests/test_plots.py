"""Figures: saved as PNG and PDF, a rerun that differs only by float noise keeps the committed PNG, and the image
grids show the images their rows name."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from genie_utils import plots  # noqa: E402


def picture(shift: float):
    figure, axis = plt.subplots(figsize=(plots.COLUMN_INCHES, 1.5))
    axis.imshow(np.full((8, 8, 3), 0.5 + shift))
    return figure


def test_float_noise_keeps_the_png_and_a_real_change_replaces_it(tmp_path):
    path = plots.save(picture(0.0), tmp_path / "figures", "grey")
    assert path.with_suffix(".pdf").is_file() and not list(path.parent.glob(".*"))
    first = path.read_bytes()
    plots.save(picture(1 / 255), tmp_path / "figures", "grey")  # one grey level: another machine's float noise
    assert path.read_bytes() == first
    plots.save(picture(20 / 255), tmp_path / "figures", "grey")
    assert path.read_bytes() != first


def test_plots_are_saved_at_a_higher_resolution_than_image_grids(tmp_path):
    figure, axis = plt.subplots(figsize=(plots.COLUMN_INCHES, 1.5))
    axis.plot([0, 1], [0, 1])
    with (Image.open(plots.save(figure, tmp_path, "line")) as line,
          Image.open(plots.save(picture(0), tmp_path, "img")) as grid):
        assert round(line.info["dpi"][0]) == plots.PLOT_DPI and round(grid.info["dpi"][0]) == plots.IMAGE_DPI


def test_figure_two_shows_each_pair_s_source_then_its_outputs_in_the_order_of_r(fast_generator, openmoji, class_names,
                                                                               tmp_path):
    """Notebook 01's figure 2 from the manifest rows of a sweep: one row per (source, target) pair, the source image
    first, then the store's image of that pair at each r, rising."""
    from genie_utils import pairing
    from genie_utils.jobs import run_jobs
    from genie_utils.store import Store

    sources = openmoji[openmoji.class_name.isin(["heart", "face-smiling"])].sort_values("image_id").groupby(
        "class_name").head(1)
    pairs = pairing.pairs_with_targets(sources, ["animal-mammal"])
    store = Store(tmp_path / "store")
    rows = run_jobs(fast_generator, pairing.sweep_jobs(pairs, [0.9, 0.5]), store, class_names, progress=False)
    axes = np.array(plots.pairs_by_noise_ratio(store, rows.sample(frac=1, random_state=0), max_pairs=6).axes)
    assert axes.size == 2 * 3 and [axis.get_title() for axis in axes[:3]] == ["source", "r = 0.5", "r = 0.9"]
    order = rows.sample(frac=1, random_state=0).drop_duplicates(["source_id", "target_class"])
    for row, pair in zip(axes.reshape(2, 3), order.itertuples()):
        with Image.open(pair.source_path) as source:
            np.testing.assert_array_equal(row[0].images[0].get_array(), np.asarray(source.convert("RGB")))
        for axis, r in zip(row[1:], (0.5, 0.9)):
            key = rows[(rows.source_id == pair.source_id) & (rows.noise_ratio == r)].key.iloc[0]
            np.testing.assert_array_equal(axis.images[0].get_array(), np.asarray(store.load_image(key)))
