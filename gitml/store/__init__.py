"""The git store: objects, packs, refs and the work tree, all through dulwich.

Nothing here knows about runs or experiments; the layers above build on it.
"""

from gitml.store.git import GitStore, Identity, open_store

__all__ = ["GitStore", "Identity", "open_store"]
