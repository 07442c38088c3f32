"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html``."""

from __future__ import annotations

import anyxp

project = "anyxp"
release = version = anyxp.__version__
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "example-plugin", "_generated/gpu", "_generated/matrix.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
html_theme = "pydata_sphinx_theme"
html_title = "anyxp"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" sections as fields of the class, not as entries autodoc documents again.
napoleon_use_ivar = True
# Type hints name objects from libraries this site does not document.
nitpicky = False
suppress_warnings = ["myst.xref_missing"]
