"""Adapters: implementations of the ports in `shared_core.ports` over real systems (git, files)."""

from shared_core.adapters.caches.analysis import CachedAnalyzer
from shared_core.adapters.local_git import LocalGitSource

__all__ = ["CachedAnalyzer", "LocalGitSource"]
