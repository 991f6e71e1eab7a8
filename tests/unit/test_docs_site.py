"""The documentation site's pages: escaped tenant input, same bytes for the same project, working links,
a policy that admits only the inline style and script, and what a model page shows."""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared_core.core.docs import SiteInfo, highlight_sql, render_site
from shared_core.core.docs.theme import CSS, JS, csp_source
from shared_core.core.project.models import ModelSource, Project, load_project
from tests.docs_projects import generated_project, shop_project

INFO = SiteInfo("shop", "c" * 40, "2024-01-10")
ALLOWED_TAGS = frozenset((
    "html", "head", "meta", "title", "link", "style", "body", "header", "div", "a", "svg", "span", "main", "footer",
    "code", "script", "h1", "h2", "p", "section", "nav", "i", "table", "thead", "tbody", "tr", "th", "td", "input",
    "kbd", "defs", "marker", "path", "g", "rect", "text", "dl", "dt", "dd", "ul", "li", "pre", "aside",
))
NUMBERS = re.compile(r'<span class="ln" aria-hidden="true">\d+</span>')
HOSTILE = {
    "models/base.sql": "-- name: evil.base\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n",
    "models/payload.sql": (
        "-- name: evil.payload\n"
        "-- kind: FULL_REFRESH\n"
        "-- owner: <script>alert(1)</script>\n"
        "-- tags: <b>bold</b>, \"><img src=x onerror=alert(2)>\n"
        "-- description: </title><svg onload=alert(3)>&amp;\n"
        "-- tests: custom_sql(SELECT * FROM {model} WHERE x = '</script><script>alert(4)</script>')\n"
        "-- contract_columns: id:<i>INT</i>\n"
        "-- x_note: <iframe src=javascript:alert(5)>\n"
        "SELECT '</pre><script>alert(6)</script>' AS x, \"<a href=javascript:alert(7)>\" AS y\n"
        "FROM {{ ref('evil.base') }} -- </code><img src=x onerror=alert(8)>\n"
    ),
}


def project_of(files: dict[str, str]) -> Project:
    return load_project([ModelSource(path, text) for path, text in files.items()])


