// The loom's page: an outline window, the focused branch's text, token alternatives,
// edits, streamed generation, sibling comparison. Plain JavaScript, no build step and
// nothing fetched from elsewhere: it works offline.
//
// The server is the source of truth and the page reads it a piece at a time: one
// /api/view per key press (the focus, its branch, its children and siblings, a window
// of the outline around it), and every 1.5 s /api/changes since the revision it last
// saw, to follow writes made in other tabs. It never loads the whole tree.
// Writes carry the version of the node the page last saw; on a 409 an open editor stays
// open with the person's text beside the newer version, and drafts are kept in
// localStorage until saved, so nothing typed is lost.
"use strict";

const state = {
  view: null, // the last /api/view answer
  history: [], // the focused node's earlier versions
  compareData: null, // the last /api/nodes/{id}/compare answer
  focus: null,
  hoist: null,
  revision: 0,
  selectedToken: null,
  lastChild: new Map(), // parent id -> the child last visited, for → navigation
  editor: null, // {mode: "edit" | "child" | "tags", node, version}
  busy: false,
  stream: null, // {id, rows: [[token, ...], ...]}
  compare: false,
  read: false,
  keys: Promise.resolve(), // the chain of key actions
};

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ----------------------------------------------------------------- server calls

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
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

function showMessage(text, kind) {
  $("message-text").textContent = text;
  $("reload").hidden = kind !== "conflict";
  $("message").hidden = false;
  $("message").className = kind;
}

function hideMessage() {
  $("message").hidden = true;
}

function showError(error) {
  if (error.status === 409) {
    showMessage(
      "Not saved: this tree was changed in another tab or window since this page read it. " +
        "The page now shows the latest version; redo your change. (" + error.message + ")",
      "conflict",
    );
  } else {
    showMessage(error.status ? `Refused (${error.status}): ${error.message}` : String(error), "error");
  }
}

