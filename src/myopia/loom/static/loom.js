// The loom's page: a tree view, the focused branch's text, token alternatives, edits.
// Plain JavaScript, no build step and nothing fetched from elsewhere: it works offline.
// The server is the source of truth; after every write the page reloads the tree, so
// what it shows is what the file holds. Writes carry the version of the node the page
// last saw; a 409 means another tab changed it, and the page says to reload.
"use strict";

const state = {
  tree: null, // {file, root, focus, nodes: [...]}
  byId: new Map(),
  focus: null,
  detail: null, // the focused node with its tokens
  history: [],
  selectedToken: null,
  lastChild: new Map(), // parent id -> the child last visited, for → navigation
  editorMode: null, // "edit" | "child"
  busy: false,
};

const $ = (id) => document.getElementById(id);

// ----------------------------------------------------------------- server calls

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : response.statusText;
    const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    error.status = response.status;
    throw error;
  }
  return data;
}

function showMessage(text, offerReload) {
  $("message-text").textContent = text;
  $("reload").hidden = !offerReload;
  $("message").hidden = false;
  $("message").className = offerReload ? "conflict" : "error";
}

function hideMessage() {
  $("message").hidden = true;
}

function showError(error) {
  if (error.status === 409) {
    showMessage(
      "Not saved: this tree was changed in another tab or window since this page loaded it. " +
        "Reload the page to see the latest version, then redo your change. (" +
        error.message + ")",
      true,
    );
  } else {
    showMessage(error.status ? `Refused (${error.status}): ${error.message}` : String(error), false);
  }
}

async function loadTree() {
  const tree = await api("GET", "/api/tree");
  state.tree = tree;
  state.byId = new Map(tree.nodes.map((n) => [n.id, n]));
  if (!state.focus || !state.byId.has(state.focus)) state.focus = tree.focus;
}

async function loadDetail() {
  state.detail = await api("GET", `/api/nodes/${encodeURIComponent(state.focus)}`);
  const node = state.byId.get(state.focus);
  state.history = node && node.edits > 0
    ? await api("GET", `/api/nodes/${encodeURIComponent(state.focus)}/history`)
    : [];
}

async function refresh(focus) {
  await loadTree();
  if (focus && state.byId.has(focus)) state.focus = focus;
  state.selectedToken = null;
  await loadDetail();
  render();
}

// A write: run it, show a refusal, reload the tree either way.
async function write(label, action) {
  if (state.busy) return;
  state.busy = true;
  $("status").textContent = label + "…";
  document.body.classList.add("busy");
  try {
    const focus = await action();
    hideMessage();
    await refresh(focus);
  } catch (error) {
    showError(error);
  } finally {
    state.busy = false;
    $("status").textContent = "";
    document.body.classList.remove("busy");
  }
}

// ------------------------------------------------------------------- navigation

function visibleChildren(node) {
  const showPruned = $("show-pruned").checked;
  return node.children.map((id) => state.byId.get(id)).filter((c) => showPruned || !c.hidden);
}

async function setFocus(id) {
  if (!id || !state.byId.has(id) || state.busy) return;
  const node = state.byId.get(id);
  if (node.parent) state.lastChild.set(node.parent, id);
  state.focus = id;
  state.selectedToken = null;
  closeEditor();
  try {
    await api("PUT", "/api/focus", { node: id });
    await loadDetail();
  } catch (error) {
    showError(error);
  }
  render();
}

function move(direction) {
  const node = state.byId.get(state.focus);
  if (!node) return;
  if (direction === "parent") return setFocus(node.parent);
  if (direction === "child") {
    const children = visibleChildren(node);
    const last = state.lastChild.get(node.id);
    const target = children.find((c) => c.id === last) || children[0];
    return target && setFocus(target.id);
  }
  if (!node.parent) return;
  const siblings = visibleChildren(state.byId.get(node.parent));
  const at = siblings.findIndex((s) => s.id === node.id);
  const step = direction === "next" ? 1 : -1;
  const target = siblings[at + step];
  return target && setFocus(target.id);
}

// ----------------------------------------------------------------------- writes

