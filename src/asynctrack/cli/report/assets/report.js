/* asynctrack report. Every string that comes from a log is set with textContent or
   passed to uPlot as a number: nothing from the data is ever parsed as markup. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var charts = {};
  var selectedFunction = null;
  var selectedLog = null;

  // -- helpers -------------------------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, key)) node.setAttribute(key, attrs[key]);
      }
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function pickable(row, action) {
    row.setAttribute("tabindex", "0");
    row.addEventListener("click", action);
    row.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); action(); }
    });
  }
  function num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  var UNITS = [[1e3, 1, " µs"], [1e6, 1e3, " ms"], [6e7, 1e6, " s"], [3.6e9, 6e7, " min"],
    [8.64e10, 3.6e9, " h"], [Infinity, 8.64e10, " d"]];
  function dur(us) {
    if (us === null || us === undefined) return "–";
    if (us < 1000) return Math.round(us) + " µs";
    for (var i = 1; i < UNITS.length; i++) {
      if (Math.abs(us) < UNITS[i][0]) {
        var v = us / UNITS[i][1];
        return (Math.abs(v) >= 100 ? String(Math.round(v)) : v.toPrecision(3)) + UNITS[i][2];
      }
    }
    return String(us);
  }
  function pct(part, whole) { return whole ? (100 * part / whole).toFixed(2) + " %" : "–"; }
  function utc(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "") + " UTC";
  }
  function text(value) {
    if (value === null || value === undefined) return "null";
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }
  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }
  function table(node, headers, rows) {
    clear(node);
    var thead = el("thead"), tr = el("tr");
    headers.forEach(function (h) { tr.appendChild(el("th", { scope: "col" }, h)); });
    thead.appendChild(tr);
    node.appendChild(thead);
    var tbody = el("tbody");
    rows.forEach(function (row) {
      var r = el("tr");
      row.forEach(function (cell) { r.appendChild(el("td", null, cell)); });
      tbody.appendChild(r);
    });
    node.appendChild(tbody);
    return tbody;
  }

  // -- header and overview ---------------------------------------------------------------
  var P = D.percentiles, O = D.overview, byLabel = D.by || "user";
  document.getElementById("meta").textContent =
    D.source + " · " + utc(D.window[0]) + " → " + utc(D.window[1]) + " · generated " + D.generated;
  var cards = document.getElementById("cards");
  [
    ["Time window", D.window[0] === null ? "–" : dur((D.window[1] - D.window[0]) * 1e6)],
    ["Requests", num(O.requests)],
    ["Distinct " + byLabel + " values", num(O.keys)],
    ["Failed requests", pct(O.failed, O.requests)],
    ["Calls", num(O.calls)]
  ].concat(P.map(function (p, i) { return ["Request p" + p, dur(O.p[i])]; }))
    .forEach(function (card) {
      var c = el("div", { "class": "card" });
      c.appendChild(el("div", { "class": "label" }, card[0]));
      c.appendChild(el("div", { "class": "value" }, card[1]));
      cards.appendChild(c);
    });
  document.getElementById("h-users").textContent = "Most active (" + byLabel + ")";

  // -- charts -----------------------------------------------------------------------------
  function axisStyle(extra) {
    var base = { stroke: css("--muted"), grid: { stroke: css("--grid"), width: 1 },
      ticks: { stroke: css("--grid"), width: 1 } };
    for (var k in extra) base[k] = extra[k];
    return base;
  }
  function durAxis(side, scale) {
    return axisStyle({ scale: scale, side: side, size: 64,
      values: function (u, vals) { return vals.map(function (v) { return v === null ? "" : dur(v); }); } });
  }
  function fromZero(u, min, max) { return [0, max > 0 ? max * 1.05 : 1]; }
  function tz(ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); }
  function makeChart(id, opts, data) {
    var box = document.getElementById(id);
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    var width = Math.max(300, box.clientWidth - 16);
    opts.width = width;
    opts.height = 220;
    opts.tzDate = tz;
    opts.legend = { live: true };
    opts.cursor = { points: { size: 6 } };
    charts[id] = new uPlot(opts, data, box);
  }
  var S = D.series;
  var failedShare = S.t.map(function (_, i) {
    return S.requests[i] ? 100 * S.failed[i] / S.requests[i] : null;
  });
  function drawTimeCharts() {
    makeChart("chart-requests", {
      scales: { x: { time: true }, y: { range: fromZero }, share: { range: [0, 100] } },
      axes: [axisStyle({}), axisStyle({ size: 56 }),
        axisStyle({ scale: "share", side: 1, grid: { show: false },
          values: function (u, vals) { return vals.map(function (v) { return v + " %"; }); } })],
      series: [{}, { label: "requests", fill: css("--bar"), stroke: css("--c1"), width: 0,
        paths: uPlot.paths.bars({ size: [0.8, 40] }) },
        { label: "failed %", scale: "share", stroke: css("--err"), width: 1.5, spanGaps: false,
          value: function (u, v) { return v === null ? "–" : v.toFixed(2) + " %"; } }]
    }, [S.t, S.requests, failedShare]);
    var colors = [css("--c1"), css("--c2"), css("--c3")];
    makeChart("chart-latency", {
      scales: { x: { time: true }, y: { range: fromZero } },
      axes: [axisStyle({}), durAxis(3, "y")],
      series: [{}].concat(P.map(function (p, i) {
        return { label: "p" + p, stroke: colors[i % 3], width: 1.5, spanGaps: true,
          value: function (u, v) { return dur(v); } };
      }))
    }, [S.t].concat(S.p));
  }
  table(document.getElementById("table-time"),
    ["bucket start (UTC)", "requests", "failed", "failed %"].concat(P.map(function (p) { return "p" + p; })),
    S.t.map(function (t, i) {
      return [utc(t), num(S.requests[i]), num(S.failed[i]), pct(S.failed[i], S.requests[i])]
        .concat(S.p.map(function (col) { return dur(col[i]); }));
    }));

  // -- functions ---------------------------------------------------------------------------
  // Row layout: name, calls, errors, total, max, p50, p95, p99, share of total time.
  var F = D.functions.slice();
  var fnColumns = [
    ["function", 0, String], ["calls", 1, num], ["errors", 2, num],
    ["error %", -1, null], ["p" + P[0], 5, dur], ["p" + P[1], 6, dur], ["p" + P[2], 7, dur],
    ["max", 4, dur], ["share of time", 8, function (v) { return (100 * v).toFixed(1) + " %"; }]
  ];
  var sortState = { column: 1, descending: true };
  function fnValue(row, column) {
    var index = fnColumns[column][1];
    return index === -1 ? (row[1] ? row[2] / row[1] : 0) : row[index];
  }
  function renderFunctions() {
    var node = document.getElementById("table-functions");
    clear(node);
    var thead = el("thead"), tr = el("tr");
    fnColumns.forEach(function (col, i) {
      var th = el("th", { scope: "col" });
      if (i === sortState.column) th.setAttribute("aria-sort", sortState.descending ? "descending" : "ascending");
      var b = el("button", { type: "button", "data-column": String(i) }, col[0]);
      b.addEventListener("click", function () {
        if (sortState.column === i) sortState.descending = !sortState.descending;
        else { sortState.column = i; sortState.descending = i !== 0; }
        renderFunctions();
      });
      th.appendChild(b);
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    node.appendChild(thead);
    var column = sortState.column, sign = sortState.descending ? -1 : 1;
    F.sort(function (a, b) {
      var x = fnValue(a, column), y = fnValue(b, column);
      if (x < y) return -sign;
      if (x > y) return sign;
      return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
    });
    var tbody = el("tbody");
    F.forEach(function (row) {
      var r = el("tr", { "class": "pick" + (row[0] === selectedFunction ? " selected" : "") });
      fnColumns.forEach(function (col, i) {
        var cell;
        if (col[1] === -1) cell = el("td", null, pct(row[2], row[1]));
        else cell = el("td", i === 0 ? { "class": "name", title: row[0] } : null, col[2](row[col[1]]));
        if (i === 3 && row[2]) cell.className = "err";
        r.appendChild(cell);
      });
      pickable(r, function () { selectFunction(row[0]); });
      tbody.appendChild(r);
    });
    node.appendChild(tbody);
  }
  var select = document.getElementById("function-select");
  D.functions.forEach(function (row) {
    select.appendChild(el("option", { value: row[0] }, row[0]));
  });
  select.addEventListener("change", function () { selectFunction(select.value); });
  function drawFunctionChart() {
    var box = document.getElementById("chart-function");
    var name = selectedFunction, s = name === null ? null : D.functionSeries[name];
    var node = document.getElementById("table-function");
    if (!s) {
      if (charts["chart-function"]) { charts["chart-function"].destroy(); delete charts["chart-function"]; }
      var old = box.querySelector(".note");
      if (old) old.remove();
      box.appendChild(el("p", { "class": "note muted" }, name === null ? "No function recorded." :
        "No time series for this function (the page keeps them for the busiest functions)."));
      clear(node);
      return;
    }
    var note = box.querySelector(".note");
    if (note) note.remove();
    box.setAttribute("data-function", name);
    makeChart("chart-function", {
      scales: { x: { time: true }, y: { range: fromZero }, us: { range: fromZero } },
      axes: [axisStyle({}), axisStyle({ size: 56 }), durAxis(1, "us")],
      series: [{}, { label: "calls", fill: css("--bar"), stroke: css("--c1"), width: 0,
        paths: uPlot.paths.bars({ size: [0.8, 40] }) },
        { label: "avg", scale: "us", stroke: css("--c4"), width: 1.5, spanGaps: true, value: function (u, v) { return dur(v); } },
        { label: "max", scale: "us", stroke: css("--c2"), width: 1.5, spanGaps: true, value: function (u, v) { return dur(v); } }]
    }, [S.t, s.calls, s.avg, s.max]);
    table(node, ["bucket start (UTC)", "calls", "errors", "avg", "max"], S.t.map(function (t, i) {
      return [utc(t), num(s.calls[i]), num(s.errors[i]), dur(s.avg[i]), dur(s.max[i])];
    }));
  }
  function selectFunction(name) {
    selectedFunction = name;
    select.value = name;
    renderFunctions();
    drawFunctionChart();
  }

  // -- users ----------------------------------------------------------------------------------
  table(document.getElementById("table-groups"),
    [byLabel, "requests", "failed", "failed %", "last seen"],
    D.groups.map(function (g) {
      return [g[0] === null ? "(none)" : String(g[0]), num(g[1]), num(g[2]), pct(g[2], g[1]), utc(g[3])];
    }));
  (function heatmap() {
    var node = document.getElementById("table-heat");
    var days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    var max = Math.max.apply(null, D.heat.concat([1]));
    var thead = el("thead"), tr = el("tr");
    tr.appendChild(el("th", { scope: "col" }, "day \\ hour"));
    for (var h = 0; h < 24; h++) tr.appendChild(el("th", { scope: "col" }, String(h)));
    thead.appendChild(tr);
    node.appendChild(thead);
    var tbody = el("tbody");
    days.forEach(function (day, d) {
      var row = el("tr");
      row.appendChild(el("th", { scope: "row" }, day));
      for (var h = 0; h < 24; h++) {
        var n = D.heat[d * 24 + h];
        var cell = el("td", { title: day + " " + h + ":00 UTC: " + n + " requests" }, n ? num(n) : "");
        if (n) cell.style.backgroundColor = "rgba(" + css("--heat") + "," + (0.12 + 0.88 * n / max).toFixed(3) + ")";
        row.appendChild(cell);
      }
      tbody.appendChild(row);
    });
    node.appendChild(tbody);
  })();

  // -- requests and waterfall ------------------------------------------------------------------
  function rootOf(log) { return log.calls && log.calls.length ? log.calls[0] : null; }
  function requestTable(id, logs) {
    var node = document.getElementById(id);
    var tbody = table(node, ["started (UTC)", "duration", "request", byLabel, "status"], []);
    node.querySelectorAll("th").forEach(function (th, i) { if (i >= 2) th.className = "text"; });
    logs.forEach(function (log, i) {
      var root = rootOf(log);
      var info = log.info && typeof log.info === "object" ? log.info : {};
      var r = el("tr", { "class": "pick", "data-index": String(i), "data-id": text(log.id) });
      r.appendChild(el("td", { title: text(log.started_at) }, text(log.started_at).replace("T", " ").slice(5, 23)));
      r.appendChild(el("td", null, dur(log.duration_us)));
      r.appendChild(el("td", { "class": "name", title: root ? text(root.function) : "" }, root ? text(root.function) : "(no calls)"));
      r.appendChild(el("td", { "class": "text" }, info[byLabel] === undefined ? "" : text(info[byLabel])));
      var status = root ? text(root.status) : "";
      r.appendChild(el("td", status === "error" ? { "class": "err" } : null, status));
      pickable(r, function () {
        document.querySelectorAll("#requests tbody tr.selected").forEach(function (x) { x.classList.remove("selected"); });
        r.classList.add("selected");
        showWaterfall(log);
      });
      tbody.appendChild(r);
    });
    if (!logs.length) tbody.appendChild(el("tr")).appendChild(el("td", { colspan: "5", "class": "muted" }, "none"));
  }
  function treeOrder(calls) {
    // Calls nested by their parent link; logs written before it existed nest by depth.
    var hasParent = calls.some(function (c) { return c && typeof c.parent === "number"; });
    var children = {}, roots = [], lastAtDepth = [];
    calls.forEach(function (c, i) {
      var parent = null;
      if (hasParent) parent = typeof c.parent === "number" ? c.parent : null;
      else {
        var d = typeof c.depth === "number" ? c.depth : 0;
        lastAtDepth[d] = c.seq;
        lastAtDepth.length = d + 1;
        parent = d > 0 && lastAtDepth[d - 1] !== undefined ? lastAtDepth[d - 1] : null;
      }
      if (parent === null || parent === c.seq) roots.push(i);
      else (children[parent] = children[parent] || []).push(i);
    });
    var out = [], seen = {};
    function visit(i, level) {
      if (seen[i]) return;
      seen[i] = true;
      out.push([i, level]);
      (children[calls[i].seq] || []).forEach(function (j) { visit(j, level + 1); });
    }
    roots.forEach(function (i) { visit(i, 0); });
    calls.forEach(function (_, i) { if (!seen[i]) visit(i, 0); }); // orphans (a parent missing)
    return out;
  }
  function kv(parent, pairs) {
    var dl = el("dl", { "class": "kv" });
    pairs.forEach(function (p) {
      dl.appendChild(el("dt", null, p[0]));
      var dd = el("dd");
      if (p[2]) dd.appendChild(el("pre", null, p[1]));
      else dd.textContent = p[1];
      dl.appendChild(dd);
    });
    parent.appendChild(dl);
  }
  function pretty(value) { return JSON.stringify(value === undefined ? null : value, null, 2); }
  function showWaterfall(log) {
    selectedLog = log;
    var box = document.getElementById("waterfall");
    clear(box);
    var root = rootOf(log);
    box.appendChild(el("h3", null, (root ? text(root.function) : "request") + " · " + dur(log.duration_us)));
    kv(box, [["log id", text(log.id)], ["started", text(log.started_at)],
      ["info", pretty(log.info), true]]
      .concat(log.trace_id ? [["trace id", text(log.trace_id)]] : [])
      .concat(log.complete === false ? [["complete", "no: written at shutdown while calls still ran"]] : [])
      .concat(log.dropped_calls ? [["dropped calls", num(log.dropped_calls) + " (past max_calls_per_log)"]] : [])
      .concat(log.omitted_calls ? [["omitted calls", num(log.omitted_calls) + " (only the first are drawn)"]] : []));
    var t0 = Date.parse(log.started_at);
    var rows = [];
    // A continuation is drawn under the call it was spawned from (its parent_seq),
    // after that call's own subtree; one without that link after all the calls.
    function add(entry, shiftUs, label, base) {
      var calls = Array.isArray(entry.calls) ? entry.calls : [];
      if (label) rows.push({ sep: label, level: base });
      var spawned = {}, loose = [];
      (D.continuations[entry.id] || []).forEach(function (cont) {
        if (typeof cont.parent_seq === "number") (spawned[cont.parent_seq] = spawned[cont.parent_seq] || []).push(cont);
        else loose.push(cont);
      });
      function emit(list, level) {
        (list || []).forEach(function (cont) {
          var shift = (Date.parse(cont.started_at) - t0) * 1000;
          add(cont, isFinite(shift) ? shift : 0,
            "continuation " + text(cont.id) + " (started " + dur(shift) + " after the request)", level);
        });
      }
      var open = [];
      function close(level) {
        while (open.length && open[open.length - 1][0] >= level) {
          var done = open.pop();
          emit(spawned[done[1]], done[0] + 1 + base);
          delete spawned[done[1]];
        }
      }
      treeOrder(calls).forEach(function (p) {
        var c = calls[p[0]];
        close(p[1]);
        rows.push({ call: c, level: p[1] + base, shift: shiftUs, log: entry });
        if (spawned[c.seq]) open.push([p[1], c.seq]);
      });
      close(0);
      Object.keys(spawned).forEach(function (seq) { emit(spawned[seq], base); });
      emit(loose, base);
    }
    add(log, 0, null, 0);
    var end = 1;
    rows.forEach(function (r) {
      if (r.call) end = Math.max(end, r.shift + (r.call.offset_us || 0) + (r.call.duration_us || 0));
    });
    var axis = el("div", { "class": "wf-axis", "aria-hidden": "true" });
    axis.appendChild(el("div", null, "call"));
    var ticks = el("div", { "class": "ticks" });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) { ticks.appendChild(el("span", null, dur(f * end))); });
    axis.appendChild(ticks);
    box.appendChild(axis);
    var chart = el("div", { "class": "wf", role: "list", "aria-label": "Calls on a shared time axis" });
    var detail = el("div", { "class": "wf-detail" });
    rows.forEach(function (r) {
      if (r.sep) {
        var sep = el("div", { "class": "wf-sep" }, r.sep);
        sep.style.paddingLeft = (r.level * 0.9) + "rem";
        chart.appendChild(sep);
        return;
      }
      var c = r.call;
      var row = el("div", { "class": "wf-row", role: "listitem" });
      var label = el("div", { "class": "wf-label", title: text(c.function) }, text(c.function) + "  " + dur(c.duration_us));
      label.style.paddingLeft = (r.level * 0.9) + "rem";
      var track = el("div", { "class": "wf-track" });
      var bar = el("span", { "class": "wf-bar " + (c.status === "error" ? "error" : c.status === "cancelled" ? "cancelled" : "ok"),
        title: text(c.function) + ": " + dur(c.duration_us) + " at +" + dur(r.shift + (c.offset_us || 0)) });
      bar.style.left = (100 * (r.shift + (c.offset_us || 0)) / end).toFixed(3) + "%";
      bar.style.width = (100 * (c.duration_us || 0) / end).toFixed(3) + "%";
      track.appendChild(bar);
      row.appendChild(label);
      row.appendChild(track);
      function pick() {
        chart.querySelectorAll(".wf-row.selected").forEach(function (x) { x.classList.remove("selected"); });
        row.classList.add("selected");
        showCall(detail, c, r.log);
      }
      pickable(row, pick);
      chart.appendChild(row);
    });
    box.appendChild(chart);
    box.appendChild(detail);
    var failing = rows.filter(function (r) { return r.call && r.call.traceback; })[0] ||
      rows.filter(function (r) { return r.call && r.call.status === "error"; }).pop();
    if (failing) showCall(detail, failing.call, failing.log);
  }
  function showCall(detail, c, log) {
    clear(detail);
    detail.appendChild(el("h3", null, text(c.function)));
    var pairs = [["status", text(c.status)], ["duration", dur(c.duration_us)],
      ["start", "+" + dur(c.offset_us)], ["tracker", text(c.tracker)], ["level", text(c.level)],
      ["params", pretty(c.params), true], ["data", pretty(c.data), true]];
    if (c.error !== null && c.error !== undefined) pairs.push(["error", text(c.error), true]);
    if (Array.isArray(c.traceback)) {
      pairs.push(["traceback", c.traceback.map(function (f) {
        return Array.isArray(f) ? text(f[0]) + ":" + text(f[1]) + " in " + text(f[2]) : text(f);
      }).join("\n"), true]);
    }
    if (log && log !== selectedLog) pairs.push(["continuation info", pretty(log.info), true]);
    kv(detail, pairs);
  }

  // -- themes, layout, footer ---------------------------------------------------------------------
  var toggle = document.getElementById("theme-toggle");
  function setTheme(theme) {
    document.documentElement.setAttribute("data-theme", theme);
    toggle.textContent = theme === "dark" ? "Light theme" : "Dark theme";
    toggle.setAttribute("aria-pressed", String(theme === "dark"));
    drawTimeCharts();
    drawFunctionChart();
  }
  toggle.addEventListener("click", function () {
    setTheme(document.documentElement.getAttribute("data-theme") === "dark" ? "light" : "dark");
  });
  var footer = document.getElementById("footer");
  footer.appendChild(el("p", null, "Percentiles are nearest-rank estimates within 3.2 %. " +
    "Time buckets of " + dur(S.step * 1e6) + "; times in UTC. Charts drawn with uPlot 1.6.32 (MIT licence, © Leon Sorokin), embedded in this file."));
  D.notes.forEach(function (n) { footer.appendChild(el("p", null, "Note: " + n)); });
  if (D.functionFilter.length) footer.appendChild(el("p", null, "Functions filtered by: " + D.functionFilter.join(", ")));

  if (D.functions.length) selectedFunction = D.functions[0][0];
  renderFunctions();
  requestTable("table-slowest", D.slowest);
  requestTable("table-failed", D.failedRequests);
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  setTheme(dark ? "dark" : "light");
  if (selectedFunction !== null) select.value = selectedFunction;
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { drawTimeCharts(); drawFunctionChart(); }, 150);
  });
  document.documentElement.setAttribute("data-ready", "true");
})();