async function loadView(focus) {
  const params = new URLSearchParams();
  if (focus || state.focus) params.set("focus", focus || state.focus);
  if (state.hoist) params.set("hoist", state.hoist);
  if ($("show-pruned").checked) params.set("pruned", "true");
  let view;
  try {
    view = await api("GET", `/api/view?${params}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    params.delete("focus"); // the focus was deleted elsewhere: the tree's own focus
    params.delete("hoist");
    state.hoist = null;
    view = await api("GET", `/api/view?${params}`);
  }
  if (view.node.id !== state.focus) state.selectedToken = null;
  state.view = view;
  state.focus = view.node.id;
  state.hoist = view.hoist;
  state.revision = Math.max(state.revision, view.revision);
  state.history = [];
  if (view.edits > 0) {
    state.history = await api("GET", `/api/nodes/${enc(state.focus)}/history`);
  }
  if (state.compare) await loadCompare();
  if ($("bookmarks-panel").open) await loadBookmarks();
  render();
}

// A write: run it, show a refusal, redraw from the server either way.
async function write(label, action) {
  if (state.busy) return;
  state.busy = true;
  $("status").textContent = label + "…";
  document.body.classList.add("busy");
  try {
    const focus = await action();
    hideMessage();
    await loadView(focus);
  } catch (error) {
    showError(error);
    await loadView().catch(() => {});
  } finally {
    state.busy = false;
    $("status").textContent = "";
    document.body.classList.remove("busy");
  }
}

// Other tabs' writes: poll what changed since the revision this page last saw.
async function followChanges() {
  if (state.busy || state.stream || !state.view) return;
  try {
    const changes = await api("GET", `/api/changes?since=${state.revision}`);
    if (changes.revision > state.revision) {
      state.revision = changes.revision;
      if (changes.reload || changes.changed.length || changes.removed.length) await loadView();
    }
  } catch (_) {
    // the server may be restarting: try again at the next tick
  }
}

// ------------------------------------------------------------------- navigation

function focused() {
  return state.view.node;
}

async function setFocus(id) {
  if (!id || state.busy) return;
  closeEditor(true);
  try {
    api("PUT", "/api/focus", { node: id }).catch(() => {});
    await loadView(id);
    if (state.view.node.parent) state.lastChild.set(state.view.node.parent, id);
  } catch (error) {
    showError(error);
  }
}

function move(direction) {
  const view = state.view;
  if (direction === "parent") return setFocus(view.node.parent);
  if (direction === "child") {
    const last = state.lastChild.get(view.node.id);
    const target = view.children.find((c) => c.id === last) || view.children[0];
    return target && setFocus(target.id);
  }
  const at = view.siblings.findIndex((s) => s.id === view.node.id);
  const target = view.siblings[at + (direction === "next" ? 1 : -1)];
  return target && setFocus(target.id);
}

function pageOutline(direction) {
  const rows = state.view.outline.rows;
  const target = direction === "down" ? rows[rows.length - 1] : rows[0];
  return target && setFocus(target.id);
}

function nextBookmark() {
  return api("GET", "/api/bookmarks").then(({ bookmarks }) => {
    if (!bookmarks.length) return showMessage("No bookmarks yet: b bookmarks the focused node.", "error");
    const at = bookmarks.findIndex((b) => b.id === state.focus);
    return setFocus(bookmarks[(at + 1) % bookmarks.length].id);
  });
}

// ----------------------------------------------------------------------- settings

function samplingSettings() {
  const stop = $("stop").value
    .split("|")
    .map((s) => s.replace(/\\n/g, "\n"))
    .filter((s) => s.length > 0);
  const settings = {
    n: Number($("n").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
    stop,
  };
  if ($("seed").value !== "") settings.seed = Number($("seed").value);
  return settings;
}

function showSettings(s) {
  $("n").value = s.n;
  $("temperature").value = s.temperature;
  $("top-p").value = s.top_p;
  $("max-tokens").value = s.max_tokens;
  $("stop").value = s.stop.map((x) => x.replace(/\n/g, "\\n")).join("|");
  $("seed").value = s.seed === null || s.seed === undefined ? "" : s.seed;
}

async function saveSettings() {
  try {
    await api("PUT", "/api/settings", samplingSettings());
    hideMessage();
  } catch (error) {
    showError(error);
  }
}

// ----------------------------------------------------------------------- writes

function nodePath(node) {
  return `/api/nodes/${enc(node.id)}`;
}

// Streamed generation: tokens arrive as server-sent events over a POST response.
async function generate() {
  if (state.busy || state.stream) return;
  const node = focused();
  state.busy = true;
  state.stream = { id: null, rows: [] };
  $("stream-title").textContent = "generating… ";
  renderStream();
  let done = null;
  try {
    const response = await fetch(`${nodePath(node)}/generate/stream`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ version: node.version, ...samplingSettings() }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      const error = new Error(data.detail || response.statusText);
      error.status = response.status;
      throw error;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done: finished } = await reader.read();
      if (finished) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = /^event: (.*)$/m.exec(block);
        const data = /^data: (.*)$/m.exec(block);
        if (!event || !data) continue;
        const payload = JSON.parse(data[1]);
        if (event[1] === "start") state.stream.id = payload.stream;
        if (event[1] === "token") {
          (state.stream.rows[payload.row] ||= []).push(payload);
          renderStream();
        }
        if (event[1] === "done") done = payload;
        if (event[1] === "error") {
          const error = new Error(payload.detail);
          error.status = payload.status;
          throw error;
        }
      }
    }
    hideMessage();
    if (done && done.cancelled) {
      showMessage("Generation cancelled: what was written so far is kept, marked cancelled.", "info");
    }
  } catch (error) {
    showError(error);
  } finally {
    state.stream = null;
    state.busy = false;
    $("stream").hidden = true;
  }
  const first = done && done.children.length ? done.children[0].id : node.id;
  await loadView(first).catch(showError);
}

function cancelGeneration() {
  if (!state.stream || !state.stream.id) return;
  $("stream-title").textContent = "cancelling… ";
  api("POST", `/api/streams/${enc(state.stream.id)}/cancel`).catch(showError);
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
    const result = await api("POST", `${nodePath(node)}/branch`, body);
    return result.children.length ? result.children[0].id : result.node.id;
  });
}

function togglePrune() {
  const node = focused();
  if (!node.parent) return;
  return write(node.hidden ? "restoring" : "pruning", async () => {
    const body = { version: node.version, hidden: !node.hidden };
    await api("PUT", `${nodePath(node)}/hidden`, body);
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
    await api("PUT", `${nodePath(node)}/bookmarked`, { version: node.version, bookmarked: !node.bookmarked });
    return node.id;
  });
}

function toggleCollapsed(id, collapsed) {
  return write(collapsed ? "collapsing" : "expanding", async () => {
    await api("PUT", `/api/nodes/${enc(id)}/collapsed`, { collapsed });
    return state.focus;
  });
}

function toggleHoist() {
  state.hoist = state.hoist ? null : state.focus;
  return loadView().catch(showError);
}

function deleteNode() {
  const node = focused();
  if (!node.parent) return;
  const question = "Delete this node and everything under it, for good? (Prune, p, hides reversibly.)";
  if (!window.confirm(question)) return;
  return write("deleting", async () => {
    const result = await api("POST", `${nodePath(node)}/delete`, { version: node.version });
    return result.focus;
  });
}

function splitNode() {
  const node = focused();
  const i = state.selectedToken;
  if (i === null || i === 0) {
    return showMessage("Select a token after the first with [ and ], then s splits before it.", "error");
  }
  const at = node.tokens.slice(0, i).reduce((sum, t) => sum + t.text.length, 0);
  return write("splitting", async () => {
    await api("POST", `${nodePath(node)}/split`, { version: node.version, at });
    return node.id;
  });
}

// Split a node with no tokens (written by hand) where the editor's caret is.
function splitAtCaret() {
  const editor = state.editor;
  const node = focused();
  if (!editor || editor.mode !== "edit" || editor.node !== node.id) return;
  if ($("editor-text").value !== node.text) {
    return showMessage("Save or cancel your edit first: a split cuts the saved text.", "error");
  }
  const at = $("editor-text").selectionStart;
  closeEditor();
  return write("splitting", async () => {
    await api("POST", `${nodePath(node)}/split`, { version: node.version, at });
    return node.id;
  });
}

function mergeNode() {
  const node = focused();
  return write("merging", async () => {
    await api("POST", `${nodePath(node)}/merge`, { version: node.version });
    return node.id;
  });
}

function restoreVersion(fromVersion) {
  const node = focused();
  return write("restoring", async () => {
    await api("POST", `${nodePath(node)}/restore`, { version: node.version, from_version: fromVersion });
    return node.id;
  });
}

async function importFile(file) {
  const text = await file.text();
  return write("importing", async () => {
    const result = await api("POST", "/api/import", text);
    state.hoist = null;
    return result.focus;
  });
}

// ------------------------------------------------------------- editor and drafts

function draftKey(editor) {
  return `loom-draft:${state.view.file}:${editor.node}:${editor.mode}`;
}

function openEditor(mode) {
  const node = focused();
  state.editor = { mode, node: node.id, version: node.version };
  const titles = {
    edit: "Edit this node (its old text is kept in its history):",
    child: "Write a new child of this node:",
    tags: "Tags of this node (words separated by spaces or commas):",
  };
  const initial = { edit: node.text, child: "", tags: node.tags.join(" ") }[mode];
  const draft = localStorage.getItem(draftKey(state.editor));
  $("editor").hidden = false;
  $("editor-split").hidden = mode !== "edit";
  $("conflict").hidden = true;
  $("editor-title").textContent = titles[mode] + (draft !== null ? " (your unsaved draft, restored)" : "");
  $("editor-text").value = draft !== null ? draft : initial;
  $("editor-text").focus();
}

function closeEditor(keepDraft) {
  if (state.editor && !keepDraft) localStorage.removeItem(draftKey(state.editor));
  state.editor = null;
  $("editor").hidden = true;
  if (document.activeElement === $("editor-text")) $("editor-text").blur();
}

async function saveEditor() {
  const editor = state.editor;
  if (!editor || state.busy) return;
  const text = $("editor-text").value;
  const path = `/api/nodes/${enc(editor.node)}`;
  state.busy = true;
  $("status").textContent = "saving…";
  try {
    let focus = editor.node;
    if (editor.mode === "edit") {
      await api("PUT", `${path}/text`, { version: editor.version, text });
    } else if (editor.mode === "tags") {
      const tags = text.split(/[\s,]+/).filter((t) => t);
      await api("PUT", `${path}/tags`, { version: editor.version, tags });
    } else {
      focus = (await api("POST", `${path}/children`, { version: editor.version, text })).id;
    }
    closeEditor();
    hideMessage();
    state.busy = false;
    await loadView(focus);
  } catch (error) {
    state.busy = false;
    if (error.status === 409) await showConflict(editor);
    else showError(error);
  } finally {
    state.busy = false;
    $("status").textContent = "";
  }
}

// A 409: the node changed elsewhere. Keep the person's text in the editor, show the
// newer version beside it, and base the next save on that version.
async function showConflict(editor) {
  const newer = await api("GET", `/api/nodes/${enc(editor.node)}`);
  editor.version = newer.version;
  $("conflict").hidden = false;
  $("conflict-title").textContent =
    `Changed elsewhere: version ${newer.version} (shown here) is newer than the one you edited. ` +
    "Your text is kept on the left: merge what you want from the newer one, then save again " +
    "(it replaces the newer version, which stays in the history).";
  $("conflict-text").textContent = editor.mode === "tags" ? newer.tags.join(" ") : newer.text;
  showMessage("Not saved yet: this node changed in another tab. Your draft is kept; merge and save.", "conflict");
  $("editor-text").focus();
}

// ---------------------------------------------------------------------- drawing

function preview(text, length) {
  const line = text.replace(/\s+/g, " ").trim();
  if (!line) return "(empty)";
  return line.length > 60 ? line.slice(0, 59) + "…" : line + (length > text.length ? "…" : "");
}

const MAX_INDENT = 8; // levels: deeper rows show their depth as a number instead
const INDENT_REM = 0.7;

// keepScroll: rows were added at an end of the window; the pane is not scrolled to the
// focus (the person is reading elsewhere in the outline).
function renderTree(keepScroll = false) {
  const outline = state.view.outline;
  const inBranch = new Set(state.view.ancestry.map((n) => n.id));
  const base = Math.min(...outline.rows.map((r) => r.depth));
  const rows = [];
  if (outline.more_above) rows.push(moreRow("up", "… more above (PageUp)"));
  for (const node of outline.rows) {
    const row = document.createElement("div");
    row.className = "row " + node.author;
    row.setAttribute("role", "treeitem");
    if (node.id === state.focus) row.classList.add("focused");
    if (inBranch.has(node.id)) row.classList.add("in-branch");
    if (node.hidden) row.classList.add("pruned");
    if (node.bookmarked) row.classList.add("bookmarked");
    row.dataset.id = node.id;
    const depth = document.createElement("span");
    depth.className = "depth";
    depth.textContent = String(node.depth);
    depth.title = `depth ${node.depth}`;
    const twisty = document.createElement("span");
    twisty.className = "twisty";
    // The depth number stays in its column; the text moves right, at most MAX_INDENT steps.
    twisty.style.marginLeft = `${INDENT_REM * Math.min(node.depth - base, MAX_INDENT)}rem`;
    if (node.children > 0) {
      twisty.textContent = node.collapsed ? "▸" : "▾";
      twisty.title = `${node.collapsed ? "expand" : "collapse"} (c): ${node.children} children`;
      twisty.addEventListener("click", (event) => {
        event.stopPropagation();
        toggleCollapsed(node.id, !node.collapsed);
      });
    }
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = (node.bookmarked ? "★ " : "") + preview(node.text, node.length) +
      (node.edits ? " ✎" : "") + (node.collapsed ? ` [${node.children}]` : "");
    row.append(depth, twisty, label);
    for (const tag of node.tags) {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = "#" + tag;
      row.appendChild(chip);
    }
    row.title = `${node.author}${node.hidden ? ", pruned" : ""}${node.edits ? ", edited" : ""}`;
    row.addEventListener("click", () => setFocus(node.id));
    rows.push(row);
  }
  if (outline.more_below) rows.push(moreRow("down", "… more below (PageDown)"));
  const tree = $("tree");
  tree.replaceChildren(...rows);
  const current = tree.querySelector(".row.focused");
  if (current && !keepScroll) {
    outlineScroll.quietUntil = performance.now() + 250; // our scroll, not the person's
    current.scrollIntoView({ block: "nearest" });
  }
  $("hoist-info").hidden = !state.view.hoist;
  if (state.view.hoist) {
    const hoisted = state.view.ancestry.find((n) => n.id === state.view.hoist);
    $("hoist-name").textContent = hoisted ? preview(hoisted.text, 0) : state.view.hoist;
  }
}

// ------------------------------------------------------- the outline's far ends

// Scrolling or wheeling to the end of the loaded window loads the next rows there
// (/api/outline, from the last or first row held), without moving the focus or
// reloading the view. The window keeps at most MAX_OUTLINE_ROWS rows: the far end is
// dropped as the near one grows, so a 5,000-deep story never sits in the page whole.
const MAX_OUTLINE_ROWS = 600;
const OUTLINE_EDGE_PX = 48; // this close to an end counts as there
const outlineScroll = { loading: false, quietUntil: 0 };

function atOutlineEnd(direction) {
  const pane = $("tree-pane");
  if (direction === "up") return pane.scrollTop <= OUTLINE_EDGE_PX;
  return pane.scrollTop + pane.clientHeight >= pane.scrollHeight - OUTLINE_EDGE_PX;
}

function onOutlineScroll(direction) {
  if (performance.now() < outlineScroll.quietUntil) return;
  for (const d of direction ? [direction] : ["down", "up"]) {
    if (atOutlineEnd(d)) return extendOutline(d).catch(showError);
  }
}

async function extendOutline(direction) {
  const outline = state.view && state.view.outline;
  const more = outline && (direction === "down" ? outline.more_below : outline.more_above);
  if (!more || outlineScroll.loading || state.busy) return;
  const rows = outline.rows;
  const edge = direction === "down" ? rows[rows.length - 1] : rows[0];
  const params = new URLSearchParams({ edge: edge.id, depth: String(edge.depth), direction });
  if (state.view.hoist) params.set("hoist", state.view.hoist);
  if ($("show-pruned").checked) params.set("pruned", "true");
  outlineScroll.loading = true;
  try {
    const got = await api("GET", `/api/outline?${params}`);
    if (!state.view || state.view.outline !== outline) return; // redrawn meanwhile
    const pinned = rowTop(edge.id);
    if (direction === "down") {
      rows.push(...got.rows);
      outline.more_below = got.more;
      if (rows.length > MAX_OUTLINE_ROWS) {
        rows.splice(0, rows.length - MAX_OUTLINE_ROWS);
        outline.more_above = true;
      }
    } else {
      rows.unshift(...got.rows);
      outline.more_above = got.more;
      if (rows.length > MAX_OUTLINE_ROWS) {
        rows.splice(MAX_OUTLINE_ROWS);
        outline.more_below = true;
      }
    }
    renderTree(true);
    // The edge row stays where the person saw it, whatever was added or dropped.
    $("tree-pane").scrollTop += rowTop(edge.id) - pinned;
  } finally {
    outlineScroll.loading = false;
  }
}

function rowTop(id) {
  const row = $("tree").querySelector(`.row[data-id="${CSS.escape(id)}"]`);
  return row ? row.getBoundingClientRect().top : 0;
}

function moreRow(direction, text) {
  const row = document.createElement("div");
  row.className = "row more";
  row.textContent = text;
  row.addEventListener("click", () => pageOutline(direction));
  return row;
}

function tokensSpellText(node) {
  return node.tokens.length > 0 && node.tokens.map((t) => t.text).join("") === node.text;
}

// One generated token as a shaded span. A token with nothing to see (a bare line break,
// an empty string) gets a marker drawn by the stylesheet, outside the text, so it can
// still be clicked and the span's text still spells the node's.
function tokenSpan(token) {
  const span = document.createElement("span");
  span.className = "token";
  span.textContent = token.text;
  if (token.text === "") span.classList.add("empty");
  else if (token.text.trim() === "" && token.text.includes("\n")) span.classList.add("newline");
  shade(span, token.logprob);
  return span;
}

function shade(span, logprob) {
  const p = Math.exp(logprob);
  // Shade by surprise: unlikely tokens stand out, near-certain ones stay plain.
  span.style.backgroundColor = `rgba(230, 110, 20, ${(0.7 * (1 - p)).toFixed(3)})`;
  span.title = `p = ${(100 * p).toFixed(1)}%`;
}

function renderBranchText() {
  const box = $("branch-text");
  box.classList.toggle("read", state.read);
  const parts = [];
  for (const node of state.view.ancestry.slice(0, -1)) {
    const span = document.createElement("span");
    span.className = "segment ancestor";
    span.textContent = node.text;
    span.title = "click to focus this node";
    span.addEventListener("click", () => setFocus(node.id));
    parts.push(span);
  }
  const node = focused();
  const mine = document.createElement("span");
  mine.className = "segment focused-text";
  mine.id = "focus-text";
  if (tokensSpellText(node) && !state.read) {
    node.tokens.forEach((token, i) => {
      const span = tokenSpan(token);
      span.classList.toggle("selected", state.selectedToken === i);
      span.dataset.index = String(i);
      span.addEventListener("click", (event) => {
        event.stopPropagation();
        state.selectedToken = i;
        render();
      });
      mine.appendChild(span);
    });
  } else if (node.text) {
    mine.textContent = node.text;
  } else {
    mine.classList.add("placeholder");
    mine.textContent = node.parent ? "(empty node)" : "(empty: press e to write a prompt)";
  }
  parts.push(mine);
  box.replaceChildren(...parts);
}

function renderStream() {
  $("stream").hidden = !state.stream;
  if (!state.stream) return;
  $("stream-rows").replaceChildren(
    ...state.stream.rows.map((tokens) => {
      const li = document.createElement("li");
      li.className = "stream-row";
      for (const token of tokens || []) {
        li.appendChild(tokenSpan(token));
      }
      return li;
    }),
  );
}

function renderAlternatives() {
  const panel = $("alternatives");
  const node = focused();
  const i = state.selectedToken;
  if (i === null || !tokensSpellText(node) || !node.tokens[i] || state.read) {
    panel.hidden = true;
    return;
  }
  const token = node.tokens[i];
  panel.hidden = false;
  $("alternatives-title").textContent =
    `Token ${i + 1} of ${node.tokens.length}: ${JSON.stringify(token.text)} ` +
    `(p = ${(100 * Math.exp(token.logprob)).toFixed(1)}%). Branch from an alternative ` +
    "(its number key, or click): a new sibling with this node's text up to here, then it. " +
    "[ and ] move between tokens.";
  const rows = token.alternatives.map((alt, j) => {
    const tr = document.createElement("tr");
    tr.className = "alternative";
    const chosen = alt.text === token.text && alt.token_id === token.token_id;
    const cells = [j < 9 ? String(j + 1) : "", JSON.stringify(alt.text),
      `${(100 * Math.exp(alt.logprob)).toFixed(1)}%`, chosen ? "chosen" : ""];
    cells.forEach((text, k) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (k === 0) td.className = "key";
      tr.appendChild(td);
    });
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "branch";
    button.textContent = "branch";
    button.dataset.alternative = String(j);
    button.disabled = !node.parent;
    button.addEventListener("click", () => branch(i, j));
    td.appendChild(button);
    tr.appendChild(td);
    return tr;
  });
  $("alternatives-list").replaceChildren(...rows);
}

async function loadCompare() {
  state.compareData = await api("GET", `/api/nodes/${enc(state.focus)}/compare`);
}

function renderCompare() {
  const panel = $("compare");
  panel.hidden = !state.compare || !state.compareData;
  if (panel.hidden) return;
  const data = state.compareData;
  $("compare-title").textContent =
    `${data.branches.length} sibling branches from the same parent. log p is the model's ` +
    "log-probability of the whole branch (the sum over its tokens): the higher, the likelier " +
    "the model itself found that path; per token compares branches of different lengths.";
  $("compare-columns").replaceChildren(
    ...data.branches.map((b) => {
      const column = document.createElement("div");
      column.className = "compare-column" + (b.id === state.focus ? " focused" : "") +
        (b.id === data.likeliest ? " likeliest" : "");
      const head = document.createElement("button");
      head.type = "button";
      head.className = "compare-head";
      // The server says why a branch has no score (a backend that cannot score, a
      // generation still running, a branch too long for the model): never a blank.
      head.textContent = b.logprob === null
        ? b.unscored || "not scored"
        : `log p = ${b.logprob.toFixed(2)} (${b.mean_logprob.toFixed(2)} per token)` +
          (b.tokens_from === "scored" ? " · written by hand, read by the model" : "") +
          (b.id === data.likeliest ? " · likeliest" : "");
      head.addEventListener("click", () => setFocus(b.id));
      const body = document.createElement("div");
      body.className = "compare-text";
      if (b.tokens.length) {
        for (const token of b.tokens) {
          body.appendChild(tokenSpan(token));
        }
      } else {
        body.textContent = b.text;
      }
      column.append(head, body);
      return column;
    }),
  );
}

function renderInfo() {
  const node = focused();
  const parts = [node.author === "model" ? "written by the model" : "written by a person"];
  const g = node.generation;
  if (g && g.backend) parts.push(`${g.backend}, temperature ${g.temperature}, seed ${g.seed}`);
  if (g && g.finish_reason === "cancelled") parts.push("cancelled while generating");
  if (node.created) parts.push(node.created.replace("T", " ").replace("Z", " UTC"));
  parts.push(`version ${node.version}`);
  parts.push(`depth ${state.view.ancestry.length - 1}`);
  if (node.hidden) parts.push("pruned");
  if (node.bookmarked) parts.push("bookmarked");
  if (node.tags.length) parts.push(node.tags.map((t) => "#" + t).join(" "));
  $("node-info").textContent = parts.join(" · ");
  $("prune").firstChild.textContent = node.hidden ? "unprune " : "prune ";
  $("bookmark").firstChild.textContent = node.bookmarked ? "unbookmark " : "bookmark ";
  $("prune").disabled = !node.parent;
  $("export-branch").href = `/api/nodes/${enc(node.id)}/branch.txt`;
  $("history-count").textContent = String(state.history.length);
  $("history-list").replaceChildren(
    ...state.history.map((entry) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "restore";
      button.textContent = "restore";
      button.addEventListener("click", () => restoreVersion(entry.version));
      const text = document.createElement("span");
      text.textContent = ` version ${entry.version}, replaced ${entry.replaced}: ${entry.text}`;
      li.append(button, text);
      return li;
    }),
  );
}

function render() {
  if (!state.view) return;
  $("file-name").textContent = state.view.file;
  renderTree();
  renderBranchText();
  renderAlternatives();
  renderCompare();
  renderInfo();
}

// ------------------------------------------------------------ search, bookmarks

async function runSearch() {
  const query = $("search").value.trim();
  const list = $("search-results");
  if (!query) {
    list.hidden = true;
    return;
  }
  try {
    const found = await api("GET", `/api/search?q=${enc(query)}`);
    list.replaceChildren(...found.map((n) => jumpItem(n)));
    if (!found.length) list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "nothing found" }));
    list.hidden = false;
  } catch (error) {
    showError(error);
  }
}

