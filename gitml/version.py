"""gitml's version: one place, read by the package face (``gitml.__version__``) and by
what records it (a saved model's ``gitml==`` requirement), so no module imports the face for it."""

__version__ = "0.1.0"
