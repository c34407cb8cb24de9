{% raw %}
// Per-run drill-down. Samples are in separate files (samples-<task>-<k>.js, DATA.per_file
// samples each, whole pages), each calling MMEVAL_PAGE(task, k, "<base64 jsonl>"), loaded with
// <script src> when a page needs them, because file:// forbids
// fetch(). Everything from a sample is shown with textContent; media paths must match the
// run's content-addressed artifacts/ layout before they become a src.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("data").textContent);
  var ART = /^artifacts\/[0-9a-f]{2}\/[0-9a-f]{64}\.[A-Za-z0-9]{1,8}$/;
  var IMAGE = { png: 1, apng: 1, gif: 1, webp: 1, jpg: 1, jpeg: 1 };
  var chunks = {};
  var state = { task: 0, page: 1 };
  var taskSel = document.getElementById("task");
  var status = document.getElementById("status");

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function show(v) {
    if (v === null || v === undefined) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  function key(task, k) { return task + "\u0000" + k; }
  function fileOf(page) { return Math.floor((page - 1) * DATA.page_size / DATA.per_file) + 1; }
  function records(t, page) {
    var chunk = chunks[key(t.name, fileOf(page))];
    if (!chunk) return null;
    var start = ((page - 1) * DATA.page_size) % DATA.per_file;
    return chunk.slice(start, start + DATA.page_size);
  }

  function decode(b64) {
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder("utf-8").decode(bytes);
  }

  window.MMEVAL_PAGE = function (task, k, b64) {
    var lines = decode(b64).split("\n");
    if (lines.length && lines[lines.length - 1] === "") lines.pop();  // the final newline
    chunks[key(task, k)] = lines.map(function (line) {
      try { return JSON.parse(line); } catch (e) { return { __unreadable: line }; }
    });
    var t = DATA.tasks[state.task];
    if (t && t.name === task && fileOf(state.page) === k) render();
  };

  function media(rec) {
    var td = el("td", { class: "media" });
    (rec.artifacts || []).forEach(function (a) {
      if (!a || typeof a.path !== "string" || !ART.test(a.path)) { td.appendChild(el("div", { class: "muted" }, "(media path refused)")); return; }
      var fmt = String(a.format || "").toLowerCase();
      var node;
      if (a.modality === "audio") node = el("audio", { controls: "", preload: "none", src: a.path });
      else if (a.modality === "video" && !IMAGE[fmt]) node = el("video", { controls: "", preload: "none", src: a.path });
      else node = el("img", { src: a.path, alt: a.modality + " output", loading: "lazy" });  // images, and videos as APNG
      td.appendChild(node);
    });
    return td;
  }

  function num(v) { return typeof v === "number" ? String(Number(v.toPrecision(4))) : show(v); }

  function render() {
    var t = DATA.tasks[state.task];
    var recs = t ? records(t, state.page) : [];
    // The prompt column only when the samples carry one (run files store its hash by default).
    var hasPrompt = (recs || []).some(function (r) { return r.prompt !== undefined && r.prompt !== null; });
    var cols = ["#", "doc id"].concat(hasPrompt ? ["prompt"] : [], ["target", "response", "parsed", "extraction", "scores", "error", "media"]);
    var table = document.getElementById("samples");
    var head = el("tr");
    cols.forEach(function (c) { head.appendChild(el("th", { class: "text" }, c)); });
    table.tHead.replaceChildren(head);
    var body = el("tbody");
    document.getElementById("page-info").textContent = t ? "page " + state.page + " of " + t.pages + " (" + t.n + " samples)" : "no samples";
    document.getElementById("page-jump").value = state.page;
    document.getElementById("prev").disabled = !t || state.page <= 1;
    document.getElementById("next").disabled = !t || state.page >= t.pages;
    if (recs) {
      status.textContent = "";
      recs.forEach(function (rec, i) {
        var tr = el("tr", { class: "sample" });
        tr.appendChild(el("td", {}, (state.page - 1) * DATA.page_size + i + 1));
        if (rec.__unreadable !== undefined) {
          tr.appendChild(el("td", { class: "sample-text", colspan: cols.length - 1 }, "unreadable sample line: " + rec.__unreadable));
        } else {
          tr.appendChild(el("td", { class: "text" }, show(rec.doc_id)));
          if (hasPrompt) tr.appendChild(el("td", { class: "sample-text prompt" }, show(rec.prompt)));
          tr.appendChild(el("td", { class: "sample-text" }, show(rec.target)));
          tr.appendChild(el("td", { class: "sample-text response" }, show(rec.response)));
          tr.appendChild(el("td", { class: "sample-text parsed" }, show(rec.parsed)));
          tr.appendChild(el("td", { class: "text" }, show(rec.extraction)));
          var scores = rec.scores || {};
          tr.appendChild(el("td", { class: "sample-text" }, Object.keys(scores).map(function (k) { return k + ": " + num(scores[k]); }).join("\n")));
          tr.appendChild(el("td", { class: "sample-text" }, show(rec.error)));
          tr.appendChild(media(rec));
        }
        body.appendChild(tr);
      });
    } else if (t) {
      status.textContent = "loading page " + state.page + "\u2026";
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  function load() {
    var t = DATA.tasks[state.task];
    render();
    if (!t || t.pages === 0 || records(t, state.page)) return;
    var s = document.createElement("script");
    s.src = "samples-" + encodeURIComponent(t.file) + "-" + fileOf(state.page) + ".js";
    s.onerror = function () { status.textContent = "could not load " + s.src; };
    document.body.appendChild(s);
  }

  DATA.tasks.forEach(function (t, i) { taskSel.appendChild(el("option", { value: i }, t.name + " (" + t.n + ")")); });
  taskSel.addEventListener("change", function () { state.task = Number(taskSel.value); state.page = 1; load(); });
  document.getElementById("prev").addEventListener("click", function () { if (state.page > 1) { state.page -= 1; load(); } });
  document.getElementById("next").addEventListener("click", function () {
    var t = DATA.tasks[state.task];
    if (t && state.page < t.pages) { state.page += 1; load(); }
  });
  document.getElementById("page-jump").addEventListener("change", function (e) {
    var t = DATA.tasks[state.task];
    var p = Math.max(1, Math.min(t ? t.pages : 1, Number(e.target.value) || 1));
    state.page = p;
    load();
  });
  load();
})();
{% endraw %}
