"""The project documentation site: pages for the overview and every model, with the model graph as SVG."""

from __future__ import annotations

from shared_core.core.docs.highlight import highlight_sql
from shared_core.core.docs.layout import Layout, layout_dag
from shared_core.core.docs.pages import SiteInfo
from shared_core.core.docs.site import render_site

__all__ = ["Layout", "SiteInfo", "highlight_sql", "layout_dag", "render_site"]
