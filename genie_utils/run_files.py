"""Where a run's files lie: every folder and result file under a profile's `[paths] results` (store, few-shot, long
tail, GeNIe-Ada, benchmarks, dataset, companion evidence, executed notebooks, site) and its `[paths] figures` folder.
The library, notebooks and benchmarks ask `RunFiles.of(profile)` for a path instead of joining names themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .profiles import resolve


def _in_folder(name: str) -> property:
    """The path `name` inside the object's `folder`."""
    return property(lambda files: files.folder / name, doc=f"`{name}` in the folder")


@dataclass(frozen=True)
class FewshotFiles:
    """The few-shot experiment's files (notebooks 02, 04 and 05; a settle slice's episodes)."""
    folder: Path

    episodes = _in_folder("episodes.csv")                          # notebook 02 draws them; 04 and 05 read them
    augmentations = _in_folder("augmentations.csv")                # every episode's images in the store
    # `fewshot.evaluate`'s tables, each in the file of its name
    results = _in_folder("results.csv")
    class_probabilities = _in_folder("class_probabilities.csv")
    ada_choices = _in_folder("ada_choices.csv")
    query_outcomes = _in_folder("query_outcomes.csv")
    summary = _in_folder("summary.csv")
    differences = _in_folder("differences.csv")                    # and differences.md, .tex beside it
    table = _in_folder("table")                                    # stem of table.md and table.tex
    noise_sources = _in_folder("noise_sources.csv")
    precision = _in_folder("precision.csv")                        # and precision.md beside it
    class_probability_summary = _in_folder("class_probability_summary.csv")
    label_consistency = _in_folder("label_consistency.csv")
    label_consistency_skipped = _in_folder("label_consistency.txt")  # its place when the profile has no oracle
    embedding_view = _in_folder("embedding_view.csv")
    method_comparison = _in_folder("method_comparison.csv")


@dataclass(frozen=True)
class LongtailFiles:
    """The long-tail experiment's files (notebook 06)."""
    folder: Path

    plan = _in_folder("plan.csv")                                  # the budget: images per class
    augmentations = _in_folder("augmentations.csv")
    test_outcomes = _in_folder("test_outcomes.csv")
    results = _in_folder("results.csv")
    bin_accuracy = _in_folder("bin_accuracy.csv")
    table = _in_folder("table")                                    # stem of table.md and table.tex
    differences = _in_folder("differences.csv")                    # and differences.md, .tex beside it
    added_to_logit_adjustment = _in_folder("added_to_logit_adjustment.csv")  # and its .md, .tex
    gain_by_class = _in_folder("gain_by_class.csv")


@dataclass(frozen=True)
class AdaFiles:
    """GeNIe-Ada's own run (notebook 03)."""
    folder: Path

    choices = _in_folder("choices.csv")
    cost = _in_folder("cost.csv")


@dataclass(frozen=True)
class BenchmarkFiles:
    """What the scripts in `benchmarks/` write (and `genie generate` reads: the throughput records)."""
    folder: Path

    throughput = _in_folder("throughput.csv")
    longtail_budget = _in_folder("longtail_budget.csv")
    stock_pipeline = _in_folder("stock_pipeline.csv")
    oracle_reference = _in_folder("oracle_reference.csv")
    denoising_steps = _in_folder("denoising_steps.csv")
    denoising_steps_store = _in_folder("denoising-steps-store")
    episode_cost = _in_folder("episode_cost.csv")
    fewshot_evaluation = _in_folder("fewshot_evaluation.json")
    editing_store = _in_folder("editing-store")

    def throughput_record(self, name: str) -> Path:
        """One run's record of `benchmarks/throughput.py` (`name`: its device and time)."""
        return self.folder / f"throughput-{name}.json"

    def throughput_records(self) -> list[Path]:
        """Every throughput record in the folder, oldest name first."""
        return sorted(self.folder.glob(self.throughput_record("*").name))

    def editing(self, name: str) -> Path:
        """An editing benchmark's summary (`benchmarks/editing.py --name`)."""
        return self.folder / f"{name}.csv"

    def editing_agreement(self, name: str) -> Path:
        return self.folder / f"{name}_agreement.csv"

    def editing_images(self, name: str) -> Path:
        return self.folder / f"{name}_images.csv"


@dataclass(frozen=True)
class DatasetFiles:
    """The dataset at a glance (notebook 00)."""
    folder: Path

    class_sizes = _in_folder("class_sizes.csv")
    split_summary = _in_folder("split_summary.csv")


@dataclass(frozen=True)
class CompanionFiles:
    """The companion model's evidence that stays out of its model folder (`make companion`'s judge stage)."""
    folder: Path

    judge_store = _in_folder("judge-store")
    judge_images = _in_folder("judge_images.csv")
    judge_curve_all_classes = _in_folder("judge_curve_all_classes.csv")


@dataclass(frozen=True)
class RunFiles:
    """A run's folders and files. `results`: the results folder, absolute; `figures`: the figures folder (None for
    a copy of result files without figures, e.g. `docs/results/<profile>/`, which has the results' layout)."""
    results: Path
    figures: Path | None = None

    @classmethod
    def of(cls, profile: dict) -> RunFiles:
        """The files of a profile's run (its `[paths]`, relative to the project root unless absolute)."""
        return cls(resolve(profile, profile["paths"]["results"]), resolve(profile, profile["paths"]["figures"]))

    @property
    def store(self) -> Path:
        """The generated images and their manifest (`store.Store`), shared by every notebook."""
        return self.results / "store"

    @property
    def fewshot(self) -> FewshotFiles:
        return FewshotFiles(self.results / "fewshot")

    @property
    def longtail(self) -> LongtailFiles:
        return LongtailFiles(self.results / "longtail")

    @property
    def ada(self) -> AdaFiles:
        return AdaFiles(self.results / "ada")

    @property
    def benchmarks(self) -> BenchmarkFiles:
        return BenchmarkFiles(self.results / "benchmarks")

    @property
    def dataset(self) -> DatasetFiles:
        return DatasetFiles(self.results / "dataset")

    @property
    def companion(self) -> CompanionFiles:
        return CompanionFiles(self.results / "companion")

    @property
    def notebooks(self) -> Path:
        """The notebooks `make reproduce` executed, with their keys."""
        return self.results / "notebooks"

    @property
    def site_source(self) -> Path:
        """What the site shows, staged for Sphinx."""
        return self.results / "site-source"

    @property
    def site_doctrees(self) -> Path:
        return self.results / "site-doctrees"

    @property
    def site(self) -> Path:
        """The built offline site."""
        return self.results / "site"

    def settle_slice(self, name: str) -> FewshotFiles:
        """A settle slice's own episodes (its rows go to the profile's `[settle] folder`, `settle.folder`)."""
        return FewshotFiles(self.results / "settle" / name)
