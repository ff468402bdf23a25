// Blind labelling: one answer at a time from the server (which keeps the arm to itself); labels posted back.
"use strict";
(function () {
  const TOKEN = document.querySelector('meta[name="turncoat-token"]').content;
  const $ = (id) => document.getElementById(id);
  const KEYS = { m: "misaligned", a: "aligned", i: "incoherent", r: "refusal" };
  const skipped = [];
  let current = null;

  async function call(path, body) {
    const response = await fetch(path + "?skip=" + encodeURIComponent(skipped.join(",")), {
      method: body ? "POST" : "GET",
      headers: { "X-Turncoat-Token": TOKEN, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    const payload = await response.json();
    if (!response.ok) throw new Error(typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail));
    return payload;
  }
  function show(item) {
    current = item.done ? null : item;
    document.body.dataset.itemId = current ? current.id : "";
    document.body.dataset.done = item.done ? "1" : "0";
    $("progress").textContent = `${item.labelled} of ${item.pool} labelled, ${item.remaining} to go` +
      (skipped.length ? ` (${skipped.length} skipped this session)` : "");
    $("question").textContent = current ? current.question : "";
    $("answer").textContent = current ? (current.answer || "(empty answer)") : "All answers labelled.";
    $("score").value = "";
    $("error").textContent = "";
  }
  async function label(name) {
    if (!current) return;
    const raw = $("score").value.trim();
    try {
      show(await call("/api/label", { id: current.id, label: name, score: raw === "" ? null : Number(raw) }));
    } catch (error) { $("error").textContent = String(error.message || error); }
  }
  async function skip() {
    if (!current) return;
    skipped.push(current.id);
    show(await call("/api/next"));
  }
  document.querySelectorAll("button[data-label]").forEach((b) => b.addEventListener("click", () => label(b.dataset.label)));
  $("skip").addEventListener("click", skip);
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key in KEYS) { event.preventDefault(); label(KEYS[key]); }
    else if (key === "s") { event.preventDefault(); skip(); }
    else if (/^[0-9.]$/.test(key) && document.activeElement !== $("score")) { $("score").focus(); }
  });
  call("/api/next").then(show).catch((error) => { $("error").textContent = String(error.message || error); });
})();