function samplingSettings() {
  return {
    n: Number($("n").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
  };
}

function focused() {
  return state.byId.get(state.focus);
}

function generate() {
  const node = focused();
  return write("generating", async () => {
    const body = { version: node.version, ...samplingSettings() };
    const result = await api("POST", `/api/nodes/${encodeURIComponent(node.id)}/generate`, body);
    return result.children.length ? result.children[0].id : node.id;
  });
}

function branch(tokenIndex, alternativeIndex) {
  const node = focused();
  return write("branching", async () => {
    const body = {
      version: node.version,
      token: tokenIndex,
      alternative: alternativeIndex,
      generate: $("branch-generate").checked ? samplingSettings() : null,
    };
    const result = await api("POST", `/api/nodes/${encodeURIComponent(node.id)}/branch`, body);
    return result.children.length ? result.children[0].id : result.node.id;
  });
}

function togglePrune() {
  const node = focused();
  return write(node.hidden ? "restoring" : "pruning", async () => {
    const body = { version: node.version, hidden: !node.hidden };
    await api("PUT", `/api/nodes/${encodeURIComponent(node.id)}/hidden`, body);
    if (body.hidden && !$("show-pruned").checked) {
      await api("PUT", "/api/focus", { node: node.parent }); // the pruned node leaves the view
      return node.parent;
    }
    return node.id;
  });
}

function toggleBookmark() {
  const node = focused();
  return write("bookmarking", async () => {
    const body = { version: node.version, bookmarked: !node.bookmarked };
    await api("PUT", `/api/nodes/${encodeURIComponent(node.id)}/bookmarked`, body);
    return node.id;
  });
}

function openEditor(mode) {
  const node = focused();
  state.editorMode = mode;
  $("editor").hidden = false;
  $("editor-title").textContent = mode === "edit"
    ? "Edit this node (its old text is kept in its history):"
    : "Write a new child of this node:";
  $("editor-text").value = mode === "edit" ? node.text : "";
  $("editor-text").focus();
}

function closeEditor() {
  state.editorMode = null;
  $("editor").hidden = true;
}

function saveEditor() {
  const node = focused();
  const text = $("editor-text").value;
  const mode = state.editorMode;
  closeEditor();
  return write("saving", async () => {
    const path = `/api/nodes/${encodeURIComponent(node.id)}`;
    if (mode === "edit") {
      await api("PUT", `${path}/text`, { version: node.version, text });
      return node.id;
    }
    const child = await api("POST", `${path}/children`, { version: node.version, text });
    return child.id;
  });
}

// ---------------------------------------------------------------------- drawing

function preview(text) {
  const line = text.replace(/\s+/g, " ").trim();
  if (!line) return "(empty)";
  return line.length > 48 ? line.slice(0, 47) + "…" : line;
}

function ancestryIds(id) {
  const ids = [];
  for (let node = state.byId.get(id); node; node = state.byId.get(node.parent)) ids.push(node.id);
  return ids.reverse();
}

function renderTree() {
  const showPruned = $("show-pruned").checked;
  const inBranch = new Set(ancestryIds(state.focus));
  const build = (node) => {
    const li = document.createElement("li");
    li.setAttribute("role", "treeitem");
    const row = document.createElement("div");
    row.className = "row " + node.author;
    if (node.id === state.focus) row.classList.add("focused");
    if (inBranch.has(node.id)) row.classList.add("in-branch");
    if (node.hidden) row.classList.add("pruned");
    if (node.bookmarked) row.classList.add("bookmarked");
    row.dataset.id = node.id;
    row.textContent = (node.bookmarked ? "★ " : "") + preview(node.text) + (node.edits ? " ✎" : "");
    row.title = `${node.author}${node.hidden ? ", pruned" : ""}${node.edits ? ", edited" : ""}`;
    row.addEventListener("click", () => setFocus(node.id));
    li.appendChild(row);
    const children = node.children.map((c) => state.byId.get(c)).filter((c) => showPruned || !c.hidden);
    if (children.length) {
      const ul = document.createElement("ul");
      ul.setAttribute("role", "group");
      children.forEach((c) => ul.appendChild(build(c)));
      li.appendChild(ul);
    }
    return li;
  };
  const tree = $("tree");
  tree.replaceChildren(build(state.byId.get(state.tree.root)));
  const current = tree.querySelector(".row.focused");
  if (current) current.scrollIntoView({ block: "nearest" });
}

function tokensSpellText(detail) {
  return detail.tokens.length > 0 && detail.tokens.map((t) => t.text).join("") === detail.text;
}

function renderBranchText() {
  const box = $("branch-text");
  box.replaceChildren();
  for (const id of ancestryIds(state.focus)) {
    if (id === state.focus) break;
    const span = document.createElement("span");
    span.className = "segment ancestor";
    span.textContent = state.byId.get(id).text;
    span.title = "click to focus this node";
    span.addEventListener("click", () => setFocus(id));
    box.appendChild(span);
  }
  const detail = state.detail;
  const mine = document.createElement("span");
  mine.className = "segment focused-text";
  mine.id = "focus-text";
  if (tokensSpellText(detail)) {
    detail.tokens.forEach((token, i) => {
      const span = document.createElement("span");
      const p = Math.exp(token.logprob);
      span.className = "token" + (state.selectedToken === i ? " selected" : "");
      span.dataset.index = String(i);
      span.textContent = token.text;
      // Shade by surprise: unlikely tokens stand out, near-certain ones stay plain.
      span.style.backgroundColor = `rgba(230, 110, 20, ${(0.7 * (1 - p)).toFixed(3)})`;
      span.title = `p = ${(100 * p).toFixed(1)}%`;
      span.addEventListener("click", (event) => {
        event.stopPropagation();
        state.selectedToken = i;
        render();
      });
      mine.appendChild(span);
    });
  } else if (detail.text) {
    mine.textContent = detail.text;
  } else {
    mine.classList.add("placeholder");
    mine.textContent = detail.parent ? "(empty node)" : "(empty: press e to write a prompt)";
  }
  box.appendChild(mine);
}

function renderAlternatives() {
  const panel = $("alternatives");
  const i = state.selectedToken;
  if (i === null || !state.detail.tokens[i]) {
    panel.hidden = true;
    return;
  }
  const token = state.detail.tokens[i];
  panel.hidden = false;
  $("alternatives-title").textContent =
    `Token ${i + 1}: ${JSON.stringify(token.text)} (p = ${(100 * Math.exp(token.logprob)).toFixed(1)}%). ` +
    "Branch from an alternative: a new sibling with this node's text up to here, then it.";
  const rows = token.alternatives.map((alt, j) => {
    const tr = document.createElement("tr");
    tr.className = "alternative";
    const chosen = alt.text === token.text && alt.token_id === token.token_id;
    const cells = [JSON.stringify(alt.text), `${(100 * Math.exp(alt.logprob)).toFixed(1)}%`, chosen ? "chosen" : ""];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "branch";
    button.textContent = "branch";
    button.dataset.alternative = String(j);
    button.disabled = !state.detail.parent;
    button.addEventListener("click", () => branch(i, j));
    td.appendChild(button);
    tr.appendChild(td);
    return tr;
  });
  $("alternatives-list").replaceChildren(...rows);
}

function renderInfo() {
  const node = focused();
  const detail = state.detail;
  const parts = [node.author === "model" ? "written by the model" : "written by a person"];
  if (detail.generation && detail.generation.backend) {
    const g = detail.generation;
    parts.push(`${g.backend}, temperature ${g.temperature}, seed ${g.seed}`);
  }
  if (node.created) parts.push(node.created.replace("T", " ").replace("Z", " UTC"));
  parts.push(`version ${node.version}`);
  if (node.hidden) parts.push("pruned");
  if (node.bookmarked) parts.push("bookmarked");
  $("node-info").textContent = parts.join(" · ");
  $("prune").firstChild.textContent = node.hidden ? "unprune " : "prune ";
  $("bookmark").firstChild.textContent = node.bookmarked ? "unbookmark " : "bookmark ";
  $("prune").disabled = !node.parent;
  $("history-count").textContent = String(node.edits);
  $("history-list").replaceChildren(
    ...state.history.map((entry) => {
      const li = document.createElement("li");
      li.textContent = `version ${entry.version}, replaced ${entry.replaced}: ${entry.text}`;
      return li;
    }),
  );
}

function render() {
  if (!state.tree) return;
  $("file-name").textContent = state.tree.file;
  renderTree();
  renderBranchText();
  renderAlternatives();
  renderInfo();
}

// --------------------------------------------------------------------- controls

function typing(target) {
  return ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

function onKey(event) {
  if (state.editorMode) {
    if (event.key === "Escape") closeEditor();
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) saveEditor();
    return;
  }
  if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    ArrowLeft: () => move("parent"), h: () => move("parent"),
    ArrowRight: () => move("child"), l: () => move("child"),
    ArrowUp: () => move("prev"), k: () => move("prev"),
    ArrowDown: () => move("next"), j: () => move("next"),
    g: generate, a: () => openEditor("child"), e: () => openEditor("edit"),
    p: () => focused().parent && togglePrune(), b: toggleBookmark,
    Escape: () => { state.selectedToken = null; render(); },
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

function wire() {
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  $("generate").addEventListener("click", generate);
  $("add-child").addEventListener("click", () => openEditor("child"));
  $("edit").addEventListener("click", () => openEditor("edit"));
  $("prune").addEventListener("click", togglePrune);
  $("bookmark").addEventListener("click", toggleBookmark);
  $("to-parent").addEventListener("click", () => move("parent"));
  $("to-child").addEventListener("click", () => move("child"));
  $("to-prev").addEventListener("click", () => move("prev"));
  $("to-next").addEventListener("click", () => move("next"));
  $("editor-save").addEventListener("click", saveEditor);
  $("editor-cancel").addEventListener("click", closeEditor);
  $("show-pruned").addEventListener("change", render);
  $("reload").addEventListener("click", () => location.reload());
  $("dismiss").addEventListener("click", hideMessage);
  document.addEventListener("keydown", onKey);
}

wire();
refresh()
  .then(() => document.body.classList.add("ready"))
  .catch(showError);
