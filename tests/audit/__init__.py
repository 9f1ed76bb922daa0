"""The own-data audit: every entry point a new user calls (the library, `genie generate` / `export`, `python -m
genie_utils.reproduce`), fed the inputs a user with their own data gives, one fresh process per case, each outcome
classified (harness.py) and compared with the class its case expects. One module per category of input; the world the
cases share (a tiny SD-shaped model, a dataset, a store and its export, a fake hub) is built in conftest.py.

    make audit                                                # every case (about 20 min on 2 CPU cores)
    pytest -m audit tests/audit/test_export.py                # one category
    pytest -m audit tests/audit -k export-key-climbs-out      # one case (its folder stays under pytest's basetemp)
    pytest -m audit --collect-only -q tests/audit             # the cases

The cases carry the marker `audit`, which the default run (`make test`, plain `pytest`) leaves out.
"""
