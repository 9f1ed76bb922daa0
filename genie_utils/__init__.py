"""genie_utils: the library behind the GeNIe companion notebooks.

One module per idea of the paper: `data` (datasets), `splits`, `generate` (GeNIe and its baselines),
`store` (generated images and their manifest), `companion` (the embedded profile's diffusion model),
`plots`; `profiles` reads the run configurations and `reproduce` runs the notebooks.
"""
__version__ = "0.1.0"
