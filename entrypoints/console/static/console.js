// relctl operator console. Vanilla JS, no dependencies. Every piece of data reaches the page
// through textContent or text nodes (never parsed as HTML); the token lives in sessionStorage and
// travels only in the Authorization header.
"use strict";
(() => {
  const TOKEN_KEY = "relctl.console.token";
  const WRITERS = ["admin", "operator"];
  const ACTIVE = ["Planned", "Running", "Paused", "Frozen"];
  const WITH_EVIDENCE = ["pause", "freeze", "rollback"];
  const state = { token: null, who: null, rollouts: new Map(), alerts: [], stream: null,
                  view: "rollouts", retry: 1000 };
  // When each (rollout, state) was first drawn, by Date.now(): what the benchmark reads.
  window.relctlConsole = { firstSeen: {} };
  const markRendered = (r) => { const k = r.id + "|" + r.state; if (!(k in window.relctlConsole.firstSeen)) window.relctlConsole.firstSeen[k] = Date.now(); };

  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const clear = (node) => { while (node.firstChild) node.removeChild(node.firstChild); return node; };
  const fmtTime = (iso) => { if (!iso) return "—"; const d = new Date(iso); return isNaN(d) ? String(iso) : d.toLocaleString(); };
  const fmtNum = (v) => (v === null || v === undefined) ? "—" : (Math.abs(v) < 10 ? Number(v).toFixed(4).replace(/0+$/, "").replace(/\.$/, "") : Number(v).toFixed(1));
  const iso = (local) => local ? new Date(local).toISOString() : null;
  const canAct = () => state.who && WRITERS.includes(state.who.role);

  // ---- HTTP -----------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { "Authorization": "Bearer " + state.token, "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, credentials: "omit", cache: "no-store",
                                         body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!response.ok) {
      if (response.status === 401) signOut("your token was refused; sign in again");
      const message = data && data.error ? data.error.message : `HTTP ${response.status}`;
      throw new Error(message);
    }
    return data;
  }
  const query = (params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  };

  // ---- sign in / out --------------------------------------------------------------------
  async function signIn(token) {
    state.token = token;
    const who = await api("GET", "/v1/whoami");
    sessionStorage.setItem(TOKEN_KEY, token);
    state.who = who;
    $("who").textContent = `${who.actor} · ${who.role}`;
    document.body.dataset.role = who.role;
    $("signin").hidden = true;
    $("tabs").hidden = false;
    $("main").hidden = false;
    $("signout").hidden = false;
    openStream();
  }
  function signOut(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null; state.who = null;
    if (state.stream) state.stream.abort();
    state.stream = null;
    state.rollouts.clear();
    clear($("rollouts"));
    $("signin").hidden = false; $("tabs").hidden = true; $("main").hidden = true;
    $("signout").hidden = true; $("who").textContent = "";
    setLive("signed out");
    $("signin-error").textContent = why || "";
    delete document.body.dataset.role;
  }
  function setLive(text, mode) { const n = $("live"); n.textContent = text; n.dataset.state = mode || ""; }

  // ---- live stream (server-sent events over fetch, so the token stays in a header) -------
  async function openStream() {
    if (state.stream) state.stream.abort();
    const controller = new AbortController();
    state.stream = controller;
    try {
      const response = await fetch("/console/api/stream", {
        headers: { "Authorization": "Bearer " + state.token, "Accept": "text/event-stream" },
        credentials: "omit", cache: "no-store", signal: controller.signal });
      if (response.status === 401) { signOut("your token was refused; sign in again"); return; }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setLive("live", "live");
      state.retry = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = "message"; const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (data.length) onEvent(event, JSON.parse(data.join("\n")));
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    if (state.stream !== controller || !state.token) return;
    setLive("reconnecting…", "down");
    setTimeout(() => { if (state.token && state.stream === controller) openStream(); }, state.retry);
    state.retry = Math.min(state.retry * 2, 15000);
  }

  function onEvent(kind, data) {
    if (kind === "snapshot") {
      if (!window.relctlConsole.snapshotAt) window.relctlConsole.snapshotAt = performance.now();
      state.rollouts.clear();
      for (const r of data.rollouts) state.rollouts.set(r.id, r);
      state.alerts = data.alerts;
      renderRollouts();
      renderAlerts();
    } else if (kind === "rollout") {
      const known = state.rollouts.has(data.id);
      state.rollouts.set(data.id, data);
      const card = known && $("rollouts").querySelector(`[data-rollout-id="${CSS.escape(data.id)}"]`);
      if (card) {  // in place: the other cards keep their open details and focus
        const open = [...card.querySelectorAll("details")].map((d) => d.open);
        const fresh = rolloutCard(data);
        [...fresh.querySelectorAll("details")].forEach((d, i) => { d.open = !!open[i]; });
        const focused = card.contains(document.activeElement) && document.activeElement.dataset.key;
        card.replaceWith(fresh);
        if (focused) { const again = fresh.querySelector(`[data-key="${CSS.escape(focused)}"]`); if (again) again.focus(); }
        markRendered(data);
      } else renderRollouts();
    } else if (kind === "alert") {
      state.alerts.unshift(data);
      state.alerts.length = Math.min(state.alerts.length, 500);
      renderAlerts();
    } else if (kind === "audit") {
      prependAudit(data);
    } else if (kind === "signed-out") {
      signOut("your token is no longer valid");
    }
  }

  // ---- rollouts -------------------------------------------------------------------------
  function renderRollouts() {
    const list = [...state.rollouts.values()].sort((a, b) =>
      (ACTIVE.includes(b.state) - ACTIVE.includes(a.state)) || (b.position - a.position));
    const root = $("rollouts");
    const focused = document.activeElement && document.activeElement.dataset.key;
    clear(root);
    for (const r of list) root.append(rolloutCard(r));
    $("rollouts-empty").hidden = list.length > 0;
    if (focused) { const again = root.querySelector(`[data-key="${CSS.escape(focused)}"]`); if (again) again.focus(); }
    for (const r of list) markRendered(r);
  }

  function stepText(r) {
    const steps = (r.steps || []).map((s) => (typeof s === "number" ? s + "%" : s));
    return `${steps[r.step_index] ?? r.current_step ?? "—"} (step ${r.step_index + 1} of ${steps.length}: ${steps.join(" → ")})`;
  }

  function rolloutCard(r) {
    const card = el("article", { class: "card" + (ACTIVE.includes(r.state) ? "" : " ended"),
                                 "data-rollout-id": r.id, "aria-label": `rollout of ${r.task}` },
      el("header", {},
        el("h3", {}, `${r.task} · v${r.baseline} → v${r.candidate}`),
        el("span", { class: "badge state", "data-state": r.state }, r.state)),
      el("div", { class: "id" }, r.id));
    const facts = el("dl", { class: "facts" },
      el("dt", {}, "Step"), el("dd", {}, stepText(r)),
      r.shadow ? [el("dt", {}, "Mode"), el("dd", {}, "shadow")] : null);
    for (const [arm, tenants] of Object.entries(r.arms || {})) {
      facts.append(el("dt", {}, arm), el("dd", {}, tenants.join(", ") || "—"));
    }
    card.append(facts);
    const verdicts = new Map((r.verdicts || []).map((v) => [v.rule, v]));
    const rules = el("ul", { class: "rules", "aria-label": "guard rules" });
    for (const rule of r.guard_rules || []) rules.append(ruleItem(r, rule, verdicts.get(rule.name)));
    if ((r.guard_rules || []).length) card.append(rules);
    const decisions = r.decisions || [];
    if (decisions.length) {
      const d = decisions[decisions.length - 1];
      card.append(el("div", { class: "decision" },
        el("strong", {}, `${d.action || "decision"} by ${d.actor}`), " ", el("span", { class: "muted" }, fmtTime(d.at || (d.evidence || {}).decided_at)),
        el("div", {}, d.reason || ""),
        el("details", {}, el("summary", {}, "Evidence"), el("pre", {}, JSON.stringify(d.evidence || {}, null, 2))),
        el("button", { type: "button", "data-key": `audit-${r.id}`,
                       onclick: () => showAudit({ task: r.task, actor: d.actor }) }, "Open in audit timeline")));
    }
    if (canAct()) card.append(actions(r));
    return card;
  }

  function ruleItem(r, rule, v) {
    const outcome = v ? v.outcome : "Pending";
    const detail = el("span", { class: "detail" });
    if (!v) detail.textContent = "no verdict yet";
    else if (v.outcome === "Pending" && v.decides_at) {
      detail.dataset.decidesAt = v.decides_at;
      detail.textContent = countdown(v.decides_at);
    } else if (v.outcome === "Inconclusive") {
      detail.textContent = `${v.samples} of ${v.min_samples} samples`;
    } else {
      detail.textContent = `${fmtNum(v.value)} ${rule.comparator} ${rule.threshold} · ${v.samples} samples`;
    }
    const item = el("li", { class: "rule", "data-rule": rule.name },
      el("div", { class: "line" },
        el("strong", {}, rule.name),
        el("span", { class: "muted" }, `${rule.metric} ${rule.comparator} ${rule.threshold}`),
        el("span", { class: "badge outcome", "data-outcome": outcome }, outcome), detail));
    if (v) {
      item.append(el("div", { class: "detail" },
        `candidate ${fmtNum(v.candidate.value)} (${v.candidate.samples}) · baseline ${fmtNum(v.baseline.value)} (${v.baseline.samples}) · window ${v.window_seconds}s · ${fmtTime(v.at)}`));
      if (v.message) item.append(el("div", { class: "detail" }, v.message));
    }
    item.append(chart((r.series || {})[rule.name] || [], rule, v));
    const points = ((r.series || {})[rule.name] || []).length;
    item.append(el("div", { class: "legend" }, el("span", { class: "c" }, "— candidate"),
                   el("span", { class: "b" }, "- - baseline"), el("span", {}, "· · threshold"),
                   el("span", {}, points ? `${points} verdict${points > 1 ? "s" : ""}` : "no series yet")));
    return item;
  }

  function countdown(decidesAt) {
    const left = Math.max(0, (new Date(decidesAt) - Date.now()) / 1000);
    return left > 0 ? `${Math.ceil(left)} s left` : "deciding…";
  }
  setInterval(() => {  // local countdowns only; no request
    for (const node of document.querySelectorAll("[data-decides-at]")) node.textContent = countdown(node.dataset.decidesAt);
  }, 1000);

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }
  function chart(points, rule, v) {
    const W = 300, H = 72, P = 4;
    const series = points.length ? points : (v ? [{ at: v.at, candidate: v.candidate.value, baseline: v.baseline.value }] : []);
    const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    const title = svg("title", {});
    title.textContent = `${rule.metric} over the window: candidate and baseline, threshold ${rule.threshold}`;
    root.append(title, svg("rect", { class: "frame", x: 0.5, y: 0.5, width: W - 1, height: H - 1 }));
    const times = series.map((p) => new Date(p.at).getTime());
    const values = series.flatMap((p) => [p.candidate, p.baseline]).filter((x) => x !== null && x !== undefined);
    values.push(rule.threshold);
    const lo = Math.min(...values), hi = Math.max(...values);
    const span = hi - lo || Math.abs(hi) || 1;
    const t0 = Math.min(...times), t1 = Math.max(...times);
    const x = (t) => (t1 === t0 ? W / 2 : P + ((t - t0) / (t1 - t0)) * (W - 2 * P));
    const y = (val) => H - P - ((val - lo) / span) * (H - 2 * P);
    const ty = y(rule.threshold);
    root.append(svg("line", { class: "threshold", x1: 0, x2: W, y1: ty, y2: ty }));
    for (const arm of ["baseline", "candidate"]) {
      const pts = series.map((p, i) => [times[i], p[arm]]).filter(([, val]) => val !== null && val !== undefined);
      if (pts.length > 1) root.append(svg("polyline", { class: arm, points: pts.map(([t, val]) => `${x(t).toFixed(1)},${y(val).toFixed(1)}`).join(" ") }));
      if (pts.length) { const [t, val] = pts[pts.length - 1]; root.append(svg("circle", { class: "dot-" + arm, cx: x(t), cy: y(val), r: 2.5 })); }
    }
    return root;
  }

  function actions(r) {
    const box = el("div", { class: "actions", role: "group", "aria-label": "actions" });
    const add = (action, label, cls) => box.append(el("button", {
      type: "button", class: cls || null, "data-action": action, "data-key": `${action}-${r.id}`,
      onclick: () => openAction(r, action, label) }, label));
    if (r.state === "Planned") add("start", "Start");
    if (r.state === "Running") { add("advance", "Advance"); add("pause", "Pause"); }
    if (r.state === "Paused") add("resume", "Resume");
    if (r.state === "Frozen" && state.who.role === "admin") add("resume", "Resume (break-glass)", "danger");
    if (["Running", "Paused"].includes(r.state)) add("freeze", "Freeze", "danger");
    if (["Running", "Paused", "Frozen"].includes(r.state)) add("rollback", "Roll back", "danger");
    if (ACTIVE.includes(r.state)) add("pin", "Pin a tenant");
    return box;
  }

  // ---- act ------------------------------------------------------------------------------
  let pending = null;
  function evidenceFor(r, action) {
    if (!WITH_EVIDENCE.includes(action)) return null;
    return { source: "relctl console", rollout_id: r.id, state: r.state, step: r.current_step,
             verdicts: (r.verdicts || []).map((v) => ({ rule: v.rule, outcome: v.outcome, metric: v.metric,
               value: v.value, threshold: v.threshold, samples: v.samples, min_samples: v.min_samples,
               candidate: v.candidate, baseline: v.baseline, at: v.at })) };
  }
  function openAction(r, action, label) {
    pending = { r, action, evidence: evidenceFor(r, action) };
    $("act-title").textContent = `${label}: ${r.task} v${r.baseline} → v${r.candidate}`;
    $("act-target").textContent = `rollout ${r.id}, now ${r.state}`;
    $("act-pin").hidden = action !== "pin";
    if (action === "pin") {
      const select = clear($("act-release"));
      for (const n of [r.baseline, r.candidate]) select.append(el("option", { value: n }, `v${n}`));
      const known = clear($("act-tenants"));
      for (const t of [...new Set(Object.values(r.arms || {}).flat())].sort()) known.append(el("option", { value: t }));
      $("act-tenant").value = "";
    }
    $("act-evidence").textContent = pending.evidence ? JSON.stringify(pending.evidence, null, 2)
      : (action === "pin" ? "the tenant, task, release, days and your reason (no evidence field)"
                          : "your reason (this command carries no evidence field)");
    $("act-reason").value = "";
    $("act-error").textContent = "";
    $("act-done").hidden = true;
    $("act-confirm").disabled = false;
    $("act-confirm").hidden = false;
    $("act-dialog").showModal();
    (action === "pin" ? $("act-tenant") : $("act-reason")).focus();
  }
  async function confirmAction(event) {
    event.preventDefault();
    if (!pending) return;
    const { r, action, evidence } = pending;
    const reason = $("act-reason").value.trim();
    if (reason.length < 3) { $("act-error").textContent = "a reason of at least 3 characters is required"; $("act-reason").focus(); return; }
    $("act-confirm").disabled = true;
    try {
      let historyPath;
      if (action === "pin") {
        const tenant = $("act-tenant").value.trim();
        if (!tenant) throw new Error("which tenant?");
        await api("POST", `/v1/tenants/${encodeURIComponent(tenant)}/pins`,
                  { task: r.task, release: Number($("act-release").value), days: Number($("act-days").value) || 30, reason });
        historyPath = `/v1/tenants/${encodeURIComponent(tenant)}/history`;
      } else {
        const body = { reason, expected_version: r.aggregate_version };
        if (evidence) body.evidence = evidence;
        await api("POST", `/v1/rollouts/${r.id}/${action}`, body);
        historyPath = `/v1/rollouts/${r.id}/history`;
      }
      const history = await api("GET", historyPath);
      const last = history.events[history.events.length - 1];
      $("act-result").textContent = JSON.stringify(last, null, 2);
      $("act-done").hidden = false;
      $("act-confirm").hidden = true;
      $("act-cancel").focus();
    } catch (e) {
      $("act-error").textContent = e.message;
      $("act-confirm").disabled = false;
    }
  }

  // ---- resolve explorer -----------------------------------------------------------------
  async function resolveNow(event) {
    event.preventDefault();
    $("resolve-error").textContent = "";
    try {
      const at = iso($("resolve-at").value);
      const answer = await api("GET", "/v1/read/resolve" + query({ tenant: $("resolve-tenant").value.trim(), task: $("resolve-task").value.trim(), at }));
      $("resolve-headline").textContent = `${answer.tenant} runs ${answer.task} release v${answer.release} (${answer.source})` + (at ? ` at ${fmtTime(at)}` : " now");
      const why = clear($("resolve-why"));
      const cause = answer.cause || {};
      const add = (k, v) => why.append(el("dt", {}, k), el("dd", {}, v ?? "—"));
      add("Because", `${cause.event || cause.kind || "—"}${cause.position ? " (position " + cause.position + ")" : ""}`);
      add("By", cause.actor); add("Reason", cause.reason);
      add("In force from", fmtTime(answer.valid_from)); add("Until", answer.valid_to ? fmtTime(answer.valid_to) : "still in force");
      if (answer.rollout) add("Rollout", `${answer.rollout.id || ""} ${answer.rollout.arm || ""}`);
      $("resolve-json").textContent = JSON.stringify(answer, null, 2);
      $("resolve-result").hidden = false;
    } catch (e) { $("resolve-error").textContent = e.message; $("resolve-result").hidden = true; }
  }

  // ---- audit timeline -------------------------------------------------------------------
  let auditFilter = {};
  function auditRow(row) {
    const automatic = row.evidence && row.actor && !String(row.actor).includes("@") && /guard|relctl/.test(row.actor);
    const reason = el("td", { class: "reason" }, row.reason || "");
    if (row.evidence) reason.append(el("details", {}, el("summary", {}, "Evidence"), el("pre", {}, JSON.stringify(row.evidence, null, 2))));
    return el("tr", { class: automatic ? "automatic" : null, "data-seq": row.seq },
      el("td", {}, fmtTime(row.at)), el("td", {}, row.event), el("td", {}, row.actor || "—"),
      el("td", {}, row.tenant || "—"), el("td", {}, row.task || "—"), reason);
  }
  function matches(row, f) {
    return (!f.task || row.task === f.task) && (!f.tenant || row.tenant === f.tenant) &&
           (!f.actor || row.actor === f.actor) && (!f.since || row.at >= f.since) && (!f.until || row.at < f.until);
  }
  function prependAudit(row) {
    if (!matches(row, auditFilter)) return;
    const body = $("audit-rows");
    if (body.querySelector(`[data-seq="${row.seq}"]`)) return;
    body.insertBefore(auditRow(row), body.firstChild);
  }
  async function loadAudit(event) {
    if (event) event.preventDefault();
    $("audit-error").textContent = "";
    auditFilter = { task: $("audit-task").value.trim(), tenant: $("audit-tenant").value.trim(), actor: $("audit-actor").value.trim(),
                    since: iso($("audit-since").value), until: iso($("audit-until").value) };
    try {
      const rows = await api("GET", "/console/api/audit" + query(auditFilter));
      const body = clear($("audit-rows"));
      for (const row of rows) body.append(auditRow(row));
    } catch (e) { $("audit-error").textContent = e.message; }
  }
  function showAudit(filter) {
    $("audit-task").value = filter.task || ""; $("audit-actor").value = filter.actor || "";
    $("audit-tenant").value = ""; $("audit-since").value = ""; $("audit-until").value = "";
    select("audit");
  }

  // ---- alerts ---------------------------------------------------------------------------
  let alertFilter = {};
  async function loadAlerts(event) {
    if (event) event.preventDefault();
    $("alerts-error").textContent = "";
    alertFilter = { task: $("alerts-task").value.trim(), tenant: $("alerts-tenant").value.trim(),
                    actor: $("alerts-actor").value.trim(),
                    since: iso($("alerts-since").value), until: iso($("alerts-until").value) };
    try { state.alerts = await api("GET", "/console/api/alerts" + query(alertFilter)); renderAlerts(); }
    catch (e) { $("alerts-error").textContent = e.message; }
  }
  function renderAlerts() {
    const list = clear($("alerts-list"));
    const f = alertFilter;
    const shown = state.alerts.filter((a) => (!f.task || a.task === f.task) && (!f.actor || a.actor === f.actor) && (!f.since || (a.at || "") >= f.since) && (!f.until || (a.at || "") < f.until) &&
                                             (!f.tenant || JSON.stringify(a.evidence || {}).includes(f.tenant)));
    for (const a of shown) {
      const title = a.kind === "decision" ? `${a.action} of ${a.task} by ${a.actor}` : `${a.rule} ${a.kind} (${a.severity || "—"})`;
      const item = el("li", { "data-kind": a.kind },
        el("strong", {}, title), " ", el("span", { class: "muted" }, fmtTime(a.at)),
        el("div", {}, a.summary || a.reason || ""), el("div", { class: "muted" }, a.scope));
      if (a.evidence && Object.keys(a.evidence).length) item.append(el("details", {}, el("summary", {}, "Evidence"), el("pre", {}, JSON.stringify(a.evidence, null, 2))));
      if (a.kind === "decision" && a.rollout_id) item.append(el("button", { type: "button", onclick: () => showAudit({ task: a.task, actor: a.actor }) }, "Open in audit timeline"));
      list.append(item);
    }
    $("alerts-empty").hidden = shown.length > 0;
  }

  // ---- overrides inventory --------------------------------------------------------------
  async function loadInventory() {
    $("overrides-error").textContent = "";
    try {
      const inv = await api("GET", "/console/api/inventory");
      const fill = (id, rows, cells) => { const body = clear($(id)); for (const row of rows) body.append(el("tr", {}, cells(row).map((c) => el("td", {}, c ?? "—")))); };
      fill("overrides-rows", inv.overrides, (o) => [o.tenant, o.task, o.kind, o.value, o.by, fmtTime(o.since), o.reason]);
      fill("pins-rows", inv.pins, (p) => [p.tenant, p.task, "v" + p.release, fmtTime(p.expires_at), p.active ? "yes" : "expired", p.by, p.reason]);
      fill("tenants-rows", inv.tenants, (t) => [t.tenant, t.name, t.cohort]);
    } catch (e) { $("overrides-error").textContent = e.message; }
  }

  // ---- tabs (arrow keys move between them) ----------------------------------------------
  const VIEWS = ["rollouts", "resolve", "audit", "alerts", "overrides"];
  function select(view) {
    state.view = view;
    for (const v of VIEWS) {
      const tab = $("tab-" + v), selected = v === view;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $("view-" + v).hidden = !selected;
    }
    if (view === "audit") loadAudit();
    if (view === "alerts") loadAlerts();
    if (view === "overrides") loadInventory();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      if (!token) return;
      try { $("signin-error").textContent = ""; await signIn(token); }
      catch (e) { signOut(e.message); }
    });
    $("signout").addEventListener("click", () => signOut(""));
    for (const v of VIEWS) {
      const tab = $("tab-" + v);
      tab.addEventListener("click", () => select(v));
      tab.addEventListener("keydown", (e) => {
        const i = VIEWS.indexOf(v);
        const next = e.key === "ArrowRight" ? VIEWS[(i + 1) % VIEWS.length] : e.key === "ArrowLeft" ? VIEWS[(i + VIEWS.length - 1) % VIEWS.length] : null;
        if (next) { e.preventDefault(); select(next); $("tab-" + next).focus(); }
      });
    }
    $("act-form").addEventListener("submit", confirmAction);
    $("act-cancel").addEventListener("click", () => $("act-dialog").close());
    $("resolve-form").addEventListener("submit", resolveNow);
    $("audit-form").addEventListener("submit", loadAudit);
    $("alerts-form").addEventListener("submit", loadAlerts);
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved).catch((e) => signOut(e.message));
  });
})();
