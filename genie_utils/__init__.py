"""genie_utils: the library behind the GeNIe companion notebooks.

One module per idea; notebooks and the command lines call them, and every result is a file.

- The method: `recipe` (GeNIe and its baselines, the noise ratio r and its timesteps), `generate` (the generator
  on any Stable-Diffusion-style pipeline, and `genie()` / `img2img()` / `txt2img()`), `ada` (GeNIe-Ada's choice of
  r per pair), `augment` (MixUp, CutMix and the classic views).
- Which images to make: `pairing` (few-shot episodes and their (source, target) pairs, the long tail's budget
  pairs, random pairs for the oracle's judgement).
- Making them: `pipeline` (loading and checking a model folder or hub id), `jobs` (running jobs into the store,
  sharded), `store` (images beside their manifest rows, claims between workers, one version per store), `export` (a
  store's images as an ImageFolder dataset), `speed` (how a pipeline runs, and how long it takes),
  `validation` (every check of what a user passes in).
- Data: `data` (the dataset a profile names), `openmoji` (the embedded set, rendered and checked), `class_folders`
  (a user's class folders and class-name files), `images` (decoding and checking image files), `emoji_styles` (the
  same emoji in other styles), `splits` (evaluation and generator pools, the long-tail split), `generator_pool` (the
  images the companion model trains on).
- Measuring: `features` (frozen backbones, cached), `classifier`, `fewshot` and `longtail` (the two experiments),
  `oracle` (an independent judge of an image's class), `editing` (does the generator edit like Stable Diffusion?),
  `results` (intervals and tables), `plots` (figures from result files).
- The embedded model: `companion` (its architecture, training and model card), `training` (the loop it shares with
  the oracle).
- Running it: `profiles` (run configurations), `reproduce` (the notebooks, headless), `cli` (the `genie` command),
  `site` (the offline site).
"""
__version__ = "0.1.0"
