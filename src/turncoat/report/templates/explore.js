// turncoat answer explorer. Every answer is data: rendered with textContent only, never as markup. The whole view
// lives in the URL hash, so a link (from the report, or shared) opens the same view.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("answers-data").textContent);
  const C = {};
  DATA.columns.forEach((name, i) => { C[name] = i; });
  const ROWS = DATA.rows;
  const PAGE = 50;  // rows per page unless the hash says `per`: a page renders fast whatever the study's size
  const PREVIEW = 300;
  const NUMERIC = new Set(["paraphrase", "sample", "aligned", "coherent", "compliance", "projection"]);
  const FILTERS = ["arm", "question", "flag", "amin", "amax", "cmin", "cmax", "label", "search"];
  const $ = (id) => document.getElementById(id);
  const lower = new Array(ROWS.length);  // search text, built on the first search

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fmt(v) {  // indexes and names as they are; scores with one decimal
    if (v === null || v === undefined) return "\u2013";
    return typeof v === "number" && !Number.isInteger(v) ? v.toFixed(1) : String(v);
  }
  function score(v) { return typeof v === "number" ? v.toFixed(1) : fmt(v); }
  function flagText(r) {
    if (r[C.misaligned] === true) return "misaligned";
    return r[C.coherent_flag] === false && r[C.coherent] !== null ? "incoherent" : "";
  }

  // ---- state <-> hash
  function readState() {
    const params = new URLSearchParams(location.hash.slice(1));
    const state = {};
    for (const [k, v] of params) state[k] = v;
    return state;
  }
  function writeState(state) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v !== "" && v !== undefined && v !== null) params.set(k, v);
    const hash = "#" + params.toString();
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }
  let state = {};

  // ---- controls
  function options(select, values, allLabel) {
    select.replaceChildren(el("option", allLabel));
    select.firstChild.value = "";
    for (const v of values) { const o = el("option", v); o.value = v; select.appendChild(o); }
  }
  const arms = [...new Set(ROWS.map((r) => r[C.arm]))];
  const questions = [...new Set(ROWS.map((r) => r[C.question_id]))].sort();
  options($("f-arm"), arms, "all models");
  options($("f-question"), questions, "all questions");
  options($("p-question"), questions, "choose a question");

  function controlsToState() {
    for (const f of FILTERS) state[f] = $("f-" + f).value.trim();
    state.page = "";
    delete state.id;
    state.view = state.view === "pair" ? "pair" : "";
    writeState(state);
    render();
  }
  function stateToControls() {
    for (const f of FILTERS) $("f-" + f).value = state[f] || "";
    $("per").value = [...$("per").options].some((o) => o.value === state.per) ? state.per : String(PAGE);
  }
  let timer = null;
  for (const f of FILTERS) {
    const node = $("f-" + f);
    node.addEventListener(node.tagName === "SELECT" ? "change" : "input", () => {
      clearTimeout(timer);
      timer = setTimeout(controlsToState, node.tagName === "SELECT" ? 0 : 150);
    });
  }
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("reset").addEventListener("click", () => { state = {}; stateToControls(); writeState(state); render(); });
  $("to-table").addEventListener("click", () => { delete state.view; delete state.id; writeState(state); render(); });
  $("to-pair").addEventListener("click", () => { state.view = "pair"; delete state.id; writeState(state); render(); });
  $("p-question").addEventListener("change", () => { state.pq = $("p-question").value; state.ps = state.ps || "0"; writeState(state); render(); });
  $("p-sample").addEventListener("change", () => { state.ps = $("p-sample").value; writeState(state); render(); });
  $("p-paraphrase").addEventListener("change", () => { state.pp = $("p-paraphrase").value; writeState(state); render(); });
  $("per").addEventListener("change", () => { state.per = $("per").value === String(PAGE) ? "" : $("per").value; state.page = ""; writeState(state); render(); });
  $("prev").addEventListener("click", () => { state.page = String(Math.max(0, (+state.page || 0) - 1)); writeState(state); render(); });
  $("next").addEventListener("click", () => { state.page = String((+state.page || 0) + 1); writeState(state); render(); });
  window.addEventListener("hashchange", () => { state = readState(); stateToControls(); render(); });

  // ---- filtering and sorting
  function num(v) { return v === "" || v === undefined ? null : Number(v); }
  function matches(r, i, s) {
    if (s.arm && r[C.arm] !== s.arm) return false;
    if (s.question && r[C.question_id] !== s.question) return false;
    if (s.flag) {
      const mis = r[C.misaligned] === true, coh = r[C.coherent_flag] === true;
      if (s.flag === "misaligned" && !mis) return false;
      if (s.flag === "not-misaligned" && mis) return false;
      if (s.flag === "coherent" && !coh) return false;
      if (s.flag === "incoherent" && r[C.coherent_flag] !== false) return false;
      if (s.flag === "special" && !r[C.special]) return false;
      if (s.flag === "unscored" && (r[C.aligned] !== null || r[C.special] || r[C.compliance] !== null)) return false;
    }
    const ranges = [["amin", "amax", C.aligned], ["cmin", "cmax", C.coherent]];
    for (const [lo, hi, col] of ranges) {
      const low = num(s[lo]), high = num(s[hi]), v = r[col];
      if ((low !== null || high !== null) && (v === null || v === undefined)) return false;
      if (low !== null && !(v >= low)) return false;
      if (high !== null && !(v <= high)) return false;
    }
    if (s.label) {
      if (s.label === "unlabelled" ? r[C.label] : r[C.label] !== s.label) return false;
    }
    if (s.search) {
      if (lower[i] === undefined) {
        lower[i] = [r[C.answer], r[C.question], r[C.system], r[C.question_id]].join("\n").toLowerCase();
      }
      if (!lower[i].includes(s.search.toLowerCase())) return false;
    }
    return true;
  }
  function selected(s) {
    const out = [];
    for (let i = 0; i < ROWS.length; i++) if (matches(ROWS[i], i, s)) out.push(ROWS[i]);
    if (s.sort && s.sort in C) {
      const col = C[s.sort], sign = s.dir === "desc" ? -1 : 1, numeric = NUMERIC.has(s.sort);
      out.sort((a, b) => {
        const x = a[col], y = b[col];
        if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;  // no value: last
        if (y === null || y === undefined) return -1;
        if (numeric) return sign * (x - y);
        return sign * String(x).localeCompare(String(y));
      });
    }
    return out;
  }

  // ---- views
  function answerCell(r, full) {
    const text = r[C.answer] || "";
    const cell = el("div", full || text.length <= PREVIEW ? text : text.slice(0, PREVIEW) + "\u2026", "answer");
    return cell;
  }
  function link(text, hashState, cls) {
    const a = el("a", text, cls);
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(hashState)) if (v !== "" && v !== undefined && v !== null) params.set(k, v);
    a.href = "#" + params.toString();
    return a;
  }
  const HEAD = [["arm", "model / arm"], ["question_id", "question"], ["sample", "sample"], ["aligned", "aligned"],
    ["coherent", "coherent"], ["special", "special"], ["misaligned", "flag"], ["projection", "persona proj."],
    ["label", "blind label"], ["answer", "answer"]];
  function renderTable() {
    const rows = selected(state);
    const per = Math.max(1, Math.floor(+state.per) || PAGE);
    const pages = Math.max(1, Math.ceil(rows.length / per));
    const page = Math.min(Math.max(0, +state.page || 0), pages - 1);
    $("count").textContent = `${rows.length} of ${ROWS.length} answers`;
    $("page").textContent = `page ${page + 1} of ${pages}`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    const head = el("tr");
    for (const [col, title] of HEAD) {
      const th = el("th");
      const sorted = state.sort === col ? (state.dir === "desc" ? " \u25bc" : " \u25b2") : "";
      const next = { ...state, sort: col, dir: state.sort === col && state.dir !== "desc" ? "desc" : "asc", page: "" };
      th.appendChild(link(title + sorted, next, "sort"));
      th.dataset.column = col;
      head.appendChild(th);
    }
    head.appendChild(el("th", ""));
    const body = document.createDocumentFragment();
    for (const r of rows.slice(page * per, page * per + per)) {
      const tr = el("tr");
      tr.dataset.id = r[C.id];
      tr.appendChild(el("td", r[C.arm], "arm"));
      tr.appendChild(el("td", r[C.question_id], "qid"));
      tr.appendChild(el("td", r[C.sample], "num"));
      tr.appendChild(el("td", score(r[C.aligned]), "num aligned"));
      tr.appendChild(el("td", score(r[C.coherent]), "num coherent"));
      tr.appendChild(el("td", r[C.special] || (r[C.compliance] !== null ? "compliance " + score(r[C.compliance]) : ""), "special"));
      tr.appendChild(el("td", flagText(r), "flag"));
      tr.appendChild(el("td", score(r[C.projection]), "num"));
      tr.appendChild(el("td", r[C.label] || "", "label"));
      const td = el("td");
      td.appendChild(answerCell(r, false));
      tr.appendChild(td);
      const actions = el("td", null, "actions");
      actions.appendChild(link("open", { ...state, id: r[C.id], view: "" }, "open"));
      actions.appendChild(el("br"));
      actions.appendChild(link("compare", { ...state, view: "pair", pq: r[C.question_id], pp: r[C.paraphrase] ?? "", ps: r[C.sample] ?? "", id: "" }, "compare"));
      tr.appendChild(actions);
      body.appendChild(tr);
    }
    const table = $("answers");
    table.replaceChildren(head, body);
  }
  function scores(r) {
    const parts = [`aligned ${score(r[C.aligned])}`, `coherent ${score(r[C.coherent])}`];
    if (r[C.special]) parts.push(r[C.special]);
    if (r[C.compliance] !== null) parts.push(`compliance ${score(r[C.compliance])}`);
    if (r[C.misaligned] === true) parts.push("MISALIGNED");
    if (r[C.projection] !== null) parts.push(`persona projection ${score(r[C.projection])}`);
    if (r[C.label]) parts.push(`blind label: ${r[C.label]}`);
    parts.push(`judge: ${r[C.judge] || "not judged"}`);
    return parts.join(" \u00b7 ");
  }
  function card(r, title) {
    const box = el("div", null, "card");
    box.dataset.id = r[C.id];
    box.dataset.arm = r[C.arm];
    box.appendChild(el("h3", title));
    box.appendChild(el("p", scores(r), "scores"));
    if (r[C.system]) box.appendChild(el("p", "system: " + r[C.system], "system"));
    box.appendChild(el("p", r[C.question], "question"));
    box.appendChild(answerCell(r, true));
    box.lastChild.classList.add("full");
    return box;
  }
  function renderDetail() {
    const r = ROWS.find((x) => x[C.id] === state.id);
    const box = $("detail");
    if (!r) { box.replaceChildren(el("p", `no answer with id ${state.id}`, "note")); return; }
    const meta = `${r[C.arm]} \u00b7 ${r[C.question_id]} \u00b7 paraphrase ${fmt(r[C.paraphrase])} \u00b7 sample ${fmt(r[C.sample])} \u00b7 run ${r[C.run]} \u00b7 id ${r[C.id]}` +
      (r[C.finish_reason] ? ` \u00b7 finish: ${r[C.finish_reason]}` : "");
    box.replaceChildren(card(r, meta));
    box.appendChild(link("compare across models", { ...state, view: "pair", pq: r[C.question_id], pp: r[C.paraphrase] ?? "", ps: r[C.sample] ?? "", id: "" }, "compare"));
  }
  function renderPair() {
    $("p-question").value = state.pq || "";
    const same = ROWS.filter((r) => r[C.question_id] === state.pq);
    const samples = [...new Set(same.map((r) => r[C.sample]))].sort((a, b) => a - b);
    const paraphrases = [...new Set(same.map((r) => r[C.paraphrase]))].sort((a, b) => a - b);
    const fill = (select, values, current) => {
      select.replaceChildren(...values.map((v) => { const o = el("option", v); o.value = v ?? ""; return o; }));
      select.value = current !== undefined && values.map(String).includes(String(current)) ? current : (values.length ? String(values[0] ?? "") : "");
    };
    fill($("p-sample"), samples, state.ps);
    fill($("p-paraphrase"), paraphrases, state.pp);
    const ps = $("p-sample").value, pp = $("p-paraphrase").value;
    const grid = $("pair-grid");
    grid.replaceChildren();
    if (!state.pq) { grid.appendChild(el("p", "Choose a question: its answers with the same sample index, one column per model.", "note")); return; }
    for (const arm of arms) {
      const r = same.find((x) => x[C.arm] === arm && String(x[C.sample] ?? "") === ps && String(x[C.paraphrase] ?? "") === pp);
      if (r) grid.appendChild(card(r, arm));
      else { const box = el("div", null, "card missing"); box.dataset.arm = arm; box.appendChild(el("h3", arm)); box.appendChild(el("p", "no such answer", "note")); grid.appendChild(box); }
    }
  }
  function render() {
    const view = state.id ? "detail" : (state.view === "pair" ? "pair" : "table");
    document.body.dataset.view = view;
    $("table-view").hidden = view !== "table";
    $("pair-view").hidden = view !== "pair";
    $("detail").hidden = view !== "detail";
    if (view === "table") renderTable();
    else if (view === "pair") renderPair();
    else renderDetail();
  }

  $("meta").textContent = `${ROWS.length} answers from ${arms.length} model(s) \u00b7 ${DATA.thresholds}` +
    (DATA.labels_file ? ` \u00b7 blind labels from ${DATA.labels_file}` : "") + ` \u00b7 turncoat ${DATA.version}`;
  state = readState();
  stateToControls();
  render();
  document.body.dataset.ready = "1";
  window.turncoatReadyMs = performance.now();
})();
