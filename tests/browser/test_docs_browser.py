"""`ironlayer docs` in a real browser: headless Chromium opens the site written for the demo project.

Checked in the rendered page, after its script ran under the site's Content-Security-Policy: the graph
is drawn (every model a node of non-zero size whose label fits, every edge a path of non-zero length),
clicking a node opens that model's page, the model's page shows its SQL highlighted with its refs as
links, the search filters the list, dark mode applies, and nothing was refused or failed. Screenshots
land in the test's folder (and in IRONLAYER_DOCS_SCREENSHOTS when set, to look at).

In CI (`CI=true`) a missing Chromium fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared_core.cli.demo import build_demo_repo, default_examples_dir
from shared_core.cli.main import main
from tests.browser.cdp import Chromium, find_chromium

NODE_BOXES = """Array.from(document.querySelectorAll('svg.dag .node')).map(n => {
  const box = n.querySelector('rect.box').getBBox(), label = n.querySelector('text.name').getBBox();
  const screen = n.getBoundingClientRect();
  return {id: n.dataset.id, w: box.width, h: box.height, sw: screen.width, sh: screen.height,
          fits: label.x >= box.x && label.x + label.width <= box.x + box.width};
})"""
EDGE_LENGTHS = "Array.from(document.querySelectorAll('svg.dag path.edge')).map(p => p.getTotalLength())"
NODE_CENTER = """(() => {
  const node = document.querySelector('svg.dag .node[data-id="%s"]');
  node.scrollIntoView({block: 'center', inline: 'center'});
  const r = node.querySelector('rect.box').getBoundingClientRect();
  return [r.x + r.width / 2, r.y + r.height / 2];
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        reason = "Chromium is not installed (apt-get install chromium); the docs browser test needs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must install it (.ci/run does)")
        pytest.skip(reason)
    with Chromium(binary, tmp_path_factory.mktemp("chromium-profile")) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo repository's second commit, documented by the real command."""
    work = tmp_path_factory.mktemp("docs-site")
    build_demo_repo(default_examples_dir(), work / "repo")
    assert main(["docs", str(work / "repo"), "--out", str(work / "site"), "--title", "shop"]) == 0
    return work / "site"


def shoot(browser: Chromium, site: Path, name: str) -> None:
    data = browser.screenshot(site.parent / name)
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a drawn page, not a blank one
    keep = os.environ.get("IRONLAYER_DOCS_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(site.parent / name, Path(keep) / name)


def test_the_graph_renders_and_a_click_on_a_node_opens_its_model_page(browser: Chromium, site: Path) -> None:
    browser.events.clear()
    browser.open((site / "index.html").as_uri())
    nodes = browser.evaluate(NODE_BOXES)
    assert sorted(n["id"] for n in nodes) == sorted(p.stem for p in (site / "models").glob("*.html"))
    assert len(nodes) == 10
    assert all(n["w"] > 50 and n["h"] > 20 and n["sw"] > 50 and n["sh"] > 20 for n in nodes), nodes
    assert all(n["fits"] for n in nodes), [n["id"] for n in nodes if not n["fits"]]
    lengths = browser.evaluate(EDGE_LENGTHS)
    assert len(lengths) == 8 and min(lengths) > 40  # the 8 edges of the demo's second commit, each drawn
    assert browser.evaluate("document.getElementById('search').hidden") is False  # the script ran
    shoot(browser, site, "index.png")

    x, y = browser.evaluate(NODE_CENTER % "silver.orders")
    browser.click(x, y)
    browser.wait_for("Page.loadEventFired")
    assert browser.evaluate("location.pathname").endswith("/models/silver.orders.html")
    assert browser.evaluate("document.querySelector('svg.dag .node.current').dataset.id") == "silver.orders"
    assert browser.errors() == []


def test_a_model_page_shows_its_sql_highlighted_with_refs_as_links(browser: Chromium, site: Path) -> None:
    browser.events.clear()
    browser.open((site / "models" / "silver.orders.html").as_uri())
    sql = browser.evaluate("document.querySelector('pre.sql').innerText")
    assert "WHERE o.status <> 'cancelled'" in sql
    assert "FROM {{ ref('bronze.raw_orders') }} AS o" in sql
    assert browser.evaluate("document.querySelector('pre.sql').getBoundingClientRect().height") > 150
    keyword, plain = browser.evaluate(
        "[getComputedStyle(document.querySelector('pre.sql .k')).color, getComputedStyle(document.querySelector('pre.sql code')).color]"
    )
    assert keyword != plain  # the stylesheet applied (the CSP admitted it)
    assert browser.evaluate("document.querySelector('pre.sql a.ref').href").endswith("/models/bronze.raw_orders.html")
    tests = browser.evaluate("Array.from(document.querySelectorAll('code.test')).map(c => c.textContent)")
    assert tests == ["not_null(order_id)", "row_count_min(1)", "unique(order_id)"]
    shoot(browser, site, "model.png")

    browser.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    dark = browser.evaluate("getComputedStyle(document.body).backgroundColor")
    shoot(browser, site, "model-dark.png")
    browser.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    light = browser.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark != light
    assert browser.errors() == []


def test_the_search_filters_the_list_and_marks_the_graph(browser: Chromium, site: Path) -> None:
    browser.events.clear()
    browser.open((site / "index.html").as_uri())
    browser.evaluate("document.getElementById('q').focus()")
    browser.type_text("finance")
    visible = browser.evaluate("Array.from(document.querySelectorAll('tr[data-search]')).filter(r => !r.hidden).length")
    marked = browser.evaluate("Array.from(document.querySelectorAll('svg.dag .node.match')).map(n => n.dataset.id)")
    assert visible == 3
    assert sorted(marked) == ["gold.customer_ltv", "gold.daily_revenue", "gold.top_customers"]
    assert browser.evaluate("document.getElementById('count').textContent") == "3 of 10"
    assert browser.errors() == []


def test_a_page_whose_script_was_altered_is_refused_by_its_policy(browser: Chromium, site: Path) -> None:
    """The checks above would see a refused script: an altered copy of the page logs the refusal."""
    page = (site / "index.html").read_text("utf-8")
    altered = site.parent / "altered.html"
    altered.write_text(page.replace('"use strict";', '"use strict"; ', 1), "utf-8")
    browser.events.clear()
    browser.open(altered.as_uri())
    assert browser.evaluate("document.getElementById('search').hidden") is True
    assert any("Content Security Policy" in error for error in browser.errors())
