"""The documentation site's stylesheet and its one small script, inlined in every page.

The pages read well without the script: it only adds the search box of the overview (hidden until the
script shows it), highlights a model's lineage in the graph while the pointer is on it, and scrolls the
graph to the model in focus. The Content-Security-Policy of each page admits exactly these two texts,
by their SHA-256, and nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib

CSS = """
:root{color-scheme:light dark;
--bg:#f5f6f8;--surface:#fff;--surface-2:#f1f3f6;--border:#e1e5eb;--text:#171b21;--muted:#5a6574;--faint:#97a0ad;
--accent:#3e5bf2;--accent-soft:rgba(62,91,242,.1);--on-accent:#fff;--edge:#b4bcc8;--code-bg:#fcfcfd;
--full:#3b82f6;--incr:#10a37f;--append:#e39212;--merge:#9b5de5;--block:#d9413a;--warn:#c98512;
--k:#8a3ffc;--s:#0b7a53;--n:#b4540a;--c:#808b99;--f:#1f5fd1;--t:#c2255c;--y:#0c7489;--q:#6d3fc0;
--sans:ui-sans-serif,system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","Noto Sans","DejaVu Sans",sans-serif;
--mono:ui-monospace,"SF Mono",SFMono-Regular,Menlo,Consolas,"Liberation Mono","DejaVu Sans Mono",monospace;
--shadow:0 1px 2px rgba(16,24,40,.04),0 2px 8px rgba(16,24,40,.04)}
@media (prefers-color-scheme:dark){:root{
--bg:#0d1015;--surface:#141920;--surface-2:#1a2029;--border:#252d38;--text:#e5e9ef;--muted:#9ba6b5;--faint:#677282;
--accent:#7d95ff;--accent-soft:rgba(125,149,255,.14);--on-accent:#0d1015;--edge:#3b4553;--code-bg:#10141a;
--full:#5b9bff;--incr:#2fc79b;--append:#f0a732;--merge:#b486f2;--block:#f06b63;--warn:#e6b04a;
--k:#c6a2ff;--s:#8fd8a9;--n:#f4b878;--c:#6c7888;--f:#86aaff;--t:#ff8db4;--y:#6fd3e4;--q:#c4a7ff;
--shadow:0 1px 2px rgba(0,0,0,.3)}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--text);font:15px/1.55 var(--sans);-webkit-font-smoothing:antialiased}
a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}
code,.mono{font-family:var(--mono);font-size:.92em}
.wrap{max-width:1280px;margin:0 auto;padding:0 28px}
.top{position:sticky;top:0;z-index:5;background:color-mix(in srgb,var(--bg) 82%,transparent);
backdrop-filter:saturate(1.4) blur(10px);border-bottom:1px solid var(--border)}
.top .wrap{display:flex;align-items:center;gap:14px;height:54px}
.brand{display:flex;align-items:center;gap:9px;color:var(--text);font-weight:650;letter-spacing:-.01em}
.brand:hover{text-decoration:none}
.brand svg{color:var(--accent)}
.brand .project{color:var(--muted);font-weight:500}
.brand .sep{color:var(--faint);font-weight:400}
.top .commit{margin-left:auto;color:var(--muted);font-size:13px;display:flex;gap:8px;align-items:center}
.chip{font-family:var(--mono);font-size:12px;padding:2px 8px;border-radius:6px;background:var(--surface-2);
border:1px solid var(--border);color:var(--text)}
main.wrap{padding-top:34px;padding-bottom:40px}
h1{font-size:30px;line-height:1.2;letter-spacing:-.022em;margin:0 0 8px;font-weight:680}
h1 .schema{color:var(--muted);font-weight:500}
h2{font-size:14px;margin:0;font-weight:650;letter-spacing:-.005em}
.lede{color:var(--muted);font-size:16px;margin:0 0 22px;max-width:72ch}
.crumbs{display:flex;gap:8px;color:var(--faint);font-size:13px;margin-bottom:12px}
.crumbs a{color:var(--muted)}
.badges{display:flex;flex-wrap:wrap;gap:8px;margin:14px 0 10px}
.pill{display:inline-flex;align-items:center;gap:6px;padding:2px 10px;border-radius:999px;font-size:12.5px;
font-weight:560;background:var(--surface);border:1px solid var(--border);color:var(--muted);white-space:nowrap}
.pill.kind{color:var(--text)}
.pill.kind::before,.dot{content:"";display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--kind)}
.k-full{--kind:var(--full)}.k-incr{--kind:var(--incr)}.k-append{--kind:var(--append)}.k-merge{--kind:var(--merge)}
.pill.tag{font-family:var(--mono);font-size:11.5px;font-weight:500}
.pill.block{color:var(--block);border-color:color-mix(in srgb,var(--block) 35%,transparent)}
.pill.warn{color:var(--warn);border-color:color-mix(in srgb,var(--warn) 40%,transparent)}
.path{font-family:var(--mono);font-size:12.5px;color:var(--faint);margin:0 0 22px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:12px;margin:0 0 22px}
.card{background:var(--surface);border:1px solid var(--border);border-radius:12px;padding:14px 16px;
box-shadow:var(--shadow)}
.card .value{font-size:26px;font-weight:650;letter-spacing:-.02em;font-variant-numeric:tabular-nums;line-height:1.2}
.card .what{display:flex;align-items:center;gap:8px;color:var(--muted);font-size:13px}
.card.zero{opacity:.55}
.panel{background:var(--surface);border:1px solid var(--border);border-radius:14px;box-shadow:var(--shadow);
margin:0 0 22px;overflow:hidden}
.panel-head{display:flex;align-items:center;gap:14px;flex-wrap:wrap;padding:12px 16px;
border-bottom:1px solid var(--border)}
.panel-head .aside{margin-left:auto;color:var(--muted);font-size:13px;display:flex;gap:14px;flex-wrap:wrap;
align-items:center}
.legend{display:flex;gap:14px;flex-wrap:wrap;color:var(--muted);font-size:12.5px}
.legend span{display:inline-flex;align-items:center;gap:6px}
.legend .viewkey{display:inline-block;width:16px;height:10px;border:1.5px dashed var(--faint);border-radius:3px}
.graph{overflow:auto;max-height:70vh;padding:8px;
background-image:radial-gradient(var(--border) 1px,transparent 1px);background-size:18px 18px}
.graph svg{display:block;margin:0 auto}
.runtime rect{fill:var(--accent)}.runtime rect:hover{fill:var(--text)}
.note{margin:0;padding:10px 16px;border-top:1px solid var(--border);color:var(--muted);font-size:13px}
.dag text{font-family:var(--mono);pointer-events:none}
.dag a:hover{text-decoration:none}
.dag .schema{font-size:10.5px;fill:var(--muted)}
.dag .name{font-size:12.5px;font-weight:600;fill:var(--text)}
.dag .edge{fill:none;stroke:var(--edge);stroke-width:1.5;transition:opacity .15s,stroke .15s}
.dag .arrowhead{fill:var(--edge)}
.dag .arrowhead.lit{fill:var(--accent)}
.dag .edge.lit{stroke:var(--accent);stroke-width:2}
.dag .edge.dim{opacity:.3}
.dag .node{cursor:pointer;transition:opacity .15s}
.dag .box{fill:var(--surface);stroke:var(--border);stroke-width:1.3;transition:stroke .15s}
.dag .node.view .box{stroke-dasharray:5 3;stroke:var(--faint)}
.dag .stripe{fill:var(--kind)}
.dag .node:hover .box,.dag .node:focus-visible .box{stroke:var(--accent);stroke-width:2}
.dag .node:focus{outline:none}
.dag .node.near .box{stroke:var(--accent);stroke-width:1.8}
.dag .node.lineage .box{stroke:color-mix(in srgb,var(--accent) 45%,var(--border))}
.dag .node.current .box{fill:var(--accent);stroke:var(--accent)}
.dag .node.current text{fill:var(--on-accent)}
.dag .node.current .stripe{fill:var(--on-accent);opacity:.85}
.dag .node.dim{opacity:.38}
.dag.hovering .node:not(.hl),.dag.filtering .node:not(.match){opacity:.2}
.dag.hovering .edge:not(.hl){opacity:.1}
.dag.hovering .edge.hl{stroke:var(--accent);opacity:1}
.dag.filtering .node.match .box{stroke:var(--accent);stroke-width:2}
.search{display:flex;align-items:center;gap:10px}
.search input{font:inherit;font-size:14px;width:min(320px,60vw);padding:6px 12px;border-radius:9px;color:var(--text);
background:var(--surface);border:1px solid var(--border);outline:none}
.search input:focus{border-color:var(--accent);box-shadow:0 0 0 3px var(--accent-soft)}
.search kbd{font-family:var(--mono);font-size:11px;color:var(--faint);border:1px solid var(--border);
border-radius:5px;padding:0 5px}
div.table{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:14px}
@media (max-width:1000px){.wide{display:none}}
th{text-align:left;font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;color:var(--faint);font-weight:600;
padding:10px 16px;border-bottom:1px solid var(--border);white-space:nowrap}
td{padding:11px 16px;border-top:1px solid var(--border);vertical-align:top}
tbody tr:first-child td{border-top:0}
tbody tr:hover td{background:var(--surface-2)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.model-link{font-family:var(--mono);font-size:13.5px}
.model-link .schema{color:var(--muted)}
.model-link .table{font-weight:600}
.sub{display:block;color:var(--muted);font-size:13px;margin-top:2px}
.muted{color:var(--muted)}
.tags{display:flex;flex-wrap:wrap;gap:5px}
.empty{padding:28px 16px;text-align:center;color:var(--muted)}
.columns{display:grid;grid-template-columns:minmax(0,1fr) 330px;gap:22px;align-items:start}
.columns>.panel,.columns aside .panel{margin:0}
aside{display:flex;flex-direction:column;gap:16px}
@media (max-width:980px){.columns{grid-template-columns:minmax(0,1fr)}}
pre.sql{margin:0;padding:14px 0 16px;overflow:auto;background:var(--code-bg);font:13px/1.7 var(--mono);tab-size:4}
pre.sql code{font-size:inherit}
pre.sql .ln{display:inline-block;width:3.6em;padding-right:1.3em;text-align:right;color:var(--faint);user-select:none}
.sql .k{color:var(--k);font-weight:600}.sql .s{color:var(--s)}.sql .n{color:var(--n)}
.sql .c{color:var(--c);font-style:italic}
.sql .f{color:var(--f)}.sql .y{color:var(--y)}.sql .q{color:var(--q)}
.sql .t{color:var(--t);background:color-mix(in srgb,var(--t) 9%,transparent);border-radius:4px}
.sql a.ref{color:inherit;text-decoration:underline;text-decoration-color:color-mix(in srgb,var(--t) 50%,transparent);
text-underline-offset:3px}
.sql a.ref:hover{text-decoration-color:currentColor}
code.test{white-space:pre-wrap;word-break:break-word}
dl.props{display:grid;grid-template-columns:auto minmax(0,1fr);gap:9px 18px;margin:0;padding:14px 16px;font-size:13.5px}
dl.props dt{color:var(--muted)}
dl.props dd{margin:0;overflow-wrap:anywhere}
ul.list{list-style:none;margin:0;padding:6px 0}
ul.list li{display:flex;align-items:center;gap:10px;padding:7px 16px;font-size:13.5px}
ul.list li+li{border-top:1px solid var(--border)}
ul.list .grow{flex:1;min-width:0;overflow-wrap:anywhere}
ul.list .none{color:var(--muted)}
.contract td,.contract th{padding:7px 16px;font-size:13px}
footer{color:var(--faint);font-size:12.5px;padding:18px 0 40px;border-top:1px solid var(--border)}
"""

JS = """
(function () {
  "use strict";
  function all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  var input = document.getElementById("q"), box = document.getElementById("search");
  if (input && box) {
    var rows = all("tr[data-search]"), nodes = all("svg.dag .node"), svg = document.querySelector("svg.dag");
    var count = document.getElementById("count"), empty = document.getElementById("empty");
    var run = function () {
      var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
      var hit = function (text) { return words.every(function (w) { return text.indexOf(w) >= 0; }); };
      rows.forEach(function (row) { var ok = hit(row.dataset.search); row.hidden = !ok; if (ok) { shown++; } });
      nodes.forEach(function (node) { node.classList.toggle("match", words.length > 0 && hit(node.dataset.search)); });
      if (svg) { svg.classList.toggle("filtering", words.length > 0); }
      count.textContent = words.length ? shown + " of " + rows.length : String(rows.length);
      empty.hidden = shown > 0;
    };
    box.hidden = false;
    input.addEventListener("input", run);
    document.addEventListener("keydown", function (event) {
      if (event.key === "/" && document.activeElement !== input) { event.preventDefault(); input.focus(); }
      else if (event.key === "Escape" && document.activeElement === input) { input.value = ""; run(); input.blur(); }
    });
    run();
  }
  all("svg.dag").forEach(function (svg) {
    var up = {}, down = {}, edges = all(".edge", svg), nodes = all(".node", svg);
    edges.forEach(function (edge) {
      (up[edge.dataset.to] = up[edge.dataset.to] || []).push(edge.dataset.from);
      (down[edge.dataset.from] = down[edge.dataset.from] || []).push(edge.dataset.to);
    });
    var reach = function (start, links) {
      var seen = {}, stack = [start];
      seen[start] = true;
      while (stack.length) {
        (links[stack.pop()] || []).forEach(function (next) {
          if (!seen[next]) { seen[next] = true; stack.push(next); }
        });
      }
      return seen;
    };
    var enter = function (node) {
      var a = reach(node.dataset.id, up), d = reach(node.dataset.id, down);
      nodes.forEach(function (n) { n.classList.toggle("hl", !!(a[n.dataset.id] || d[n.dataset.id])); });
      edges.forEach(function (e) {
        var on = (a[e.dataset.from] && a[e.dataset.to]) || (d[e.dataset.from] && d[e.dataset.to]);
        e.classList.toggle("hl", !!on);
        e.setAttribute("marker-end", on || e.classList.contains("lit") ? "url(#arrow-lit)" : "url(#arrow)");
      });
      svg.classList.add("hovering");
    };
    var leave = function () {
      svg.classList.remove("hovering");
      edges.forEach(function (e) {
        e.setAttribute("marker-end", e.classList.contains("lit") ? "url(#arrow-lit)" : "url(#arrow)");
      });
    };
    nodes.forEach(function (node) {
      node.addEventListener("mouseenter", function () { enter(node); });
      node.addEventListener("focus", function () { enter(node); });
      node.addEventListener("mouseleave", leave);
      node.addEventListener("blur", leave);
    });
    var current = svg.querySelector(".node.current"), pane = svg.parentElement;
    if (current && pane) {
      var r = current.querySelector(".box");
      pane.scrollLeft = Number(r.getAttribute("x")) + Number(r.getAttribute("width")) / 2 - pane.clientWidth / 2;
      pane.scrollTop = Number(r.getAttribute("y")) + Number(r.getAttribute("height")) / 2 - pane.clientHeight / 2;
    }
  });
})();
"""


def csp_source(text: str) -> str:
    """The CSP source expression admitting exactly the inline `text`: `'sha256-<base64>'`."""
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


CSP = (
    f"default-src 'none'; style-src {csp_source(CSS)}; script-src {csp_source(JS)}; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
