{% raw %}
// The leaderboard page. Data come from the inline JSON block; every string from a run is
// inserted with textContent or setAttribute, never as markup. The ranking rules mirror
// mmeval/report/opencompass.py and are recomputed for the visible models and selected groups.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("data").textContent);
  var LB = DATA.leaderboard;
  var SVG = "http://www.w3.org/2000/svg";
  var RUN_DIRS = {};
  DATA.runs.forEach(function (r) { RUN_DIRS[r.run_id] = r.dir; });
  var state = { sort: null, dir: 1, groups: new Set(LB.groups), open: "all", size: "all", modality: "all", query: "" };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function fmt(v, d) { return v === null || v === undefined ? "-" : Number(v).toFixed(d === undefined ? 2 : d); }
  function mean(xs) { return xs.reduce(function (a, b) { return a + b; }, 0) / xs.length; }
  function rankValues(values, higher) {
    return values.map(function (v) { return 1 + values.filter(function (w) { return higher ? w > v : w < v; }).length; });
  }
  function cardText(col, v) {
    if (v === null || v === undefined) return "-";
    if (col === "open_weights") return v ? "open" : "closed";
    if (col === "params" && typeof v === "number") {
      var units = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
      for (var i = 0; i < units.length; i++) if (v >= units[i][0]) return (v / units[i][0]).toPrecision(3).replace(/\.?0+$/, "") + units[i][1];
      return String(v);
    }
    return String(v);
  }
  function runLink(runId) {
    var a = el("a", { class: "run", href: "runs/" + encodeURIComponent(RUN_DIRS[runId] || "") + "/index.html" }, runId);
    return a;
  }
  // A whisker: CI line and a dot at the value, on the column's [lo, hi] scale.
  function whisker(value, low, high, lo, hi, width) {
    width = width || 70;
    var s = svgEl("svg", { width: width, height: 10, class: "whisker", "aria-hidden": "true" });
    var span = hi - lo || 1;
    function x(v) { return 3 + (width - 6) * (v - lo) / span; }
    if (low !== null && high !== null && low !== undefined && high !== undefined) {
      s.appendChild(svgEl("line", { x1: x(low), x2: x(high), y1: 5, y2: 5, stroke: "#7a8699", "stroke-width": 1.5 }));
      s.appendChild(svgEl("line", { x1: x(low), x2: x(low), y1: 2, y2: 8, stroke: "#7a8699" }));
      s.appendChild(svgEl("line", { x1: x(high), x2: x(high), y1: 2, y2: 8, stroke: "#7a8699" }));
    }
    s.appendChild(svgEl("circle", { cx: x(value), cy: 5, r: 2.5, fill: "#2b6cb0" }));
    return s;
  }

  // ------------------------------------------------------------------ filters
  function fillSelect(id, values) {
    var sel = document.getElementById(id);
    values.forEach(function (v) { sel.appendChild(el("option", { value: v }, v)); });
  }
  var sizes = Array.from(new Set(LB.models.map(function (m) { return m.size; })));
  var order = ["<3B", "3-10B", "10-30B", ">30B", "unknown"];
  sizes.sort(function (a, b) { return order.indexOf(a) - order.indexOf(b); });
  fillSelect("f-size", sizes);
  var mods = new Set();
  LB.models.forEach(function (m) { m.inputs.concat(m.outputs).forEach(function (x) { mods.add(x); }); });
  fillSelect("f-modality", Array.from(mods).sort());
  var groupBox = document.getElementById("f-groups");
  LB.groups.forEach(function (g) {
    var label = el("label");
    var box = el("input", { type: "checkbox", name: "group", value: g });
    box.checked = true;
    box.addEventListener("change", function () { if (box.checked) state.groups.add(g); else state.groups.delete(g); render(); });
    label.appendChild(box);
    label.appendChild(document.createTextNode(" " + g + " "));
    groupBox.appendChild(label);
  });
  [["f-open", "open"], ["f-size", "size"], ["f-modality", "modality"], ["f-query", "query"]].forEach(function (p) {
    var e = document.getElementById(p[0]);
    e.addEventListener(p[0] === "f-query" ? "input" : "change", function () { state[p[1]] = e.value; render(); });
  });
  function visible(m) {
    var ow = m.card.open_weights;
    if (state.open === "open" && ow !== true) return false;
    if (state.open === "closed" && ow !== false) return false;
    if (state.size !== "all" && m.size !== state.size) return false;
    if (state.modality !== "all" && m.inputs.concat(m.outputs).indexOf(state.modality) < 0) return false;
    if (state.query && m.model.toLowerCase().indexOf(state.query.toLowerCase()) < 0) return false;
    return true;
  }

  // ------------------------------------------------------------------ ranking (mirrors opencompass.py)
  function compute() {
    var selected = LB.benchmarks.filter(function (b) { return state.groups.has(b.group); });
    var models = LB.models.filter(function (m) { return visible(m) && selected.some(function (b) { return m.scores[b.label]; }); });
    var averaged = selected.filter(function (b) { return b.average; });
    var ranks = {};
    selected.forEach(function (b) {
      var have = models.filter(function (m) { return m.scores[b.label]; });
      var r = rankValues(have.map(function (m) { return m.scores[b.label].value; }), b.direction === "higher");
      ranks[b.label] = new Map(have.map(function (m, i) { return [m.model, r[i]]; }));
    });
    var rows = models.map(function (m) {
      var row = { m: m, complete: selected.length > 0 && selected.every(function (b) { return m.scores[b.label]; }), avg: null, hw: null, avgRank: null, rank: null };
      row.count = selected.filter(function (b) { return m.scores[b.label]; }).length;
      if (row.complete) {
        row.avgRank = mean(selected.map(function (b) { return ranks[b.label].get(m.model); }));
        if (averaged.length) {
          row.avg = mean(averaged.map(function (b) { return m.scores[b.label].value; }));
          var hws = averaged.map(function (b) { return m.scores[b.label].half_width; });
          if (hws.every(function (h) { return h !== null && h !== undefined; })) {
            row.hw = Math.sqrt(hws.reduce(function (a, h) { return a + h * h; }, 0)) / averaged.length;
          }
        }
      }
      return row;
    });
    var ranked = rows.filter(function (r) { return r.complete; });
    var key = averaged.length ? "avg" : "avgRank";
    var rr = rankValues(ranked.map(function (r) { return r[key]; }), averaged.length > 0);
    ranked.forEach(function (r, i) { r.rank = rr[i]; });
    return { rows: rows, selected: selected, ranks: ranks };
  }

  function columns(selected) {
    var cols = [{ key: "rank", title: "Rank", better: "lower" }, { key: "model", title: "Model", text: true }];
    LB.columns.forEach(function (c) { cols.push({ key: "card:" + c, card: c, title: LB.column_titles[c], text: c !== "params", better: "higher" }); });
    cols.push({ key: "avg", title: "Avg score", better: "higher" }, { key: "avgRank", title: "Avg rank", better: "lower" });
    selected.forEach(function (b) { cols.push({ key: "b:" + b.label, bench: b, title: b.label, better: b.direction }); });
    return cols;
  }
  function sortValue(row, col) {
    if (col.bench) { var s = row.m.scores[col.bench.label]; return s ? s.value : null; }
    if (col.card) { var v = row.m.card[col.card]; return v === undefined ? null : v; }
    if (col.key === "model") return row.m.model;
    return row[col.key];
  }
  function defaultOrder(a, b) {
    if (a.rank !== null && b.rank !== null) return a.rank - b.rank || (a.avgRank - b.avgRank) || (a.m.model < b.m.model ? -1 : 1);
    if (a.rank !== null) return -1;
    if (b.rank !== null) return 1;
    return b.count - a.count || (a.m.model < b.m.model ? -1 : a.m.model > b.m.model ? 1 : 0);
  }

  // ------------------------------------------------------------------ the table
  function render() {
    var res = compute();
    var cols = columns(res.selected);
    var rows = res.rows.slice();
    var sortCol = cols.filter(function (c) { return c.key === state.sort; })[0];
    if (sortCol) {
      // First click: best first (descending when higher is better); text ascending. Missing last.
      var sign = (sortCol.text ? 1 : sortCol.better === "higher" ? -1 : 1) * state.dir;
      rows.sort(function (a, b) {
        var x = sortValue(a, sortCol), y = sortValue(b, sortCol);
        if (x === null && y === null) return defaultOrder(a, b);
        if (x === null) return 1;
        if (y === null) return -1;
        if (x < y) return -sign;
        if (x > y) return sign;
        return defaultOrder(a, b);
      });
    } else {
      rows.sort(defaultOrder);
    }
    var table = document.getElementById("leaderboard");
    var head = el("tr");
    cols.forEach(function (c) {
      var th = el("th", { "data-key": c.key, class: c.text ? "text" : "" }, c.title);
      if (c.bench) {
        th.setAttribute("title", c.bench.task + " / " + c.bench.metric + " (" + c.bench.group + "); " + (c.bench.direction === "higher" ? "higher" : "lower") +
          " is better; normalised " + c.bench.normalise + (c.bench.average ? "" : "; not in the average"));
      }
      if (state.sort === c.key) th.appendChild(el("span", { class: "arrow" }, state.dir === 1 ? "\u25BC" : "\u25B2"));
      th.addEventListener("click", function () {
        if (state.sort === c.key) state.dir = -state.dir; else { state.sort = c.key; state.dir = 1; }
        render();
      });
      head.appendChild(th);
    });
    table.tHead.replaceChildren(head);
    var scale = {};
    res.selected.forEach(function (b) {
      var lo = Infinity, hi = -Infinity;
      rows.forEach(function (r) {
        var s = r.m.scores[b.label];
        if (!s) return;
        [s.value, s.ci_low, s.ci_high].forEach(function (v) { if (v !== null && v !== undefined) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
      });
      scale[b.label] = [lo, hi];
    });
    var body = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr", { class: "model-row" + (r.rank === null ? " incomplete" : ""), "data-model": r.m.model });
      cols.forEach(function (c) {
        var td;
        if (c.key === "rank") td = el("td", { class: "rank" }, r.rank === null ? "-" : r.rank);
        else if (c.key === "model") {
          td = el("td", { class: "text model" });
          td.appendChild(el("span", { class: "label" }, r.m.model));
          var links = el("div");
          r.m.runs.forEach(function (id) { links.appendChild(runLink(id)); });
          td.appendChild(links);
        } else if (c.card) td = el("td", { class: c.text ? "text" : "" }, cardText(c.card, r.m.card[c.card]));
        else if (c.key === "avg") {
          td = el("td", { class: "avg" }, fmt(r.avg));
          if (r.hw !== null) td.setAttribute("title", "\u00B1 " + fmt(r.hw) + " (95% CI half-width)");
        } else if (c.key === "avgRank") td = el("td", { class: "avg-rank" }, fmt(r.avgRank));
        else {
          var s = r.m.scores[c.bench.label];
          td = el("td", { class: "score" });
          if (!s) td.textContent = "-";
          else {
            td.appendChild(el("span", { class: "value" }, fmt(s.value)));
            var ci = s.ci_low === null ? "no CI" : "95% CI [" + fmt(s.ci_low) + ", " + fmt(s.ci_high) + "]";
            td.setAttribute("title", ci + "; n=" + s.n + "; raw " + s.raw + "; rank " + res.ranks[c.bench.label].get(r.m.model) + "; run " + s.run);
            var sc = scale[c.bench.label];
            td.appendChild(el("span", { class: "ci" })).appendChild(whisker(s.value, s.ci_low, s.ci_high, sc[0], sc[1]));
          }
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.replaceChild(body, table.tBodies[0]);
  }

  // ------------------------------------------------------------------ arena
  function renderArena() {
    var A = DATA.arena;
    if (!A || !A.models || !A.models.length) return;
    document.getElementById("arena-section").hidden = false;
    document.getElementById("arena-note").textContent = "Bradley-Terry ratings from " + A.n_battles + " paired per-sample battles on " +
      A.benchmarks.join(", ") + " (higher per-sample score wins; equal scores tie); 95% CI from " + A.rounds +
      " bootstrap rounds. Rank (UB): 1 + models whose CI lies entirely above.";
    var t = document.getElementById("arena");
    var head = el("tr");
    ["Rank (UB)", "Model", "Rating", "95% CI", "Battles", "Win rate"].forEach(function (h, i) { head.appendChild(el("th", { class: i === 1 ? "text" : "" }, h)); });
    t.tHead.replaceChildren(head);
    var body = el("tbody");
    A.models.forEach(function (m) {
      var tr = el("tr", { class: "arena-row" });
      tr.appendChild(el("td", {}, m.rank_ub));
      tr.appendChild(el("td", { class: "text" }, m.model));
      tr.appendChild(el("td", {}, fmt(m.rating, 1)));
      tr.appendChild(el("td", {}, m.ci_low === null ? "-" : "[" + fmt(m.ci_low, 0) + ", " + fmt(m.ci_high, 0) + "]"));
      tr.appendChild(el("td", {}, m.votes));
      tr.appendChild(el("td", {}, m.win_rate === null ? "-" : (100 * m.win_rate).toFixed(1) + "%"));
      body.appendChild(tr);
    });
    t.replaceChild(body, t.tBodies[0]);
    document.getElementById("arena-plot").appendChild(intervalPlot(A.models.map(function (m) {
      return { label: m.model, value: m.rating, low: m.ci_low, high: m.ci_high };
    }), "rating"));
  }

  // Horizontal interval plot: one row per item, dot at the value, whiskers at the CI.
  function intervalPlot(items, axis) {
    var W = 640, left = 220, rowH = 18, H = items.length * rowH + 30;
    var lo = Infinity, hi = -Infinity;
    items.forEach(function (it) {
      [it.value, it.low, it.high].forEach(function (v) { if (v !== null && v !== undefined) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    if (lo === hi) { lo -= 1; hi += 1; }
    var s = svgEl("svg", { width: W, height: H, class: "interval-plot", role: "img" });
    function x(v) { return left + (W - left - 20) * (v - lo) / (hi - lo); }
    items.forEach(function (it, i) {
      var y = 10 + i * rowH + rowH / 2;
      var label = svgEl("text", { x: left - 8, y: y + 4, "text-anchor": "end" });
      label.textContent = it.label.length > 34 ? it.label.slice(0, 33) + "\u2026" : it.label;
      s.appendChild(label);
      if (it.low !== null && it.high !== null && it.low !== undefined) {
        s.appendChild(svgEl("line", { x1: x(it.low), x2: x(it.high), y1: y, y2: y, stroke: "#7a8699", "stroke-width": 2 }));
        s.appendChild(svgEl("line", { x1: x(it.low), x2: x(it.low), y1: y - 4, y2: y + 4, stroke: "#7a8699" }));
        s.appendChild(svgEl("line", { x1: x(it.high), x2: x(it.high), y1: y - 4, y2: y + 4, stroke: "#7a8699" }));
      }
      s.appendChild(svgEl("circle", { cx: x(it.value), cy: y, r: 4, fill: "#2b6cb0" }));
    });
    var axisY = H - 12;
    [lo, (lo + hi) / 2, hi].forEach(function (v) {
      var tx = svgEl("text", { x: x(v), y: axisY + 8, "text-anchor": "middle" });
      tx.textContent = fmt(v, 0);
      s.appendChild(tx);
    });
    var name = svgEl("text", { x: left - 40, y: axisY + 8, "text-anchor": "end" });
    name.textContent = axis;
    s.appendChild(name);
    return s;
  }

  // ------------------------------------------------------------------ architecture view
  function renderArchitecture() {
    var V = DATA.architecture;
    document.getElementById("architecture-note").textContent = V.note;
    var root = document.getElementById("architecture");
    Object.keys(V.dimensions).forEach(function (dim) {
      var groups = V.groups.filter(function (g) { return g.dimension === dim; });
      if (!groups.length) return;
      root.appendChild(el("h3", {}, V.dimensions[dim]));
      var t = el("table", { class: "architecture", "data-dimension": dim });
      var head = el("tr");
      head.appendChild(el("th", { class: "text" }, V.dimensions[dim]));
      head.appendChild(el("th", {}, "Models (n)"));
      V.columns.forEach(function (c) { head.appendChild(el("th", {}, c)); });
      t.appendChild(el("thead")).appendChild(head);
      var body = el("tbody");
      groups.forEach(function (g) {
        var tr = el("tr");
        tr.appendChild(el("td", { class: "text", title: g.models.join("\n") }, g.value));
        tr.appendChild(el("td", {}, g.n));
        V.columns.forEach(function (c) {
          var a = g.scores[c];
          var td = el("td", {}, a ? fmt(a.mean) + (a.ci_low === null ? "" : " [" + fmt(a.ci_low) + ", " + fmt(a.ci_high) + "]") + " (n=" + a.n + ")" : "-");
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      t.appendChild(body);
      root.appendChild(el("div", { class: "scroll" })).appendChild(t);
      var items = groups.filter(function (g) { return g.scores[V.columns[0]]; }).map(function (g) {
        var a = g.scores[V.columns[0]];
        return { label: g.value + " (n=" + a.n + ")", value: a.mean, low: a.ci_low, high: a.ci_high };
      });
      if (items.length) root.appendChild(intervalPlot(items, V.columns[0]));
    });
  }

  // ------------------------------------------------------------------ runs and warnings
  function renderRuns() {
    var t = document.getElementById("runs");
    var head = el("tr");
    ["Run", "Model", "Status", "Finished", "Tasks"].forEach(function (h) { head.appendChild(el("th", { class: "text" }, h)); });
    t.tHead.replaceChildren(head);
    var body = el("tbody");
    DATA.runs.forEach(function (r) {
      var tr = el("tr");
      var td = el("td", { class: "text" });
      td.appendChild(runLink(r.run_id));
      tr.appendChild(td);
      [r.model, r.status, r.finished, r.tasks.join(", ")].forEach(function (v) { tr.appendChild(el("td", { class: "text" }, v === null ? "-" : v)); });
      body.appendChild(tr);
    });
    t.replaceChild(body, t.tBodies[0]);
    var warnings = DATA.warnings.concat((DATA.arena && DATA.arena.warnings) || []);
    if (warnings.length) {
      document.getElementById("warnings-section").hidden = false;
      var ul = document.getElementById("warnings");
      Array.from(new Set(warnings)).forEach(function (w) { ul.appendChild(el("li", {}, w)); });
    }
  }

  render();
  renderArena();
  renderArchitecture();
  renderRuns();
})();
{% endraw %}