function jumpItem(node) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "jump";
  button.textContent = (node.bookmarked ? "★ " : "") + preview(node.text, node.length) +
    node.tags.map((t) => " #" + t).join("");
  button.addEventListener("click", () => setFocus(node.id));
  li.appendChild(button);
  return li;
}

async function loadBookmarks() {
  const { bookmarks, tags } = await api("GET", "/api/bookmarks");
  $("bookmark-count").textContent = `(${bookmarks.length})`;
  $("bookmarks").replaceChildren(...bookmarks.map(jumpItem));
  $("tag-list").replaceChildren(
    ...tags.map((tag) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chip";
      button.textContent = "#" + tag;
      button.addEventListener("click", () => {
        $("search").value = "#" + tag;
        runSearch();
      });
      return button;
    }),
  );
}

// --------------------------------------------------------------------- controls

function typing(target) {
  return ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

function selectToken(step) {
  const node = focused();
  if (!tokensSpellText(node)) return;
  const i = state.selectedToken === null ? (step > 0 ? 0 : node.tokens.length - 1) : state.selectedToken + step;
  state.selectedToken = Math.max(0, Math.min(node.tokens.length - 1, i));
  render();
}

function branchByKey(digit) {
  const node = focused();
  const i = state.selectedToken;
  if (i === null || !node.tokens[i] || !node.parent) return false;
  if (digit - 1 >= node.tokens[i].alternatives.length) return false;
  return branch(i, digit - 1);
}

function toggleCompare() {
  state.compare = !state.compare;
  if (!state.compare) return render();
  return loadCompare().then(render).catch(showError);
}

function toggleHelp(show) {
  $("help").hidden = show === undefined ? !$("help").hidden : !show;
}

// One table: the key handler reads it, and the help overlay lists it.
const KEYS = [
  [["ArrowLeft", "h"], "← h", "parent", () => move("parent")],
  [["ArrowRight", "l"], "→ l", "child (the one last visited)", () => move("child")],
  [["ArrowUp", "k"], "↑ k", "previous sibling", () => move("prev")],
  [["ArrowDown", "j"], "↓ j", "next sibling", () => move("next")],
  [["PageUp"], "PageUp", "up the outline by a window", () => pageOutline("up")],
  [["PageDown"], "PageDown", "down the outline by a window", () => pageOutline("down")],
  [["g"], "g", "generate n children, streamed (Esc cancels, keeping what was written)", generate],
  [["a"], "a", "write a child by hand", () => openEditor("child")],
  [["e"], "e", "edit the focused node (old text kept in its history)", () => openEditor("edit")],
  [["p"], "p", "prune or unprune (hide, reversibly)", togglePrune],
  [["d"], "d", "delete the node and its subtree (asks first)", deleteNode],
  [["s"], "s", "split the node before the selected token (in the editor: Alt+S at the caret)", splitNode],
  [["m"], "m", "merge the node with its only child", mergeNode],
  [["b"], "b", "bookmark or unbookmark", toggleBookmark],
  [["'"], "'", "jump to the next bookmark", nextBookmark],
  [["t"], "t", "edit the node's tags", () => openEditor("tags")],
  [["c"], "c", "collapse or expand the focused node in the outline",
    () => toggleCollapsed(state.focus, !focused().collapsed)],
  [["H"], "H", "hoist the outline at the focused node, or unhoist", toggleHoist],
  [["/"], "/", "search text (#word: a tag); Enter searches, Tab reaches the results", () => $("search").focus()],
  [["["], "[", "select the previous token (its alternatives show)", () => selectToken(-1)],
  [["]"], "]", "select the next token", () => selectToken(1)],
  [["1"], "1 … 9", "branch from that alternative of the selected token", null],
  [["v"], "v", "compare sibling branches, with the model's log-probabilities", toggleCompare],
  [["r"], "r", "read view: plain text, node boundaries marked", () => { state.read = !state.read; render(); }],
  [["x"], "x", "export the branch (root to here) as plain text", () => $("export-branch").click()],
  [["i"], "i", "import a tree (JSON) into this empty tree", () => $("import-file").click()],
  [[","], ",", "generation settings (saved with the tree)", () => $("n").focus()],
  [["y"], "y", "open or close this node's history (restore a version)", () => { $("history").open = !$("history").open; }],
  [["?"], "?", "show or hide this list", () => toggleHelp()],
  [["Escape"], "Esc", "close, cancel, unselect, or leave a text field", null],
];

function onKey(event) {
  if (event.key === "Escape") {
    if (!$("help").hidden) return toggleHelp(false);
    if (state.stream) return cancelGeneration();
    if (state.editor && document.activeElement === $("editor-text")) {
      localStorage.setItem(draftKey(state.editor), $("editor-text").value);
      return closeEditor(true); // Esc keeps the draft: e reopens it
    }
    if (typing(event.target)) return event.target.blur();
    state.selectedToken = null;
    $("search-results").hidden = true;
    return render();
  }
  if (state.editor && event.target === $("editor-text")) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      saveEditor();
    }
    if (event.altKey && event.code === "KeyS") {
      event.preventDefault();
      splitAtCaret();
    }
    return;
  }
  if (event.target === $("search") && event.key === "Enter") {
    event.preventDefault();
    return runSearch();
  }
  if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey || !state.view) return;
  if (/^[1-9]$/.test(event.key)) {
    event.preventDefault();
    state.keys = state.keys.then(() => branchByKey(Number(event.key))).catch(showError);
    return;
  }
  const entry = KEYS.find(([keys, , , action]) => action && keys.includes(event.key));
  if (entry) {
    event.preventDefault();
    // One key after the other: a key pressed while the last one's view is loading acts
    // on the view that one brings, not on the one it replaces.
    state.keys = state.keys.then(() => entry[3]()).catch(showError);
  }
}

