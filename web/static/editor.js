// The rule editor: a visual builder and a YAML tab over one rule, a payload explorer, the
// live test, backtest and "save as test case". Everything goes through the JSON API
// (/api/...); the server owns the YAML (round-trip edits that keep comments), this page owns
// only what is on screen. DOM is built with textContent: payload text is never HTML.
(function () {
  "use strict";

  const root = document.getElementById("editor");
  if (!root) return;

  const OPERATORS = ["equals", "not_equals", "in", "not_in", "contains", "matches", "exists",
    "empty", "not_empty", "gt", "gte", "lt", "lte"];
  const ALIASES = { memory: "memory", day_summary: "summary", transcript: "session", audio: "audio" };
  const GROUPS = ["any", "all", "not"];

  const state = {
    ruleId: root.dataset.rule,
    triggers: (root.dataset.triggers || "").split(",").filter(Boolean),
    file: "", etag: "", text: "", model: null, problems: [],
    connectors: [], secrets: [], variables: [], payload: null,
    lastTemplateField: null, lastReport: null, settingText: false,
  };

  // ---- small helpers ----------------------------------------------------------------------
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  async function api(method, url, body) {
    const options = { method, headers: { "X-CSRF-Token": csrfToken() }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function debounce(fn, ms) {
    let timer = null;
    return function (...args) {
      clearTimeout(timer);
      timer = setTimeout(() => fn.apply(this, args), ms);
    };
  }

  function status(text, kind) {
    const node = document.getElementById("save-status");
    node.textContent = text;
    node.className = kind || "";
  }

  // A value typed in a form: JSON when it parses (true, 3, ["a","b"]), else the text itself.
  function typed(text) {
    const trimmed = text.trim();
    if (trimmed === "") return "";
    try { return JSON.parse(trimmed); } catch (e) { return text; }
  }

  function shown(value) {
    if (value === undefined || value === null) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  // ---- YAML tab (CodeMirror) ----------------------------------------------------------------
  let yaml = null;
  function setupYaml(schema) {
    const parent = document.getElementById("yaml-editor");
    if (window.OmiCodeMirror) {
      yaml = window.OmiCodeMirror.createYamlEditor(parent, {
        doc: state.text,
        schema,
        variables: () => state.variables,
        onChange: (text) => {
          if (state.settingText) return;
          state.text = text;
          parseSoon();
        },
      });
    } else { // the bundle is missing: a plain textarea still edits the rule
      const area = el("textarea", { id: "yaml-fallback", rows: 24, spellcheck: "false" });
      area.value = state.text;
      area.addEventListener("input", () => { state.text = area.value; parseSoon(); });
      parent.append(area);
      yaml = {
        getText: () => area.value,
        setText: (text) => { area.value = text; },
        setDiagnostics: () => {},
        focus: () => area.focus(),
      };
    }
  }

  function setText(text) {
    state.text = text;
    state.settingText = true;
    try { yaml.setText(text); } finally { state.settingText = false; }
  }

  function showProblems(problems) {
    state.problems = problems || [];
    if (yaml) yaml.setDiagnostics(state.problems);
    const list = document.getElementById("problems");
    list.replaceChildren(...state.problems.map((p) => el("li", { class: `problem ${p.severity || "error"}` },
      el("code", { text: `line ${p.line}:${p.column}` }), " ", p.message)));
  }

  const parseSoon = debounce(async () => {
    const result = await api("POST", "/api/yaml/parse", { text: state.text });
    if (!result.ok) return;
    showProblems(result.data.problems);
    if (result.data.model) {
      state.model = result.data.model;
      renderBuilder();
    }
    liveTestSoon();
  }, 350);

  const mergeSoon = debounce(async () => {
    const result = await api("POST", "/api/yaml/merge", { text: state.text, model: state.model });
    if (!result.ok) {
      status(result.data && result.data.error ? result.data.error : "could not update the YAML", "bad");
      return;
    }
    setText(result.data.text);
    showProblems(result.data.problems);
    liveTestSoon();
  }, 250);

  function changed() {
    status("unsaved changes", "pending");
    mergeSoon();
  }

  // ---- visual builder ---------------------------------------------------------------------
  function conditionKind(condition) {
    for (const kind of ["path", "keywords", "template", "time", "any", "all", "not"]) {
      if (condition && Object.prototype.hasOwnProperty.call(condition, kind)) return kind;
    }
    return "json";
  }

  function operatorOf(condition) {
    return OPERATORS.find((op) => Object.prototype.hasOwnProperty.call(condition, op)) || "exists";
  }

  function field(label, input, extra) {
    return el("label", { class: "field" }, el("span", { text: label }), input, extra || null);
  }

  function textInput(value, onInput, attrs) {
    const input = el("input", Object.assign({ type: "text" }, attrs || {}));
    input.value = value === undefined || value === null ? "" : String(value);
    input.addEventListener("input", () => { onInput(input.value); changed(); });
    return input;
  }

  function templateInput(value, onInput, attrs, multiline) {
    const input = el(multiline ? "textarea" : "input", Object.assign({ class: "template", spellcheck: "false" },
      multiline ? { rows: 3 } : { type: "text" }, attrs || {}));
    input.value = value === undefined || value === null ? "" : String(value);
    input.addEventListener("input", () => { onInput(input.value); changed(); suggest(input); });
    input.addEventListener("focus", () => { state.lastTemplateField = input; });
    input.addEventListener("keydown", (event) => suggestKeys(event, input));
    input.addEventListener("blur", () => setTimeout(hideSuggestions, 150));
    return input;
  }

  function removeButton(onClick) {
    return el("button", { type: "button", class: "remove", title: "remove", "aria-label": "remove", onclick: onClick }, "×");
  }

  function renderPath(condition, list, index) {
    const op = operatorOf(condition);
    const select = el("select", { class: "operator", "aria-label": "operator" },
      OPERATORS.map((name) => el("option", { value: name, selected: name === op }, name)));
    const value = textInput(shown(condition[op]), (text) => { condition[operatorOf(condition)] = typed(text); },
      { class: "value", "aria-label": "value", placeholder: "value (JSON or text)" });
    select.addEventListener("change", () => {
      const old = operatorOf(condition);
      const kept = condition[old];
      delete condition[old];
      condition[select.value] = ["exists", "empty", "not_empty"].includes(select.value) ? true : kept;
      value.value = shown(condition[select.value]);
      changed();
    });
    return [
      textInput(condition.path, (text) => { condition.path = text; }, { class: "path", "aria-label": "JSONPath", placeholder: "$.structured.category" }),
      select, value,
    ];
  }

  function renderKeywords(condition) {
    const words = Array.isArray(condition.keywords) ? condition.keywords.join(", ") : shown(condition.keywords);
    const speaker = el("select", { "aria-label": "speaker" },
      ["any", "user", "others"].map((s) => el("option", { value: s, selected: (condition.speaker || "any") === s }, s)));
    speaker.addEventListener("change", () => {
      if (speaker.value === "any") delete condition.speaker; else condition.speaker = speaker.value;
      changed();
    });
    const fuzzy = el("input", { type: "checkbox", checked: !!condition.fuzzy, "aria-label": "fuzzy" });
    fuzzy.addEventListener("change", () => {
      if (fuzzy.checked) condition.fuzzy = true; else delete condition.fuzzy;
      changed();
    });
    // negation: allow fires on "don't turn on the lights" too; deny is the default
    const negated = el("input", { type: "checkbox", checked: condition.negation === "allow", "aria-label": "negated too" });
    negated.addEventListener("change", () => {
      if (negated.checked) condition.negation = "allow"; else delete condition.negation;
      changed();
    });
    return [
      textInput(words, (text) => {
        condition.keywords = text.split(",").map((w) => w.trim()).filter(Boolean);
      }, { class: "keywords", "aria-label": "keywords", placeholder: "hey omi, turn on the lights" }),
      el("label", { class: "inline" }, "speaker ", speaker),
      el("label", { class: "inline" }, fuzzy, " fuzzy"),
      el("label", { class: "inline" }, negated, " negated too"),
    ];
  }

  function renderTime(condition) {
    const window_ = condition.time || (condition.time = {});
    return [
      el("label", { class: "inline" }, "after ", textInput(window_.after, (t) => { if (t) window_.after = t; else delete window_.after; }, { size: 5, placeholder: "09:00" })),
      el("label", { class: "inline" }, "before ", textInput(window_.before, (t) => { if (t) window_.before = t; else delete window_.before; }, { size: 5, placeholder: "18:00" })),
      el("label", { class: "inline" }, "weekdays ", textInput((window_.weekdays || []).join(","), (t) => {
        const days = t.split(",").map((d) => d.trim()).filter(Boolean);
        if (days.length) window_.weekdays = days; else delete window_.weekdays;
      }, { size: 14, placeholder: "mon,tue,wed" })),
      el("label", { class: "inline" }, "tz ", textInput(window_.tz, (t) => { if (t) window_.tz = t; else delete window_.tz; }, { size: 14, placeholder: "Europe/Berlin" })),
    ];
  }

  function renderCondition(condition, list, index) {
    const kind = conditionKind(condition);
    const row = el("div", { class: `condition ${kind}`, "data-kind": kind });
    const remove = removeButton(() => { list.splice(index, 1); renderBuilder(); changed(); });
    let body;
    if (kind === "path") body = renderPath(condition, list, index);
    else if (kind === "keywords") body = renderKeywords(condition);
    else if (kind === "time") body = renderTime(condition);
    else if (kind === "template") {
      body = [templateInput(condition.template, (t) => { condition.template = t; }, { "aria-label": "template condition" })];
    } else if (GROUPS.includes(kind)) {
      if (kind === "not" && !Array.isArray(condition.not)) condition.not = [condition.not];
      const group = el("div", { class: "group" });
      renderConditions(condition[kind], group);
      row.append(el("strong", { class: "kind", text: `${kind} of:` }), remove, group);
      return row;
    } else {
      body = [el("code", { text: JSON.stringify(condition) })];
    }
    row.append(el("span", { class: "kind", text: kind }), ...body, remove);
    return row;
  }

  function newCondition(kind) {
    if (kind === "path") return { path: "$.", equals: "" };
    if (kind === "keywords") return { keywords: [] };
    if (kind === "time") return { time: { after: "09:00", before: "18:00" } };
    if (kind === "template") return { template: "{{ }}" };
    return { [kind]: [] };
  }

  function renderConditions(list, container) {
    list.forEach((condition, index) => container.append(renderCondition(condition, list, index)));
    const adders = el("div", { class: "adders" },
      ["path", "keywords", "time", "template", ...GROUPS].map((kind) =>
        el("button", { type: "button", class: "add", "data-add": kind, onclick: () => {
          list.push(newCondition(kind));
          renderBuilder();
          changed();
        } }, `+ ${kind}`)));
    container.append(adders);
  }

  function connectorOf(action) {
    return Object.keys(action || {})[0] || "";
  }

  function renderOption(spec, options) {
    const name = spec.name;
    const label = spec.required ? `${name} *` : name;
    const set = (value) => {
      if (value === "" || value === undefined) delete options[name]; else options[name] = value;
    };
    let input;
    if (spec.kind === "boolean") {
      input = el("input", { type: "checkbox", checked: !!options[name] });
      input.addEventListener("change", () => { set(input.checked ? true : undefined); changed(); });
    } else if (spec.kind === "choice") {
      input = el("select", {}, el("option", { value: "" }, ""),
        spec.choices.map((c) => el("option", { value: c, selected: options[name] === c }, String(c))));
      input.addEventListener("change", () => { set(input.value); changed(); });
    } else if (spec.kind === "number") {
      input = textInput(options[name], (t) => set(t === "" ? undefined : typed(t)), { inputmode: "decimal" });
    } else if (spec.kind === "json") {
      input = el("textarea", { rows: 2, class: "json", spellcheck: "false" });
      input.value = options[name] === undefined ? "" : JSON.stringify(options[name]);
      input.addEventListener("input", () => { set(input.value.trim() ? typed(input.value) : undefined); changed(); });
    } else {
      // a template; text that looks like JSON ([..] or {..}) is kept as that value
      const structured = (t) => /^\s*[\[{]/.test(t) ? typed(t) : t;
      input = templateInput(shown(options[name]), (t) => set(structured(t)), { "aria-label": name, "data-option": name },
        ["text", "body", "message", "html", "subject"].includes(name));
    }
    return el("div", { class: spec.required ? "option required" : "option", "data-option-row": name },
      field(label, input), spec.description ? el("small", { text: spec.description }) : null);
  }

  function renderAction(action, list, index) {
    const name = connectorOf(action);
    const options = action[name] || (action[name] = {});
    const form = state.connectors.find((c) => c.name === name);
    const card = el("div", { class: "action-card", "data-action-index": index, "data-connector": name },
      el("header", {}, el("strong", { text: name }), form ? el("small", { text: ` ${form.summary}` }) : null,
        removeButton(() => { list.splice(index, 1); renderBuilder(); changed(); })));
    if (form) {
      form.fields.forEach((spec) => card.append(renderOption(spec, options)));
      const known = new Set(form.fields.map((f) => f.name));
      Object.keys(options).filter((k) => !known.has(k)).forEach((k) =>
        card.append(el("p", { class: "warn", text: `unknown option ${k}` })));
    } else {
      card.append(el("p", { class: "warn", text: `no connector named ${name}` }));
    }
    card.append(el("p", { class: "action-error", hidden: true }));
    return card;
  }

  function renderActions(list, container) {
    list.forEach((action, index) => container.append(renderAction(action, list, index)));
    const picker = el("select", { id: "add-action", "aria-label": "add an action" },
      el("option", { value: "" }, "+ add an action…"),
      state.connectors.map((c) => el("option", { value: c.name }, `${c.name}: ${c.summary}`)));
    picker.addEventListener("change", () => {
      if (!picker.value) return;
      list.push({ [picker.value]: {} });
      renderBuilder();
      changed();
    });
    const secrets = el("select", { id: "insert-secret", "aria-label": "insert a secret" },
      el("option", { value: "" }, state.secrets.length ? "insert a secret…" : "no secrets are set"),
      state.secrets.map((s) => el("option", { value: s }, s)));
    secrets.addEventListener("change", () => {
      if (secrets.value) insertTemplate(`secrets.${secrets.value}`);
      secrets.value = "";
    });
    container.append(el("div", { class: "adders" }, picker, secrets));
  }

  function renderBuilder() {
    const model = state.model;
    const builder = document.getElementById("builder");
    if (!model || typeof model !== "object" || Array.isArray(model)) {
      builder.replaceChildren(el("p", { class: "hint", text: "The YAML does not hold one rule the builder can show; edit it in the YAML tab." }));
      return;
    }
    const focusedKey = document.activeElement && builder.contains(document.activeElement) ? null : undefined;
    void focusedKey;
    model.when = model.when || [];
    model.do = model.do || [];
    const trigger = el("select", { id: "trigger", "aria-label": "trigger" },
      state.triggers.map((t) => el("option", { value: t, selected: model.trigger === t }, t)));
    trigger.addEventListener("change", () => { model.trigger = trigger.value; changed(); loadEvents(); });
    const enabled = el("input", { type: "checkbox", id: "enabled", checked: model.enabled !== false });
    enabled.addEventListener("change", () => {
      if (enabled.checked) delete model.enabled; else model.enabled = false;
      changed();
    });
    const conditions = el("div", { id: "conditions", class: "conditions" });
    renderConditions(model.when, conditions);
    const actions = el("div", { id: "actions", class: "actions" });
    renderActions(model.do, actions);
    builder.replaceChildren(
      el("div", { class: "row" }, field("Trigger", trigger), el("label", { class: "inline" }, enabled, " enabled")),
      field("Description", textInput(model.description, (t) => { if (t) model.description = t; else delete model.description; }, { id: "description" })),
      el("h3", { text: "When (every item must hold)" }), conditions,
      field("For each (JSONPath, optional)", textInput(model.for_each, (t) => { if (t) model.for_each = t; else delete model.for_each; }, { id: "for-each", placeholder: "$.structured.action_items[?(@.completed == false)]" })),
      el("h3", { text: "Do" }), actions,
    );
  }

  // ---- template completion ----------------------------------------------------------------
  let suggestions = null;
  function hideSuggestions() { if (suggestions) { suggestions.remove(); suggestions = null; } }

  function suggest(input) {
    const before = input.value.slice(0, input.selectionStart);
    const open = /\{\{\s*([\w.\[\]]*)$/.exec(before);
    hideSuggestions();
    if (!open) return;
    const prefix = open[1];
    const names = state.variables.filter((n) => n.startsWith(prefix) && n !== prefix).slice(0, 12);
    if (!names.length) return;
    suggestions = el("ul", { class: "suggestions", role: "listbox" }, names.map((name, i) =>
      el("li", { role: "option", "aria-selected": i === 0 ? "true" : "false", "data-name": name,
        onmousedown: (event) => { event.preventDefault(); complete(input, prefix, name); } }, name)));
    input.insertAdjacentElement("afterend", suggestions);
  }

  function suggestKeys(event, input) {
    if (!suggestions) return;
    const items = [...suggestions.children];
    let at = items.findIndex((li) => li.getAttribute("aria-selected") === "true");
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      items[at].setAttribute("aria-selected", "false");
      at = (at + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      items[at].setAttribute("aria-selected", "true");
    } else if (event.key === "Enter" || event.key === "Tab") {
      event.preventDefault();
      const before = input.value.slice(0, input.selectionStart);
      const open = /\{\{\s*([\w.\[\]]*)$/.exec(before);
      complete(input, open ? open[1] : "", items[at].dataset.name);
    } else if (event.key === "Escape") {
      hideSuggestions();
    }
  }

  function complete(input, prefix, name) {
    const start = input.selectionStart - prefix.length;
    const rest = input.value.slice(input.selectionStart);
    const closing = /^\s*\}\}/.test(rest) ? "" : " }}";
    input.value = input.value.slice(0, start) + name + closing + rest;
    const caret = start + name.length + closing.length;
    input.setSelectionRange(caret, caret);
    input.dispatchEvent(new Event("input"));
    hideSuggestions();
  }

  function insertTemplate(name) {
    const input = state.lastTemplateField;
    if (!input || !document.body.contains(input)) {
      status("click into a template field first", "pending");
      return false;
    }
    const at = input.selectionStart ?? input.value.length;
    const text = `{{ ${name} }}`;
    input.value = input.value.slice(0, at) + text + input.value.slice(input.selectionEnd ?? at);
    input.focus();
    input.setSelectionRange(at + text.length, at + text.length);
    input.dispatchEvent(new Event("input"));
    return true;
  }

  // ---- payload explorer -------------------------------------------------------------------
  function jsonPath(parts) {
    return "$" + parts.map((p) => typeof p === "number" ? `[${p}]`
      : /^[A-Za-z_][A-Za-z0-9_]*$/.test(p) ? `.${p}` : `['${p.replace(/'/g, "\\'")}']`).join("");
  }

  function templatePath(parts) {
    const alias = ALIASES[state.model && state.model.trigger] || "event";
    const base = alias === "session" || alias === "audio" ? "event" : alias;
    return base + parts.map((p) => typeof p === "number" ? `[${p}]`
      : /^[A-Za-z_][A-Za-z0-9_]*$/.test(p) ? `.${p}` : `['${p}']`).join("");
  }

  let templateFocusedOnPress = false;
  function pickField(parts, value) {
    if (templateFocusedOnPress && insertTemplate(templatePath(parts))) return;
    if (!state.model) return;
    const condition = { path: jsonPath(parts) };
    if (value === null || typeof value !== "object") condition.equals = value;
    else condition.not_empty = true;
    state.model.when = state.model.when || [];
    state.model.when.push(condition);
    renderBuilder();
    changed();
  }

  function treeNode(key, value, parts) {
    const label = el("button", { type: "button", class: "key", "data-path": jsonPath(parts),
      title: `${jsonPath(parts)}: click to add a condition or insert it into a template`,
      onclick: () => pickField(parts, value) }, key === null ? "$" : String(key));
    if (value !== null && typeof value === "object") {
      const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
      const children = el("ul", {}, entries.slice(0, 200).map(([k, v]) => el("li", {}, treeNode(k, v, [...parts, k]))));
      return el("details", { open: parts.length < 3 }, el("summary", {}, label,
        el("small", { text: Array.isArray(value) ? ` [${value.length}]` : ` {${entries.length}}` })), children);
    }
    return el("span", { class: "leaf" }, label, ": ", el("span", { class: `value ${typeof value}`, text: JSON.stringify(value) }));
  }

  function showPayload(payload) {
    state.payload = payload;
    const explorer = document.getElementById("explorer");
    if (payload === null || payload === undefined) {
      explorer.replaceChildren(el("p", { class: "hint", text: "No payload chosen." }));
      return;
    }
    explorer.replaceChildren(treeNode(null, payload, []));
  }

  document.getElementById("explorer").addEventListener("pointerdown", () => {
    templateFocusedOnPress = document.activeElement === state.lastTemplateField && !!state.lastTemplateField;
  }, true);

  function sourceChoice() {
    const kind = document.getElementById("source-kind").value;
    if (kind === "event") {
      const id = document.getElementById("source-event").value;
      return id ? { event_id: id, session: document.getElementById("source-session").checked } : null;
    }
    if (kind === "sample") {
      const name = document.getElementById("source-sample").value;
      return name ? { sample: name } : null;
    }
    try {
      const text = document.getElementById("source-paste").value;
      return text.trim() ? { payload: JSON.parse(text), trigger: state.model && state.model.trigger } : null;
    } catch (e) {
      return null;
    }
  }

  async function loadPayload() {
    const choice = sourceChoice();
    if (!choice) { showPayload(null); return; }
    if (choice.event_id) {
      const result = await api("GET", `/api/events/${encodeURIComponent(choice.event_id)}`);
      showPayload(result.ok ? result.data.payload : null);
    } else if (choice.sample) {
      const result = await api("GET", `/api/samples/${encodeURIComponent(choice.sample)}`);
      showPayload(result.ok ? result.data : null);
    } else {
      showPayload(choice.payload);
    }
    liveTestSoon();
  }

  async function loadEvents() {
    const trigger = state.model && state.model.trigger;
    const query = trigger ? `?limit=50&trigger=${encodeURIComponent(trigger)}` : "?limit=50";
    const result = await api("GET", `/api/events${query}`);
    const select = document.getElementById("source-event");
    const events = result.ok ? result.data.filter((e) => e.status !== "duplicate") : [];
    select.replaceChildren(...(events.length ? events.map((e) => el("option", { value: e.id },
      `${new Date(e.received_at * 1000).toLocaleString()} · ${e.trigger} · ${e.uid}`))
      : [el("option", { value: "" }, "no captured events yet")]));
    const samples = document.getElementById("source-sample");
    const list = state.samples || [];
    const fitting = list.filter((s) => !trigger || s.trigger === trigger).filter((s) => s.name.endsWith(".json"));
    samples.replaceChildren(...fitting.map((s) => el("option", { value: s.name }, s.name)));
    if (!events.length && fitting.length && document.getElementById("source-kind").value === "event") {
      document.getElementById("source-kind").value = "sample";
      showSourceInputs();
    }
    await loadPayload();
  }

  function showSourceInputs() {
    const kind = document.getElementById("source-kind").value;
    document.getElementById("source-event").hidden = kind !== "event";
    document.getElementById("source-session-label").hidden = kind !== "event";
    document.getElementById("source-sample").hidden = kind !== "sample";
    document.getElementById("source-paste").hidden = kind !== "paste";
  }

  document.getElementById("source-kind").addEventListener("change", () => { showSourceInputs(); loadPayload(); });
  document.getElementById("source-event").addEventListener("change", loadPayload);
  document.getElementById("source-session").addEventListener("change", loadPayload);
  document.getElementById("source-sample").addEventListener("change", loadPayload);
  document.getElementById("source-paste").addEventListener("input", debounce(loadPayload, 400));

  // ---- live test --------------------------------------------------------------------------
  function requestBlock(action) {
    if (action.error !== undefined) return el("p", { class: "bad action-error-text", text: `${action.connector}: ${action.error}` });
    return el("div", { class: "request" }, el("strong", { text: action.connector }),
      el("pre", { text: JSON.stringify(action.request, null, 2) }));
  }

  function showActionErrors(matched) {
    document.querySelectorAll(".action-card .action-error").forEach((p) => { p.hidden = true; p.textContent = ""; });
    const cards = document.querySelectorAll(".action-card");
    if (!matched || !cards.length) return;
    matched.actions.forEach((action, i) => {
      if (action.error === undefined) return;
      const p = cards[i % cards.length].querySelector(".action-error");
      p.hidden = false;
      p.textContent = action.error;
    });
  }

  function showLive(result, millis) {
    const box = document.getElementById("live-result");
    document.getElementById("live-ms").textContent = `answered in ${Math.round(millis)} ms`;
    box.dataset.ms = String(millis);
    const blocks = [];
    state.variables = result.variables || state.variables;
    if (!result.reports.length) {
      blocks.push(el("p", { class: "hint", text: result.problems.some((p) => p.severity !== "warning")
        ? "Fix the rule's errors to see what it would do." : "Choose a payload to try the rule on." }));
    }
    let lastMatched = null;
    result.reports.forEach((report, i) => {
      const title = result.reports.length > 1 ? `Call ${i + 1}: ` : "";
      report.matched.forEach((m) => {
        lastMatched = m;
        blocks.push(el("div", { class: "verdict fired" }, el("strong", { text: `${title}fires` }),
          m.note ? el("small", { text: ` (${m.note})` }) : null, ...m.actions.map(requestBlock)));
      });
      report.skipped.forEach((s) => blocks.push(el("div", { class: "verdict skipped" },
        el("strong", { text: `${title}does not fire: ` }), s.reason)));
    });
    state.lastReport = { fires: !!lastMatched, matched: lastMatched };
    showActionErrors(lastMatched);
    box.replaceChildren(...blocks);
  }

  let liveSeq = 0;
  const liveTestSoon = debounce(async () => {
    const source = sourceChoice();
    const seq = ++liveSeq;
    if (!source) { showLive({ reports: [], problems: [], variables: [] }, 0); return; }
    const started = performance.now();
    const result = await api("POST", "/api/dry-run", { text: state.text, source });
    if (seq !== liveSeq) return; // a newer edit is on its way
    const millis = performance.now() - started;
    if (!result.ok) {
      document.getElementById("live-result").replaceChildren(el("p", { class: "bad", text: (result.data && result.data.error) || `HTTP ${result.status}` }));
      return;
    }
    showLive(result.data, millis);
  }, 300);

  // ---- save, conflicts, backtest, test cases ----------------------------------------------
  async function save(etag) {
    status("saving…", "pending");
    const result = state.isDraft
      ? await api("POST", "/api/rules", { text: state.text })
      : await api("PUT", `/api/rules/${encodeURIComponent(state.ruleId)}`, { text: state.text, etag: etag || state.etag });
    if (result.status === 409) {
      const box = document.getElementById("conflict");
      document.getElementById("conflict-text").textContent = `${state.file} changed on disk since you opened it. Nothing was overwritten.`;
      box.hidden = false;
      box.dataset.etag = result.data.etag;
      box.dataset.text = result.data.text;
      status("conflict", "bad");
      return;
    }
    if (!result.ok) {
      status((result.data && result.data.error) || `HTTP ${result.status}`, "bad");
      return;
    }
    const saved = result.data;
    showProblems(saved.errors.map((e) => Object.assign({ severity: "error" }, e)));
    if (saved.status === "draft") {
      status(`kept as a draft (${saved.errors.length} error(s)); the live rule is unchanged`, "bad");
      return;
    }
    state.etag = saved.etag;
    status("saved", "good");
    if (saved.rule_id !== state.ruleId || state.isDraft) window.location.assign(`/ui/rules/${encodeURIComponent(saved.rule_id)}`);
  }

  document.getElementById("save-button").addEventListener("click", () => save());
  document.getElementById("conflict-reload").addEventListener("click", () => {
    const box = document.getElementById("conflict");
    state.etag = box.dataset.etag;
    setText(box.dataset.text);
    box.hidden = true;
    parseSoon();
    status("loaded from disk", "good");
  });
  document.getElementById("conflict-overwrite").addEventListener("click", () => {
    const box = document.getElementById("conflict");
    box.hidden = true;
    save(box.dataset.etag);
  });

  function changeRow(change) {
    const requests = (list) => el("pre", { text: list && list.length ? JSON.stringify(list, null, 2) : "(nothing sent)" });
    return el("tr", { class: "change", "data-event": change.event_id },
      el("td", {}, el("a", { href: `/ui/events/${encodeURIComponent(change.event_id)}`, text: change.event_id.slice(0, 12) })),
      el("td", { text: change.before }), el("td", { text: change.after }),
      el("td", {}, requests(change.requests_before)), el("td", {}, requests(change.requests_after)));
  }

  document.getElementById("backtest-button").addEventListener("click", async () => {
    const box = document.getElementById("backtest-result");
    box.replaceChildren(el("p", { class: "hint", text: "backtesting…" }));
    const result = await api("POST", "/api/backtest", { text: state.text, rule_id: state.ruleId });
    if (!result.ok) {
      box.replaceChildren(el("p", { class: "bad", text: (result.data && result.data.error) || `HTTP ${result.status}` }));
      return;
    }
    const r = result.data;
    const changes = r.changes || [];
    box.replaceChildren(
      el("p", { class: "summary", text: `Over the last ${r.events} captured events this version fires on ${r.fired_after}; the saved version fired on ${r.fired_before}; ${changes.length} event(s) change.` }),
      changes.length ? el("table", { class: "changes" }, el("thead", {}, el("tr", {}, ["Event", "Saved", "This version", "Sent before", "Sent now"].map((h) => el("th", { text: h })))),
        el("tbody", {}, changes.map(changeRow))) : null);
  });

  document.getElementById("save-case").addEventListener("click", async () => {
    const source = sourceChoice();
    if (!source || !state.lastReport) { status("choose a payload and let the live test run first", "pending"); return; }
    const name = window.prompt("Name of the test case", state.lastReport.fires ? "fires" : "does not fire");
    if (!name) return;
    const body = { name, source };
    const result = await api("POST", `/api/rules/${encodeURIComponent(state.ruleId)}/cases`, body);
    status(result.ok ? `test case saved in ${result.data.file}` : ((result.data && result.data.error) || `HTTP ${result.status}`), result.ok ? "good" : "bad");
  });

  // ---- tabs and start ---------------------------------------------------------------------
  function showTab(which) {
    const builder = which === "builder";
    document.getElementById("builder").hidden = !builder;
    document.getElementById("yaml-panel").hidden = builder;
    document.getElementById("tab-builder").classList.toggle("active", builder);
    document.getElementById("tab-yaml").classList.toggle("active", !builder);
    document.getElementById("tab-builder").setAttribute("aria-selected", String(builder));
    document.getElementById("tab-yaml").setAttribute("aria-selected", String(!builder));
    if (!builder && yaml) yaml.focus();
  }
  document.getElementById("tab-builder").addEventListener("click", () => showTab("builder"));
  document.getElementById("tab-yaml").addEventListener("click", () => showTab("yaml"));

  async function start() {
    const [rule, connectors, secrets, schema, samples] = await Promise.all([
      api("GET", `/api/rules/${encodeURIComponent(state.ruleId)}`),
      api("GET", "/api/connectors"), api("GET", "/api/secrets"),
      api("GET", "/api/rule-schema"), api("GET", "/api/samples"),
    ]);
    if (!rule.ok) {
      document.getElementById("builder").replaceChildren(el("p", { class: "bad", text: (rule.data && rule.data.error) || `no rule ${state.ruleId}` }));
      return;
    }
    state.connectors = connectors.ok ? connectors.data : [];
    state.secrets = secrets.ok ? secrets.data : [];
    state.samples = samples.ok ? samples.data : [];
    state.file = rule.data.file;
    state.etag = rule.data.etag;
    state.text = rule.data.text;
    state.model = rule.data.model;
    state.isDraft = rule.data.is_draft;
    document.getElementById("file-name").textContent = state.isDraft ? "draft: not live until it validates" : `rules/${rule.data.file}`;
    if (rule.data.draft) {
      const notice = document.getElementById("draft-notice");
      document.getElementById("draft-text").textContent = "A save of this rule was kept as a draft (it has errors); the live version is shown.";
      notice.hidden = false;
      document.getElementById("open-draft").addEventListener("click", () => {
        setText(rule.data.draft);
        notice.hidden = true;
        parseSoon();
        status("draft loaded: fix it and save", "pending");
      });
    }
    setupYaml(schema.ok ? schema.data : null);
    showProblems(rule.data.problems);
    renderBuilder();
    showSourceInputs();
    await loadEvents();
    root.dataset.ready = "true";
  }
  start();
})();
