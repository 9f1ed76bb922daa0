# Sphinx configuration of the companion's site: `make site` (genie_utils.site) stages README, docs/, the model cards,
# the figures and the executed notebooks in one folder and builds it with this file; nothing is executed here.
project = "genie-companion"
root_doc = "README"                           # README's links lead everywhere: docs/, the cards, the notebooks
extensions = ["myst_nb"]
nb_execution_mode = "off"                    # the notebooks were executed by make reproduce
myst_heading_anchors = 3                     # README's #section links
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
suppress_warnings = ["toc.not_included"]     # no toctree: README is the index
html_theme = "alabaster"
html_theme_options = {"nosidebar": False, "fixed_sidebar": False}
templates_path = ["_templates"]                # pages.html: every page in the sidebar
html_sidebars = {"**": ["pages.html", "searchbox.html"]}
html_show_sourcelink = False
html_copy_source = False
mathjax_path = "no-mathjax.js"                # sphinx asks for one; no page has math, so none loads it
nb_ipywidgets_js = {}                        # no widget JavaScript from a CDN: widgets show their text