function buildHelp() {
  $("help-list").replaceChildren(
    ...KEYS.map(([, label, what]) => {
      const tr = document.createElement("tr");
      const key = document.createElement("td");
      key.appendChild(Object.assign(document.createElement("kbd"), { textContent: label }));
      const text = document.createElement("td");
      text.textContent = what;
      tr.append(key, text);
      return tr;
    }),
  );
}

function wire() {
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  for (const id of ["n", "temperature", "top-p", "max-tokens", "stop", "seed"]) {
    $(id).addEventListener("change", saveSettings);
  }
  $("generate").addEventListener("click", generate);
  $("cancel-stream").addEventListener("click", cancelGeneration);
  $("add-child").addEventListener("click", () => openEditor("child"));
  $("edit").addEventListener("click", () => openEditor("edit"));
  $("prune").addEventListener("click", togglePrune);
  $("bookmark").addEventListener("click", toggleBookmark);
  $("tag").addEventListener("click", () => openEditor("tags"));
  $("compare-button").addEventListener("click", toggleCompare);
  $("read-button").addEventListener("click", () => { state.read = !state.read; render(); });
  $("to-parent").addEventListener("click", () => move("parent"));
  $("to-child").addEventListener("click", () => move("child"));
  $("to-prev").addEventListener("click", () => move("prev"));
  $("to-next").addEventListener("click", () => move("next"));
  $("editor-save").addEventListener("click", saveEditor);
  $("editor-cancel").addEventListener("click", () => closeEditor());
  $("editor-split").addEventListener("click", splitAtCaret);
  $("editor-text").addEventListener("input", () => {
    if (state.editor) localStorage.setItem(draftKey(state.editor), $("editor-text").value);
  });
  $("show-pruned").addEventListener("change", () => loadView().catch(showError));
  $("tree-pane").addEventListener("scroll", () => onOutlineScroll(), { passive: true });
  // A wheel at an end that cannot scroll further (or a window shorter than the pane)
  // gives no scroll event: the wheel's own direction says which end to load. Any input
  // of the person's in the pane ends the quiet after a redraw: the scroll is theirs.
  $("tree-pane").addEventListener("wheel", (event) => {
    outlineScroll.quietUntil = 0;
    if (event.deltaY) onOutlineScroll(event.deltaY > 0 ? "down" : "up");
  }, { passive: true });
  for (const kind of ["pointerdown", "keydown", "touchstart"]) {
    $("tree-pane").addEventListener(kind, () => { outlineScroll.quietUntil = 0; }, { passive: true });
  }
  $("unhoist").addEventListener("click", toggleHoist);
  $("search").addEventListener("search", runSearch);
  $("bookmarks-panel").addEventListener("toggle", () => loadBookmarks().catch(showError));
  $("import").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", () => {
    const file = $("import-file").files[0];
    if (file) importFile(file);
    $("import-file").value = "";
  });
  $("help-button").addEventListener("click", () => toggleHelp());
  $("reload").addEventListener("click", () => location.reload());
  $("dismiss").addEventListener("click", hideMessage);
  document.addEventListener("keydown", onKey);
}

wire();
buildHelp();
Promise.all([loadView(), api("GET", "/api/settings").then(showSettings)])
  .then(() => {
    document.body.classList.add("ready");
    setInterval(followChanges, 1500);
  })
  .catch(showError);
