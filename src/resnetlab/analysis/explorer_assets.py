"""The explorer page's style and script, inline (the page is one file: no network, no CDN).

The script: a click on a box of the diagram opens the tree rows of its block (or layer),
scrolls to them and highlights them; the boxes and rows that differ between two models are
marked; ``#open=NAME`` in the address opens NAME at load (as a click on its box would).
Script errors are counted in ``body[data-errors]``, so a test can read them back.
"""

STYLE = """
body { font: 13px/1.4 "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
.conventions { color: #555; font-size: 11px; max-width: 1100px; }
.models { display: flex; gap: 24px; align-items: flex-start; }
.model { flex: 1 1 0; min-width: 0; border-top: 3px solid #4c72b0; padding-top: 6px; }
.model h2 { font-size: 16px; margin: 4px 0; }
.notes { color: #555; font-size: 11px; margin: 0 0 6px; padding-left: 16px; }
.pane { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.diagram { flex: 0 0 auto; max-height: 88vh; overflow: auto; border: 1px solid #ddd; }
.diagram svg rect[data-name], .diagram svg rect[data-block] { cursor: pointer; }
.diagram svg rect.selected { stroke: #d62728; stroke-width: 3; }
.diagram svg rect.diff { stroke: #d62728; stroke-width: 2; stroke-dasharray: 5 2; }
.tree { flex: 1 1 auto; min-width: 420px; max-height: 88vh; overflow: auto; }
table.totals { border-collapse: collapse; margin-bottom: 8px; }
table.totals td { padding: 1px 8px; border-bottom: 1px solid #eee; }
table.totals td.num { text-align: right; font-variant-numeric: tabular-nums; }
.row, summary { display: grid; grid-template-columns: minmax(150px, 2fr) 110px 130px 95px 95px
  minmax(150px, 2fr); gap: 6px; padding: 1px 4px; font-variant-numeric: tabular-nums; }
.head { font-weight: bold; border-bottom: 1px solid #999; }
.num { text-align: right; }
details > :not(summary) { margin-left: 14px; }
summary { cursor: pointer; background: #f4f6fa; }
summary::marker { content: ""; }
details > summary .name::before { content: "▸ "; }
details[open] > summary .name::before { content: "▾ "; }
.formula { color: #555; font-size: 11px; }
.diff { background: #ffe3e3 !important; }
.only { background: #fff1c9 !important; }
.hit { outline: 2px solid #d62728; }
.legend span { padding: 0 6px; margin-right: 8px; }
"""

SCRIPT = """
(function () {
  "use strict";
  document.body.dataset.errors = "0";
  window.addEventListener("error", function () {
    document.body.dataset.errors = String(Number(document.body.dataset.errors) + 1);
  });
  var data = JSON.parse(document.getElementById("explorer-data").textContent);

  function nodeIn(section, name) {
    var found = null;
    section.querySelectorAll("[data-node]").forEach(function (el) {
      if (el.dataset.node === name) { found = el; }
    });
    return found;
  }

  function openRows(section, name) {
    var node = nodeIn(section, name);
    if (!node) { return null; }
    for (var el = node; el && el !== section; el = el.parentElement) {
      if (el.tagName === "DETAILS") { el.open = true; }
    }
    section.querySelectorAll(".hit").forEach(function (el) { el.classList.remove("hit"); });
    node.classList.add("hit");
    node.scrollIntoView({ block: "nearest" });
    return node;
  }

  function onBoxClick(event) {
    var box = event.target.closest("rect[data-name], rect[data-block]");
    if (!box) { return; }
    var section = box.closest("section.model");
    section.querySelectorAll("rect.selected").forEach(function (r) {
      r.classList.remove("selected");
    });
    box.classList.add("selected");
    openRows(section, box.dataset.block || box.dataset.name);
    section.dataset.opened = box.dataset.block || box.dataset.name;
  }

  document.querySelectorAll("section.model").forEach(function (section) {
    section.querySelector(".diagram").addEventListener("click", onBoxClick);
    var marks = data.marks[section.dataset.pane] || {};
    section.querySelectorAll("[data-node]").forEach(function (el) {
      var mark = marks[el.dataset.node];
      if (mark) {
        (el.tagName === "DETAILS" ? el.querySelector("summary") : el).classList.add(mark);
      }
    });
    section.querySelectorAll(".diagram rect[data-name]").forEach(function (r) {
      var key = r.dataset.block ? r.dataset.block : r.dataset.name;
      if (marks[key] || marks[r.dataset.name]) { r.classList.add("diff"); }
    });
  });

  var match = /open=([^&]+)/.exec(window.location.hash);
  if (match) {
    var name = decodeURIComponent(match[1]);
    var box = document.querySelector(
      'rect[data-block="' + name + '"], rect[data-name="' + name + '"]');
    if (box) { box.dispatchEvent(new MouseEvent("click", { bubbles: true })); }
  }
  document.body.dataset.ready = "1";
})();
"""