class Page(HTMLParser):
    """Every tag with its attributes, and the text inside each <script> and <style>."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._open = ""
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in self.raw else ""

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self._open:
            self.raw[self._open].append(data)
            self._open = ""
        else:
            self.text.append(data)


def test_tenant_input_is_text_on_every_page_never_markup() -> None:
    files = render_site(project_of(HOSTILE), INFO)
    for path, data in files.items():
        page = Page(data.decode())
        assert {tag for tag, _ in page.tags} <= ALLOWED_TAGS, path
        assert page.raw == {"script": [JS], "style": [CSS]}, path  # the one script and stylesheet, nothing else
        for tag, attrs in page.tags:
            assert not [name for name in attrs if name.startswith("on")], (path, tag, attrs)
            assert "javascript:" not in (attrs.get("href") or ""), (path, tag, attrs)
    page = Page(files["models/evil.payload.html"].decode())
    text = "".join(page.text)
    for shown in ("<script>alert(1)</script>", "<b>bold</b>", '"><img src=x onerror=alert(2)>',
                  "</title><svg onload=alert(3)>&amp;", "'</script><script>alert(4)</script>'", "<I>INT</I>",
                  "<iframe src=javascript:alert(5)>", "'</pre><script>alert(6)</script>'"):
        assert shown in text, shown
    assert "alert(8)" in text and "alert(7)" in text
    index_text = "".join(Page(files["index.html"].decode()).text)
    assert "<script>alert(1)</script>" in index_text and "</title><svg onload=alert(3)>&amp;" in index_text


def test_a_model_page_shows_the_sql_body_exactly_with_file_line_numbers() -> None:
    project = shop_project("v2")
    page = render_site(project, INFO)["models/silver.orders.html"].decode()
    code = page[page.index('<pre class="sql"><code>') + 23:page.index("</code></pre>")]
    numbers = [int(n) for n in re.findall(r'<span class="ln" aria-hidden="true">(\d+)</span>', code)]
    text = project["silver.orders"].text
    body = text.split("\n")[project["silver.orders"].header.body_line - 1:]
    assert numbers == list(range(11, 11 + len(numbers))) and len(numbers) == len([line for line in body if line]) == 9
    assert html.unescape(re.sub(r"<[^>]+>", "", NUMBERS.sub("", code))) == "\n".join(body).rstrip("\n")
    assert '<a class="ref" href="bronze.raw_orders.html">bronze.raw_orders</a>' in code
    assert '<span class="k">WHERE</span>' in code


def test_a_model_page_shows_the_header() -> None:
    files = render_site(shop_project("v1"), INFO)
    orders = files["models/silver.orders.html"].decode()
    for shown in ("<dt>Time column</dt><dd><code>order_date</code></dd>", "<dt>Batch</dt><dd>daily</dd>",
                  "<dt>Start</dt><dd>2024-01-01</dd>", "<dt>Lookback</dt><dd>1 batch</dd>",
                  "<dt>Cron</dt><dd><code>0 2 * * *</code></dd>", "owner · analytics-eng", "Tests (3)",
                  '<code class="test grow sql">row_count_min(1)</code><span class="pill warn">warn</span>',
                  '<code class="test grow sql">unique(order_id)</code><span class="pill block">block</span>',
                  "Upstream (1)", "Downstream (2)", 'href="gold.customer_ltv.html"'):
        assert shown in orders, shown
    customers = files["models/silver.customers.html"].decode()
    assert "Contract · strict" in customers
    assert "<tr><td><code>customer_id</code></td><td><code>INT</code></td><td class=\"muted\">not null</td></tr>" in customers
    assert "<dt>Unique key</dt><dd><code>customer_id</code></dd>" in customers
    assert "Schedule" not in customers  # not incremental, no cron
    index = files["index.html"].decode()
    assert "10 models in 3 schemas, 19 quality tests, 4 owners." in index
    assert index.count("<tr data-search=") == 10


def test_a_model_page_shows_sources_other_keys_and_the_description() -> None:
    payments = (
        "-- name: staging.payments\n-- kind: APPEND_ONLY\n-- time_column: paid_at\n-- start: 2024-01-01T00:00:00Z\n"
        "-- batch: hour\n-- sources: raw.refunds, raw.payments\n-- description: One row per payment attempt.\n"
        "-- team_channel: #payments\n-- tests: custom_sql(SELECT * FROM {model} WHERE amount < 0)@warn\n"
        "SELECT * FROM raw.payments WHERE paid_at >= '{{ start_date }}' AND paid_at < '{{ end_date }}'\n"
    )
    files = render_site(project_of({"models/payments.sql": payments}), INFO)
    page = files["models/staging.payments.html"].decode()
    for shown in ("Sources (2)", '<code class="grow">raw.payments</code></li><li><code class="grow">raw.refunds</code>',
                  "Other header keys", "<dt>team_channel</dt><dd><code>#payments</code></dd>",
                  '<p class="lede">One row per payment attempt.</p>', "<dt>Batch</dt><dd>hourly</dd>",
                  "<dt>Start</dt><dd>2024-01-01</dd>", "No upstream models.", "Nothing reads this model.",
                  'custom_sql(<span class="k">SELECT</span> * <span class="k">FROM</span> {model}'):
        assert shown in page, shown
    assert '<span class="sub">One row per payment attempt.</span>' in files["index.html"].decode()


def test_every_link_leads_to_a_page_of_the_site() -> None:
    for project, limit in ((shop_project("v2"), 60), (generated_project(200, 7), 25)):
        files = render_site(project, INFO, graph_limit=limit)
        assert set(files) == {"index.html"} | {f"models/{name}.html" for name in project.models}
        for path, data in files.items():
            for tag, attrs in Page(data.decode()).tags:
                href = attrs.get("href")
                if href is None or (tag == "link" and href.startswith("data:image/svg+xml,")):
                    continue
                assert "://" not in href and not href.startswith(("/", "#")), (path, href)
                target = PurePosixPath(os.path.normpath(PurePosixPath(path).parent / href)).as_posix()
                assert target in files, (path, href)


def test_large_projects_draw_each_model_with_its_nearest_lineage() -> None:
    project = generated_project(200, 7)
    files = render_site(project, INFO, graph_limit=25)
    drawn_everywhere = []
    for name in project.models:
        page = files[f"models/{name}.html"].decode()
        drawn = set(re.findall(r'<a class="node[^"]*" href="[^"]*" data-id="([^"]+)"', page))
        near = set(project[name].upstream) | set(project.graph.children(name))
        assert name in drawn and near <= drawn
        assert drawn <= {name} | set(project.graph.upstream(name)) | set(project.graph.downstream(name))
        assert len(drawn) <= max(25, len(near) + 1)
        assert re.findall(r'class="node[^"]*current', page) and page.count(" current\"") == 1
        drawn_everywhere.append(len(drawn))
    assert max(drawn_everywhere) > 10
    assert files["index.html"].decode().count('<a class="node') == 200
    assert "Showing the models up to" in "".join(f.decode() for f in files.values())


def test_small_projects_draw_everything_on_each_page_with_the_lineage_highlighted() -> None:
    page = render_site(shop_project("v1"), INFO)["models/silver.orders.html"].decode()
    classes = dict((name, css) for css, name in re.findall(r'<a class="node ([^"]*)" href="[^"]*" data-id="([^"]+)"', page))
    assert len(classes) == 10
    assert classes["silver.orders"].endswith("current")
    assert classes["bronze.raw_orders"].endswith("near") and classes["gold.daily_revenue"].endswith("near")
    assert classes["gold.country_revenue"].endswith("lineage")  # through gold.customer_ltv
    assert classes["silver.events"].endswith("dim")
    assert 'data-from="bronze.raw_orders" data-to="silver.orders" d=' in page
    assert re.search(r'class="edge lit" data-from="bronze.raw_orders" data-to="silver.orders"', page)
    assert re.search(r'class="edge dim" data-from="bronze.raw_events" data-to="silver.events"', page)


def test_the_policy_admits_exactly_the_inline_style_and_script_and_nothing_remote() -> None:
    page = render_site(shop_project("v1"), INFO)["index.html"].decode()
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert policy is not None
    directives = dict(d.strip().split(" ", 1) for d in html.unescape(policy.group(1)).split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["style-src"] == csp_source(CSS) and directives["script-src"] == csp_source(JS)
    assert csp_source(JS) == "'sha256-" + __import__("base64").b64encode(hashlib.sha256(JS.encode()).digest()).decode() + "'"
    assert page.index("Content-Security-Policy") < page.index("<style>")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_same_project_same_bytes_whatever_the_file_order() -> None:
    project = shop_project("v2")
    shuffled = load_project(list(reversed([ModelSource(m.path, m.text) for m in project.models.values()])))
    assert render_site(project, INFO) == render_site(shuffled, INFO)


def test_same_bytes_from_processes_with_different_hash_seeds(tmp_path: Path) -> None:
    script = (
        "import hashlib, sys\n"
        "from shared_core.core.docs import SiteInfo, render_site\n"
        "from tests.docs_projects import generated_project, shop_project\n"
        "files = {**render_site(shop_project('v2'), SiteInfo('s', 'c' * 40)),\n"
        "         **{'big/' + k: v for k, v in render_site(generated_project(120, 3), SiteInfo('g', 'd' * 40),"
        " graph_limit=20).items()}}\n"
        "digest = hashlib.sha256()\n"
        "for path in sorted(files): digest.update(path.encode() + b'\\0' + files[path])\n"
        "print(digest.hexdigest())\n"
    )
    root = Path(__file__).parents[2]
    digests = set()
    for seed in ("0", "4242"):
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                                check=False, timeout=120)
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_an_empty_project_has_an_overview() -> None:
    files = render_site(load_project([]), INFO)
    assert list(files) == ["index.html"]
    assert "No models at this commit." in files["index.html"].decode()


def test_refs_in_sql_link_to_their_model_pages_and_unknown_ones_stay_text() -> None:
    pages = {"a.b": "a.b.html"}
    line = highlight_sql("SELECT * FROM {{ ref('a.b') }} JOIN {{ ref('c.d') }}", pages.get)[0]
    assert '<span class="t">{{ ref(&#x27;<a class="ref" href="a.b.html">a.b</a>&#x27;) }}</span>' in line
    assert '<span class="t">{{ ref(&#x27;c.d&#x27;) }}</span>' in line
    assert highlight_sql("WHERE d >= '{{ start_date }}'", pages.get)[0].endswith(
        '<span class="s">&#x27;<span class="t">{{ start_date }}</span>&#x27;</span>'
    )


@pytest.mark.parametrize(
    ("sql", "css"),
    [("select", "k"), ("'it''s'", "s"), ("1.5e3", "n"), ("/* a\nb */", "c"), ('"Col"', "q"), ("sum(", "f"),
     ("DECIMAL", "y"), ("{% if %}", "t")],
)
def test_tokens_get_their_class(sql: str, css: str) -> None:
    assert highlight_sql(sql, lambda _: None)[0].startswith(f'<span class="{css}">')


SQLISH = st.lists(st.sampled_from([*"ab1 \n\t'\"`-*/{}%#()<>&;.=_", "ref", "select", "{{", "}}", "\\"])).map("".join)


@given(SQLISH)
def test_highlighting_keeps_every_character_and_closes_every_tag_on_its_line(text: str) -> None:
    lines = highlight_sql(text, lambda name: f"{name}.html")
    assert len(lines) == text.count("\n") + 1
    for line in lines:
        assert "\n" not in line
        assert line.count("<span") == line.count("</span>") and line.count("<a ") == line.count("</a>")
    assert html.unescape(re.sub(r"<[^>]+>", "", "\n".join(lines))) == text
