// Reference web client for the local stack: the WebSocket protocol of docs/protocol.md, no dependencies.
// Sign in through the company's own identity provider (OIDC code flow + PKCE), inbox with unread counts, conversations, live messages,
// edits, deletes, reactions, threads, read receipts, typing, presence with custom status, files
// (presigned POST straight to storage, scanned notice, presigned download), external conversations
// marked as such, asking the experts (docs/experts.md), and a socket that reconnects by itself with jittered
// backoff and syncs what it missed.

const params = new URLSearchParams(location.search);
const BACKOFF_INITIAL_MS = Number(params.get("backoff")) || 500; // ?backoff=ms (tests slow it down)
const BACKOFF_MAX_MS = 15000;
const REQUEST_TIMEOUT_MS = 15000;
const HEARTBEAT_MS = 60000;
const GAP_SYNC_MS = 3000; // as the SDK's gap_sync_delay

const $ = (id) => document.getElementById(id);

function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function claims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

export class ChatError extends Error {
  constructor(code, message, retryAfter) {
    super(`${code}: ${message}`);
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// --- the protocol client -------------------------------------------------------------------

export class ChatClient extends EventTarget {
  constructor(getToken) {
    super();
    this.getToken = getToken; // async () => jwt; called on every (re)connect, so tokens renew
    this.highSeq = new Map(); // conversationId -> highest seq seen: what a reconnect syncs
    this.seen = new Map(); // conversationId -> Set of delivered seqs (live vs sync dedupe)
    this.pending = new Map();
    this.n = 0;
    this.attempt = 0;
    this.closed = false;
    this.stats = { connects: 0, reconnects: 0, replayed: 0, syncs: 0, gapSyncs: 0 };
    this.ws = null;
    this.timers = [];
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  async connect() {
    let token;
    try {
      token = await this.getToken();
    } catch (err) {
      this.scheduleReconnect(String(err));
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // Browsers cannot set Authorization on a WebSocket: the token travels as a subprotocol.
    const ws = new WebSocket(`${scheme}://${location.host}/ws?device=web`, ["chat.v1", `bearer.${token}`]);
    this.ws = ws;
    ws.onopen = async () => {
      this.attempt = 0;
      this.stats.connects += 1;
      const reconnect = this.stats.connects > 1;
      if (reconnect) this.stats.reconnects += 1;
      this.timers.push(setInterval(() => this.call("presence.heartbeat", { active: !document.hidden }).catch(() => {}),
                                   HEARTBEAT_MS));
      // Missed messages first, then "open": the page reloads its inbox after the replay.
      if (reconnect) await this.resync().catch((err) => console.warn("sync failed", err));
      if (this.ws === ws) this.emit("open", { reconnect });
    };
    ws.onmessage = (m) => {
      let frame;
      try { frame = JSON.parse(m.data); } catch { return; }
      this.onFrame(frame);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.timers.forEach(clearInterval);
      this.timers = [];
      for (const { reject, timer } of this.pending.values()) {
        clearTimeout(timer);
        reject(new ChatError("connection_lost", "the connection closed before the reply arrived"));
      }
      this.pending.clear();
      if (!this.closed) this.scheduleReconnect(`closed (${e.code})`);
    };
  }

  scheduleReconnect(reason) {
    // Exponential backoff with jitter: uniformly in [cap/2, cap], cap = min(max, initial * 2^attempt).
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** this.attempt);
    const delay = Math.round(cap / 2 + Math.random() * cap / 2);
    this.attempt += 1;
    this.emit("down", { reason, delay, attempt: this.attempt });
    setTimeout(() => { if (!this.closed) this.connect(); }, delay);
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000);
  }

  waitOpen(timeoutMs) {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.removeEventListener("open", done); reject(new ChatError("timeout", "not connected")); },
                               timeoutMs);
      const done = () => { clearTimeout(timer); resolve(); };
      this.addEventListener("open", done, { once: true });
    });
  }

  // Send an action; resolves with the ack's result (ping: {serverTime}), rejects with ChatError.
  async call(action, fields = {}) {
    await this.waitOpen(REQUEST_TIMEOUT_MS);
    const requestId = `w${++this.n}`;
    const reply = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(requestId); reject(new ChatError("timeout", `no reply to ${action}`)); },
                               REQUEST_TIMEOUT_MS);
      this.pending.set(requestId, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ action, requestId, ...fields }));
    });
    if (reply.type === "error") {
      const e = reply.error || {};
      throw new ChatError(e.code, e.message, e.retryAfter);
    }
    if (reply.type === "pong") return { serverTime: reply.serverTime };
    const result = reply.result || {};
    if (action === "message.send" && result.message) this.delivered(result.message);
    return result;
  }

  // Idempotent send: one clientMessageId for every retry (lost connection, timeout, rate limit).
  async send(conversationId, body, clientMessageId = randomId(), threadRootSeq = null) {
    const fields = { conversationId, clientMessageId, body, ...(threadRootSeq != null ? { threadRootSeq } : {}) };
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.call("message.send", fields);
      } catch (err) {
        const retriable = ["connection_lost", "timeout", "internal", "rate_limited"].includes(err.code);
        if (!retriable || attempt >= 8) throw err;
        const wait = err.code === "rate_limited" && err.retryAfter != null
          ? err.retryAfter * 1000 : Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  track(conversationId, lastSeq = 0) {
    if (!this.highSeq.has(conversationId)) this.highSeq.set(conversationId, lastSeq);
  }

  // Record a message as delivered; false if it already was.  Events may arrive out of order or
  // twice (docs/protocol.md "Delivery order"): one past a gap schedules a sync of that conversation
  // in GAP_SYNC_MS, in case the missing one is only late (a shorter wait turns reordering into syncs).
  delivered(m) {
    let s = this.seen.get(m.conversationId);
    if (!s) this.seen.set(m.conversationId, (s = new Set()));
    if (s.has(m.seq)) return false;
    s.add(m.seq);
    const high = this.highSeq.get(m.conversationId) || 0;
    if (m.seq > high) {
      this.highSeq.set(m.conversationId, m.seq);
      if (high > 0 && m.seq > high + 1) this.fillGapLater(m.conversationId, high, m.seq);
    }
    return true;
  }

  fillGapLater(conversationId, after, upTo) {
    setTimeout(async () => {
      const s = this.seen.get(conversationId) || new Set();
      let missing = false;
      for (let q = after + 1; q < upTo; q += 1) if (!s.has(q)) { missing = true; break; }
      if (!missing || !this.connected) return;
      try {
        const res = await this.call("sync", { conversations: [{ conversationId, afterSeq: after }] });
        this.stats.gapSyncs += 1;
        for (const entry of res.conversations || []) {
          for (const m of (entry.messages || []).sort((a, b) => a.seq - b.seq)) {
            if (this.delivered(m)) {
              this.stats.replayed += 1;
              this.emit("event", { type: "message.created", message: m, mention: false, replayed: true });
            }
          }
        }
      } catch (err) { /* a reconnect syncs everything anyway */ }
    }, GAP_SYNC_MS);
  }

  onFrame(frame) {
    const p = frame.requestId != null && this.pending.get(frame.requestId);
    if (p) {
      clearTimeout(p.timer);
      this.pending.delete(frame.requestId);
      p.resolve(frame);
      return;
    }
    if (frame.type === "ack" || frame.type === "pong") return;
    if (frame.type === "message.created" && !this.delivered(frame.message)) return;
    if (frame.type === "conversation.created") this.track(frame.conversation.conversationId, frame.conversation.lastSeq);
    this.emit("event", frame);
  }

  // After a reconnect: everything after the highest seq of every conversation seen.
  async resync() {
    let todo = [...this.highSeq.entries()];
    for (let page = 0; page < 10 && todo.length; page += 1) {
      const again = [];
      for (let i = 0; i < todo.length; i += 100) {
        const batch = todo.slice(i, i + 100).map(([conversationId, afterSeq]) => ({ conversationId, afterSeq }));
        const res = await this.call("sync", { conversations: batch });
        for (const entry of res.conversations || []) {
          if (entry.error) { this.highSeq.delete(entry.conversationId); continue; }
          const msgs = (entry.messages || []).sort((a, b) => a.seq - b.seq);
          for (const m of msgs) {
            if (this.delivered(m)) {
              this.stats.replayed += 1;
              this.emit("event", { type: "message.created", message: m, mention: false, replayed: true });
            }
          }
          if (entry.hasMore && msgs.length) again.push([entry.conversationId, msgs[msgs.length - 1].seq]);
        }
      }
      todo = again;
    }
    this.stats.syncs += 1;
    this.emit("synced", {});
  }
}

// --- the page --------------------------------------------------------------------------------

const REACTIONS = ["👍", "❤️", "😂", "🎉", "👀", "✅"];
const MANAGER_ROLES = new Set(["owner", "admin"]);

const state = {
  me: null, // {email, sub, tenant, name}
  convs: new Map(), // conversationId -> conversation view (with unread)
  members: new Map(), // conversationId -> [{tenantId, userId, role, lastReadSeq}]
  presence: new Map(), // "tenant#user" -> {status, custom, updatedAt}
  open: null, // open conversationId
  messages: [], // of the open conversation, oldest first (thread replies included; the timeline hides them)
  typing: new Map(), // userKey -> expiresAt (open conversation)
  thread: null, // {conversationId, rootSeq, root, replies} of the open thread panel
  mine: new Map(), // "conv#seq" -> Set of emojis I reacted with (what this device has seen)
  uploads: new Map(), // fileId -> {conversationId, name, status: uploading|scanning|rejected, message}
  editing: null, // seq being edited inline
  confirmDelete: null, // seq whose delete waits for a second click
  people: new Map(), // "tenant#user" -> {displayName, external, ...} from users.get, or null (not visible)
  experts: { topics: [], asked: new Map(), offers: new Map(), answers: [] }, // docs/experts.md
};
let chat = null;

const userKey = (u) => `${u.tenantId}#${u.userId}`;
const isMe = (u) => state.me && u && u.userId === state.me.sub && u.tenantId === state.me.tenant;
const isExternalUser = (u) => state.me && u && u.tenantId !== state.me.tenant;
// A person's display name (users.get, cached for the session); the id's prefix until it is known,
// or for good when the server does not show this person to us.
function nameOf(u) {
  const p = state.people.get(userKey(u));
  if (p) return p.displayName;
  if (p === undefined) wantPeople([userKey(u)]);
  return u.userId.slice(0, 8);
}
const label = (u) => (isMe(u) ? "you" : `${nameOf(u)}${isExternalUser(u) ? ` (${u.tenantId})` : ""}`);
const statusOf = (u) => (state.presence.get(userKey(u)) || {}).status || "offline";
const reactKey = (conversationId, seq) => `${conversationId}#${seq}`;

// Names are fetched in batches: every key asked for during one render goes in one users.get
// (100 keys per request); the page re-renders once the answers are in.
const peopleQueue = new Set();
const peopleAsked = new Set();
let peopleTimer = null;

function wantPeople(keys) {
  for (const k of keys) if (!state.people.has(k) && !peopleAsked.has(k)) peopleQueue.add(k);
  if (peopleQueue.size && !peopleTimer && chat) peopleTimer = setTimeout(resolvePeople, 20);
}

async function resolvePeople() {
  peopleTimer = null;
  const keys = [...peopleQueue];
  peopleQueue.clear();
  keys.forEach((k) => peopleAsked.add(k));
  const batches = [];
  for (let i = 0; i < keys.length; i += 100) batches.push(keys.slice(i, i + 100));
  const results = await Promise.allSettled(batches.map((b) => chat.call("users.get", { keys: b })));
  let learned = false;
  results.forEach((r, i) => {
    batches[i].forEach((k) => peopleAsked.delete(k)); // failed batches are asked again at the next render
    if (r.status !== "fulfilled") return;
    for (const p of r.value.users || []) state.people.set(userKey(p), p);
    for (const k of r.value.notFound || []) state.people.set(k, null);
    learned = true;
  });
  if (learned) { renderAll(); renderRoster(); renderTyping(); }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "title" || k === "role") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node; // user content only ever goes in as text nodes
}

function flash(text) {
  const box = $("notice");
  box.textContent = text;
  box.classList.remove("hidden");
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => box.classList.add("hidden"), 6000);
}

function otherTenants(conv) {
  const mine = state.me ? state.me.tenant : null;
  const fromConv = (conv.tenants || []).filter((t) => t !== mine);
  const fromMembers = (state.members.get(conv.conversationId) || []).map((u) => u.tenantId).filter((t) => t !== mine);
  return [...new Set([...fromConv, ...fromMembers])].sort();
}

function title(conv) {
  if (conv.name) return conv.name;
  const others = (state.members.get(conv.conversationId) || []).filter((u) => !isMe(u));
  if (others.length) return others.map(label).join(", ");
  return conv.kind === "direct" ? "Direct message" : `Group (${conv.memberCount})`;
}

function myRole(conversationId) {
  const me = (state.members.get(conversationId) || []).find(isMe);
  return me ? me.role : null;
}

function customText(custom) {
  if (!custom || !(custom.text || custom.emoji)) return "";
  return `${custom.emoji || ""} ${custom.text || ""}`.trim();
}

// --- rendering ---------------------------------------------------------------------------------

function renderInbox() {
  const list = $("inbox");
  const convs = [...state.convs.values()].sort((a, b) => (b.lastActivityAt || 0) - (a.lastActivityAt || 0));
  list.replaceChildren(...convs.map((c) => {
    const others = (state.members.get(c.conversationId) || []).filter((u) => !isMe(u));
    const dot = c.kind === "direct" && others.length === 1 ? [el("span", { class: `dot ${statusOf(others[0])}` }), " "] : [];
    const ext = c.external ? el("span", { class: "badge external", title: `shared with ${otherTenants(c).join(", ") || "another company"}` }, "external") : null;
    const li = el("li", { class: `${c.conversationId === state.open ? "open" : ""}${c.external ? " ext" : ""}`,
                          "data-conversation": c.conversationId, "data-external": String(Boolean(c.external)) },
      el("span", { class: "title" }, dot, el("span", { class: "name" }, title(c)), ext),
      c.unread ? el("span", { class: "unread", "data-unread": String(c.unread) }, String(c.unread)) : el("span"),
      el("span", { class: "preview" }, c.lastMessage ? c.lastMessage.text || "" : "no messages yet"));
    li.onclick = () => openConversation(c.conversationId);
    return li;
  }));
}

function fileBody(m) {
  if (!m.file) return el("span", {}, "file removed");
  return el("span", { class: "file" },
    el("span", { class: "file-name" }, `📎 ${m.file.name}`),
    el("span", { class: "file-size" }, ` ${formatSize(m.file.size)}`),
    el("button", { class: "download", type: "button", "data-file": m.file.fileId, onclick: () => download(m.file) }, "Download"));
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function reactionChips(m) {
  const mine = state.mine.get(reactKey(m.conversationId, m.seq)) || new Set();
  const entries = Object.entries(m.reactions || {}).filter(([, n]) => n > 0);
  if (!entries.length) return null;
  return el("div", { class: "reactions" }, entries.map(([emoji, n]) =>
    el("button", { type: "button", class: `chip${mine.has(emoji) ? " mine" : ""}`, "data-emoji": emoji, "data-count": String(n),
                   title: mine.has(emoji) ? "remove your reaction" : "react", onclick: () => react(m, emoji) },
      `${emoji} ${n}`)));
}

function messageActions(m, inThread) {
  if (m.deleted || !m.seq) return null;
  const mineMsg = isMe(m.sender);
  const canDelete = mineMsg || MANAGER_ROLES.has(myRole(m.conversationId));
  if (state.confirmDelete === m.seq) {
    return el("div", { class: "actions confirm" }, "Delete this message? ",
      el("button", { type: "button", class: "danger", "data-action": "confirm-delete", onclick: () => removeMessage(m) }, "Delete"),
      el("button", { type: "button", "data-action": "cancel-delete", onclick: () => { state.confirmDelete = null; renderAll(); } }, "Cancel"));
  }
  const palette = el("span", { class: "palette" }, REACTIONS.map((emoji) =>
    el("button", { type: "button", class: "pick", "data-emoji": emoji, title: `react ${emoji}`, onclick: () => react(m, emoji) }, emoji)));
  return el("div", { class: "actions" }, palette,
    !inThread && m.threadRootSeq == null
      ? el("button", { type: "button", "data-action": "thread", title: "reply in thread", onclick: () => openThread(m.conversationId, m.seq) }, "💬") : null,
    mineMsg && m.kind !== "file"
      ? el("button", { type: "button", "data-action": "edit", title: "edit", onclick: () => { state.editing = m.seq; renderAll(); } }, "✏️") : null,
    canDelete
      ? el("button", { type: "button", "data-action": "delete", title: "delete", onclick: () => { state.confirmDelete = m.seq; renderAll(); } }, "🗑") : null);
}

function editor(m) {
  const input = el("input", { class: "edit-input", value: m.body || "", "aria-label": "edit message" });
  const save = async () => {
    const body = input.value.trim();
    state.editing = null;
    if (body && body !== m.body) {
      try {
        const res = await chat.call("message.edit", { conversationId: m.conversationId, seq: m.seq, body });
        upsertMessage(res.message);
      } catch (err) { flash(`Not edited: ${err.message}`); }
    }
    renderAll();
  };
  input.onkeydown = (e) => {
    if (e.key === "Enter") { e.preventDefault(); save(); }
    if (e.key === "Escape") { state.editing = null; renderAll(); }
  };
  setTimeout(() => input.focus(), 0);
  return el("div", { class: "editor" }, input,
    el("button", { type: "button", class: "primary", "data-action": "save-edit", onclick: save }, "Save"),
    el("button", { type: "button", onclick: () => { state.editing = null; renderAll(); } }, "Cancel"));
}

// Who has read up to exactly this message: each other member is shown under the newest
// top-level message at or below their read marker.
function receiptsByMessage(list) {
  const conv = state.convs.get(state.open);
  const out = new Map();
  if (!conv || conv.receipts === false) return out;
  const seqs = list.filter((m) => m.seq).map((m) => m.seq);
  for (const u of state.members.get(state.open) || []) {
    if (isMe(u) || !u.lastReadSeq) continue;
    const at = seqs.filter((s) => s <= u.lastReadSeq).at(-1);
    if (at === undefined) continue;
    if (!out.has(at)) out.set(at, []);
    out.get(at).push(u);
  }
  return out;
}

function messageNode(m, { inThread = false, receipts = null } = {}) {
  const when = new Date(m.createdAt || Date.now()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const external = isExternalUser(m.sender);
  let body;
  if (m.deleted) body = el("div", { class: "body" }, "message deleted");
  else if (state.editing === m.seq && !inThread) body = editor(m);
  else body = el("div", { class: "body" }, m.kind === "file" ? fileBody(m) : m.body);
  const replies = !inThread && m.threadRootSeq == null && m.replyCount
    ? el("button", { type: "button", class: "replies", "data-replies": String(m.replyCount), onclick: () => openThread(m.conversationId, m.seq) },
      `💬 ${m.replyCount} ${m.replyCount === 1 ? "reply" : "replies"}`) : null;
  const seen = receipts && receipts.length
    ? el("div", { class: "receipt", "data-seen-by": receipts.map((u) => u.userId).join(" ") }, `✓✓ Seen by ${receipts.map(label).join(", ")}`) : null;
  return el("div", {
    class: `msg${isMe(m.sender) ? " mine" : ""}${m.pending ? " pending" : ""}${m.deleted ? " deleted" : ""}${m.kind === "file" ? " filemsg" : ""}`,
    "data-seq": String(m.seq || ""), "data-kind": m.kind || "text" },
  el("div", { class: "meta" }, el("span", { class: "sender", "data-user": m.sender.userId }, isMe(m.sender) ? "you" : nameOf(m.sender)),
    external ? el("span", { class: "badge external small" }, m.sender.tenantId) : null,
    ` · ${m.pending ? "sending…" : when}`, m.editedAt && !m.deleted ? el("span", { class: "edited" }, " · edited") : null),
  body, m.deleted ? null : reactionChips(m), replies, messageActions(m, inThread), seen);
}

function renderMessages() {
  const box = $("messages");
  if (!state.open) return;
  const top = state.messages.filter((m) => m.threadRootSeq == null);
  const uploads = [...state.uploads.entries()].filter(([, u]) => u.conversationId === state.open);
  if (!top.length && !uploads.length) {
    box.replaceChildren(el("div", { class: "empty" }, "No messages yet. Say hello."));
    return;
  }
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const receipts = receiptsByMessage(top);
  box.replaceChildren(...top.map((m) => messageNode(m, { receipts: receipts.get(m.seq) })),
    ...uploads.map(([fileId, u]) => el("div", { class: `upload ${u.status}`, "data-file": fileId, "data-status": u.status },
      `📎 ${u.name} — ${u.status === "uploading" ? "uploading…" : u.status === "scanning" ? "scanning…" : `refused: ${u.message}`}`,
      u.status === "rejected" ? el("button", { type: "button", onclick: () => { state.uploads.delete(fileId); renderMessages(); } }, "Dismiss") : null)));
  if (atBottom || top.length < 30) box.scrollTop = box.scrollHeight;
}

function renderThread() {
  const panel = $("thread");
  const t = state.thread;
  if (!t || t.conversationId !== state.open) {
    panel.classList.add("hidden");
    $("people").classList.remove("hidden");
    return;
  }
  panel.classList.remove("hidden");
  $("people").classList.add("hidden");
  const root = state.messages.find((m) => m.seq === t.rootSeq) || t.root;
  const replies = state.messages.filter((m) => m.threadRootSeq === t.rootSeq).sort((a, b) => (a.seq || Infinity) - (b.seq || Infinity));
  $("thread-messages").replaceChildren(
    root ? messageNode(root, { inThread: true }) : el("div", { class: "empty" }, "loading…"),
    el("div", { class: "thread-count" }, `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`),
    ...replies.map((m) => messageNode(m, { inThread: true })));
}

function renderHeader() {
  const conv = state.convs.get(state.open);
  if (!conv) return;
  const others = otherTenants(conv);
  const head = $("convhead");
  head.classList.toggle("external", Boolean(conv.external));
  head.dataset.external = String(Boolean(conv.external));
  $("conv-name").replaceChildren(title(conv), ...(conv.external ? [el("span", { class: "badge external" }, "external")] : []));
  $("conv-banner").replaceChildren(...(conv.external
    ? [el("strong", {}, "External conversation"), ` with people from ${others.join(", ") || "another company"}. Messages and files you share here leave ${state.me.tenant}.`]
    : []));
  $("conv-banner").classList.toggle("hidden", !conv.external);
  $("conv-members").replaceChildren(...(state.members.get(conv.conversationId) || []).map((u) => {
    const p = state.presence.get(userKey(u));
    return el("span", { "data-user": u.userId, "data-tenant": u.tenantId, class: isExternalUser(u) ? "member ext" : "member",
                        title: p && customText(p.custom) ? customText(p.custom) : statusOf(u) },
      el("span", { class: `dot ${statusOf(u)}` }), el("span", { class: "who" }, ` ${isMe(u) ? "you" : nameOf(u)}`),
      isExternalUser(u) ? el("span", { class: "badge external small" }, u.tenantId) : null);
  }));
  $("composer-input").placeholder = conv.external ? `Message (shared with ${others.join(", ") || "another company"})` : "Write a message";
}

function renderRoster() {
  const items = [...state.presence.entries()].filter(([k]) => !state.me || k !== `${state.me.tenant}#${state.me.sub}`);
  $("roster").replaceChildren(...items.map(([key, p]) => {
    const [tenantId, userId] = key.split("#");
    const custom = customText(p.custom);
    return el("li", { "data-user": userId, "data-status": p.status, "data-custom": custom },
      el("span", { class: `dot ${p.status}` }),
      el("span", { class: "who" }, nameOf({ tenantId, userId }),
        tenantId !== state.me.tenant ? el("span", { class: "badge external small" }, tenantId) : null),
      el("span", { class: "status-text" }, `${p.status.replace(/_/g, " ")}${custom ? ` · ${custom}` : ""}`));
  }));
  const mine = state.me && state.presence.get(`${state.me.tenant}#${state.me.sub}`);
  $("my-dot").className = `dot ${mine ? mine.status : "available"}`;
  if (mine && MANUAL.has(mine.status) && $("my-status").value !== mine.status) $("my-status").value = mine.status;
  $("my-custom").textContent = mine ? customText(mine.custom) : "";
}
const MANUAL = new Set(["available", "away", "busy", "do_not_disturb", "in_meeting"]);

function renderTyping() {
  const now = Date.now();
  const who = [...state.typing.entries()].filter(([, exp]) => exp > now).map(([k]) => {
    const [tenantId, userId] = k.split("#");
    return label({ tenantId, userId });
  });
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

function renderAll() {
  renderInbox();
  renderHeader();
  renderMessages();
  renderThread();
}

// --- loading -----------------------------------------------------------------------------------

async function loadMembers(conversationId, fresh = false) {
  if (state.members.has(conversationId) && !fresh) return;
  try {
    const res = await chat.call("member.list", { conversationId });
    state.members.set(conversationId, res.members.map((m) => ({ tenantId: m.tenantId, userId: m.userId, role: m.role,
                                                                 lastReadSeq: m.lastReadSeq || 0 })));
  } catch { /* not visible any more */ }
}

async function loadInbox() {
  const res = await chat.call("conversation.list", { limit: 100 });
  state.convs = new Map(res.conversations.map((c) => [c.conversationId, c]));
  for (const c of res.conversations) chat.track(c.conversationId, c.lastSeq);
  renderInbox();
  await Promise.all(res.conversations.map((c) => loadMembers(c.conversationId)));
  renderInbox();
  renderHeader();
}

async function subscribePresence() {
  const res = await chat.call("presence.subscribe", {});
  for (const p of res.roster || []) setPresence(p);
  renderRoster();
  renderInbox();
  renderHeader();
}

function setPresence(p) {
  // posts may arrive out of order: an older publication never replaces a newer one
  const prev = state.presence.get(userKey(p.user));
  if (prev && prev.updatedAt && p.updatedAt && prev.updatedAt > p.updatedAt) return;
  state.presence.set(userKey(p.user), { status: p.status, custom: p.custom, updatedAt: p.updatedAt || (prev && prev.updatedAt) });
}

async function markRead() {
  const conv = state.convs.get(state.open);
  const last = state.messages.filter((m) => m.seq).at(-1);
  if (!conv || !last || document.hidden) return;
  if ((conv.lastReadSeq || 0) >= last.seq && !conv.unread) return;
  try {
    const res = await chat.call("read", { conversationId: conv.conversationId, seq: last.seq });
    conv.lastReadSeq = res.lastReadSeq;
    conv.unread = res.unread;
    renderInbox();
  } catch { /* next message retries */ }
}

async function openConversation(conversationId) {
  if (state.open !== conversationId) {
    state.thread = null;
    state.editing = null;
    state.confirmDelete = null;
  }
  state.open = conversationId;
  state.typing.clear();
  renderTyping();
  $("composer").classList.remove("hidden");
  await loadMembers(conversationId, true); // fresh read markers for the receipts
  renderHeader();
  renderInbox();
  const res = await chat.call("history", { conversationId, limit: 50 });
  if (state.open !== conversationId) return;
  state.messages = res.messages.slice().reverse();
  for (const m of state.messages) chat.delivered(m);
  renderMessages();
  renderThread();
  await markRead();
  $("composer-input").focus();
}

async function openThread(conversationId, rootSeq) {
  state.thread = { conversationId, rootSeq, root: null };
  renderThread();
  try {
    const res = await chat.call("thread.history", { conversationId, rootSeq, limit: 100 });
    if (!state.thread || state.thread.rootSeq !== rootSeq) return;
    state.thread.root = res.root;
    upsertMessage(res.root, false);
    for (const r of res.replies) upsertMessage(r, false);
    renderMessages();
    renderThread();
    $("thread-input").focus();
  } catch (err) {
    flash(`Thread not available: ${err.message}`);
    closeThread();
  }
}

function closeThread() {
  state.thread = null;
  renderThread();
}

// --- events ------------------------------------------------------------------------------------

function upsertMessage(m, render = true) {
  if (m.conversationId !== state.open) return;
  const i = state.messages.findIndex((x) => (x.pending && x.clientMessageId && x.clientMessageId === m.clientMessageId) || (x.seq && x.seq === m.seq));
  if (i >= 0) state.messages[i] = { ...state.messages[i], ...m, pending: false }; else state.messages.push(m);
  state.messages.sort((a, b) => (a.seq || Infinity) - (b.seq || Infinity));
  if (render) { renderMessages(); renderThread(); }
}

function onMessage(m) {
  const conv = state.convs.get(m.conversationId);
  if (!conv) { // a conversation we had not seen: fetch it
    chat.call("conversation.get", { conversationId: m.conversationId }).then(async (res) => {
      state.convs.set(m.conversationId, res.conversation);
      await loadMembers(m.conversationId);
      renderInbox();
    }).catch(() => {});
    return;
  }
  conv.lastSeq = Math.max(conv.lastSeq || 0, m.seq);
  conv.lastActivityAt = Math.max(conv.lastActivityAt || 0, m.createdAt || 0);
  conv.lastMessage = { seq: m.seq, text: (m.body || "").slice(0, 120), at: m.createdAt };
  // the sender's own read marker moves to their message
  const sender = (state.members.get(m.conversationId) || []).find((u) => userKey(u) === userKey(m.sender));
  if (sender) sender.lastReadSeq = Math.max(sender.lastReadSeq || 0, m.seq);
  if (m.file) {
    for (const [fid] of state.uploads) if (fid === m.file.fileId) state.uploads.delete(fid);
  }
  if (m.conversationId === state.open) {
    const known = state.messages.some((x) => x.seq === m.seq);
    if (m.threadRootSeq != null && !known) {
      const root = state.messages.find((x) => x.seq === m.threadRootSeq);
      if (root) root.replyCount = (root.replyCount || 0) + 1;
    }
    upsertMessage(m, false);
    state.typing.delete(userKey(m.sender));
    renderMessages();
    renderThread();
    renderTyping();
    markRead();
  } else if (!isMe(m.sender)) {
    conv.unread = (conv.unread || 0) + 1;
  }
  renderInbox();
}

function onEvent(f) {
  switch (f.type) {
    case "message.created":
      onMessage(f.message);
      break;
    case "message.edited":
      upsertMessage(f.message);
      break;
    case "message.deleted":
      if (f.conversationId === state.open) {
        state.messages = state.messages.map((m) => (m.seq === f.seq ? { ...m, deleted: true, body: null, file: null, reactions: {} } : m));
        if (state.thread && state.thread.rootSeq === f.seq) state.thread.root = { ...state.thread.root, deleted: true, body: null };
        renderMessages();
        renderThread();
      }
      break;
    case "reaction.changed": {
      if (isMe(f.user)) {
        const k = reactKey(f.conversationId, f.seq);
        const set = state.mine.get(k) || new Set();
        if (f.added) set.add(f.emoji); else set.delete(f.emoji);
        state.mine.set(k, set);
      }
      if (f.conversationId === state.open) {
        state.messages = state.messages.map((m) => (m.seq === f.seq ? { ...m, reactions: f.reactions } : m));
        renderMessages();
        renderThread();
      }
      break;
    }
    case "receipt": {
      const u = (state.members.get(f.conversationId) || []).find((x) => userKey(x) === userKey(f.user));
      if (u) u.lastReadSeq = Math.max(u.lastReadSeq || 0, f.seq);
      if (f.conversationId === state.open) renderMessages();
      break;
    }
    case "file.ready":
      state.uploads.delete(f.file.fileId);
      if (f.conversationId === state.open) renderMessages();
      break;
    case "file.rejected": {
      const u = state.uploads.get(f.fileId) || { conversationId: f.conversationId, name: f.name };
      state.uploads.set(f.fileId, { ...u, status: "rejected", message: f.message || f.reason });
      if (f.conversationId === state.open) renderMessages();
      flash(`${f.name} was refused: ${f.message || f.reason}`);
      break;
    }
    case "conversation.created":
    case "conversation.updated":
      state.convs.set(f.conversation.conversationId, { ...(state.convs.get(f.conversation.conversationId) || {}), ...f.conversation });
      state.members.delete(f.conversation.conversationId);
      loadMembers(f.conversation.conversationId).then(() => { renderInbox(); renderHeader(); });
      if (f.type === "conversation.created") subscribePresence().catch(() => {});
      break;
    case "members.changed":
      state.members.delete(f.conversationId);
      loadMembers(f.conversationId).then(() => { renderInbox(); renderHeader(); });
      break;
    case "presence.changed":
      setPresence(f);
      renderRoster();
      renderInbox();
      renderHeader();
      break;
    case "expert.question.offered":
      state.experts.offers.set(f.questionId, f);
      renderExperts();
      break;
    case "expert.question.taken":
    case "expert.question.cancelled":
      state.experts.offers.delete(f.questionId);
      renderExperts();
      break;
    case "expert.question.wave":
      setAsked(f.questionId, `wave ${f.wave}: ${f.experts} expert${f.experts === 1 ? "" : "s"} asked`);
      break;
    case "expert.question.unanswered":
      setAsked(f.questionId, "nobody available yet: waiting for an expert");
      break;
    case "expert.question.accepted":
      setAsked(f.questionId, `accepted by ${f.expert.displayName || "an expert"}`);
      break;
    case "typing":
      if (f.conversationId === state.open && !isMe(f.user)) {
        if (f.typing) state.typing.set(userKey(f.user), f.expiresAt); else state.typing.delete(userKey(f.user));
        renderTyping();
      }
      break;
    default:
      break;
  }
}

// --- ask the experts (docs/experts.md) ----------------------------------------------------------

function setAsked(questionId, status) {
  const q = state.experts.asked.get(questionId) || { text: "" }; // an event may come before the ask's ack
  q.status = status;
  state.experts.asked.set(questionId, q);
  renderExperts();
}

function chosenTopic() {
  const [tenantId, topicId] = ($("expert-topic").value || "|").split("|");
  return { tenantId, topicId };
}

function renderExperts() {
  const ex = state.experts;
  $("expert-offers").replaceChildren(...[...ex.offers.values()].map((f) => el("li", { "data-question": f.questionId },
    el("span", { class: "q" }, f.text),
    el("span", { class: "by" }, `${f.topicName || "expert topic"} · asked by ${f.askedBy || "someone"}`),
    el("div", { class: "buttons" },
      el("button", { class: "primary accept", type: "button", onclick: () => acceptQuestion(f.questionId) }, "Accept"),
      el("button", { class: "decline", type: "button", onclick: () => declineQuestion(f.questionId) }, "Decline")))));
  $("my-questions").replaceChildren(...[...ex.asked.entries()].map(([qid, q]) => el("li", { "data-question": qid },
    el("span", { class: "q" }, q.text), el("span", { class: "status" }, q.status))));
  $("expert-answers").replaceChildren(...ex.answers.map((e) => el("li", { "data-question": e.questionId },
    el("span", { class: "q" }, e.question), el("span", { class: "a" }, e.answer),
    el("span", { class: "by" }, `${e.topicName || ""} · answered by ${e.answeredBy || "an expert"}`))));
}

async function loadExpertTopics() {
  try {
    state.experts.topics = (await chat.call("expert.topics", {})).topics;
  } catch {
    state.experts.topics = []; // guests ask nobody
  }
  $("experts").classList.toggle("hidden", state.experts.topics.length === 0);
  $("expert-topic").replaceChildren(...state.experts.topics.map((t) => el("option", { value: `${t.tenantId}|${t.topicId}` },
    t.shared ? `${t.name} (${t.tenantId})` : t.name)));
}

async function searchAnswers(q) {
  const { tenantId, topicId } = chosenTopic();
  if (!topicId || (state.me && tenantId !== state.me.tenant)) return; // a partner's answers stay its own
  try {
    state.experts.answers = (await chat.call("expert.search", q ? { topicId, q } : { topicId })).entries;
  } catch {
    state.experts.answers = [];
  }
  renderExperts();
}

function onAskInput() {
  clearTimeout(onAskInput.timer);
  const text = $("ask-text").value.trim();
  if (text.length < 3) return;
  // earlier answers, before asking (the search takes the draft's first 500 characters)
  onAskInput.timer = setTimeout(() => searchAnswers(text.slice(0, 500)), 400);
}

async function askExperts(e) {
  e.preventDefault();
  const text = $("ask-text").value.trim();
  const { tenantId, topicId } = chosenTopic();
  if (!text || !topicId) return;
  try {
    const fields = { topicId, text };
    if (state.me && tenantId !== state.me.tenant) fields.tenantId = tenantId;
    const { question } = await chat.call("expert.ask", fields);
    const seen = state.experts.asked.get(question.questionId);
    state.experts.asked.set(question.questionId, { text, status: seen ? seen.status : "asked" });
    $("ask-text").value = "";
    renderExperts();
  } catch (err) {
    flash(err.message);
  }
}

async function acceptQuestion(questionId) {
  try {
    const res = await chat.call("expert.accept", { questionId });
    state.experts.offers.delete(questionId);
    renderExperts();
    const conv = res.conversation;
    state.convs.set(conv.conversationId, { ...(state.convs.get(conv.conversationId) || {}), ...conv });
    await openConversation(conv.conversationId);
  } catch (err) {
    state.experts.offers.delete(questionId);
    renderExperts();
    flash(err.code === "conflict" ? "Another expert took it first." : err.message);
  }
}

async function declineQuestion(questionId) {
  state.experts.offers.delete(questionId);
  renderExperts();
  await chat.call("expert.decline", { questionId }).catch(() => {});
}

// --- actions -------------------------------------------------------------------------------------

async function sendText(body, threadRootSeq = null) {
  const conversationId = state.open;
  if (!body || !conversationId) return;
  const clientMessageId = randomId();
  const pending = { conversationId, clientMessageId, body, pending: true, threadRootSeq,
                    sender: { tenantId: state.me.tenant, userId: state.me.sub } };
  state.messages.push(pending);
  renderMessages();
  renderThread();
  try {
    const res = await chat.send(conversationId, body, clientMessageId, threadRootSeq);
    onMessage(res.message);
  } catch (err) {
    state.messages = state.messages.filter((m) => m !== pending);
    renderMessages();
    renderThread();
    flash(`Not sent: ${err.message}`);
  }
}

function sendFromComposer(e) {
  e.preventDefault();
  const input = $("composer-input");
  const body = input.value.trim();
  input.value = "";
  sendText(body);
}

function sendFromThread(e) {
  e.preventDefault();
  const input = $("thread-input");
  const body = input.value.trim();
  input.value = "";
  if (state.thread) sendText(body, state.thread.rootSeq);
}

async function react(m, emoji) {
  const k = reactKey(m.conversationId, m.seq);
  const set = state.mine.get(k) || new Set();
  const add = !set.has(emoji);
  try {
    const res = await chat.call(add ? "reaction.add" : "reaction.remove", { conversationId: m.conversationId, seq: m.seq, emoji });
    if (add) set.add(emoji); else set.delete(emoji);
    state.mine.set(k, set);
    state.messages = state.messages.map((x) => (x.seq === m.seq ? { ...x, reactions: res.reactions } : x));
    renderMessages();
    renderThread();
  } catch (err) { flash(`Reaction failed: ${err.message}`); }
}

async function removeMessage(m) {
  state.confirmDelete = null;
  try {
    const res = await chat.call("message.delete", { conversationId: m.conversationId, seq: m.seq });
    upsertMessage({ ...res.message, file: null, reactions: {} });
  } catch (err) { flash(`Not deleted: ${err.message}`); }
  renderAll();
}

async function sha256Hex(file) {
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (x) => x.toString(16).padStart(2, "0")).join("");
}

// Share a file: file.upload.request, then the presigned POST straight to the S3 endpoint
// (fields first, the file last), then wait for file.ready (or file.rejected) from the scanner.
async function uploadFile(file) {
  const conversationId = state.open;
  if (!file || !conversationId) return;
  let fileId = null;
  try {
    const res = await chat.call("file.upload.request", { conversationId, name: file.name, size: file.size,
                                                         contentType: file.type || "application/octet-stream",
                                                         sha256: await sha256Hex(file) });
    fileId = res.file.fileId;
    state.uploads.set(fileId, { conversationId, name: file.name, status: "uploading" });
    renderMessages();
    const form = new FormData();
    for (const [k, v] of Object.entries(res.upload.fields || {})) form.append(k, v);
    form.append("file", file, file.name);
    const resp = await fetch(res.upload.url, { method: res.upload.method || "POST", body: form });
    if (!resp.ok) throw new Error(`storage answered HTTP ${resp.status}`);
    const u = state.uploads.get(fileId);
    if (u && u.status === "uploading") state.uploads.set(fileId, { ...u, status: "scanning" });
  } catch (err) {
    if (fileId) state.uploads.delete(fileId);
    flash(`Upload of ${file.name} failed: ${err.message}`);
  }
  renderMessages();
}

async function download(f) {
  try {
    const res = await chat.call("file.download.request", { fileId: f.fileId });
    const a = el("a", { href: res.download.url, download: f.name, rel: "noopener" });
    document.body.append(a);
    a.click(); // the presigned GET answers Content-Disposition: attachment
    a.remove();
  } catch (err) { flash(`Download failed: ${err.message}`); }
}

let lastTyping = 0;
function onComposerInput() {
  if (!state.open || Date.now() - lastTyping < 3000) return;
  lastTyping = Date.now();
  chat.call("typing.start", { conversationId: state.open }).catch(() => {});
}

async function startConversation(e) {
  e.preventDefault();
  const emails = $("newconv-emails").value.split(/[\s,;]+/).filter(Boolean);
  if (!emails.length) return;
  try {
    const kind = emails.length === 1 ? "direct" : "group";
    const res = await chat.call("conversation.create", { kind, memberEmails: emails });
    $("newconv-emails").value = "";
    state.convs.set(res.conversation.conversationId, res.conversation);
    await loadMembers(res.conversation.conversationId);
    subscribePresence().catch(() => {});
    await openConversation(res.conversation.conversationId);
  } catch (err) {
    $("newconv-emails").setCustomValidity(err.message);
    $("newconv-emails").reportValidity();
    setTimeout(() => $("newconv-emails").setCustomValidity(""), 3000);
  }
}

// People search (users.search, docs/protocol.md "People search"): results as the user types (after 2
// characters, 200 ms after the last key); a click, or Enter on the first hit, opens the direct conversation
// (conversation.create answers the existing one when there is one).
let findTimer = null;
let findSeq = 0;

function onFindInput() {
  clearTimeout(findTimer);
  const q = $("people-search").value.trim();
  if (q.replace(/\s/g, "").length < 2) { closeFind(); return; }
  findTimer = setTimeout(() => findPeople(q), 200);
}

function closeFind() {
  findSeq++;
  $("find-results").replaceChildren();
  $("find-results").classList.add("hidden");
}

async function findPeople(q) {
  const seq = ++findSeq;
  let result;
  try {
    result = await chat.call("users.search", { q, limit: 10 });
  } catch (err) {
    if (seq !== findSeq) return;
    result = { users: [], error: err.code === "validation_failed" ? "Type a little more" : err.message };
  }
  if (seq !== findSeq) return; // a newer query is on its way
  const others = result.users.filter((p) => !isMe(p));
  for (const p of others) state.people.set(userKey(p), p);
  const box = $("find-results");
  box.replaceChildren(...(others.length ? others.map((p) => el("li", {
    role: "option", "data-user": userKey(p), title: p.email || "",
    onclick: () => openDirect(p),
  }, el("span", { class: "name" }, p.displayName, ...(p.external ? [el("span", { class: "badge external small" }, p.tenantId)] : [])),
     el("span", { class: "email" }, p.email || ""))) : [el("li", { class: "none" }, result.error || "Nobody found")]));
  box.classList.remove("hidden");
}

async function openDirect(p) {
  closeFind();
  $("people-search").value = "";
  try {
    const fields = p.external ? { memberEmails: [p.email] } : { members: [p.userId] };
    const res = await chat.call("conversation.create", { kind: "direct", ...fields });
    state.convs.set(res.conversation.conversationId, res.conversation);
    await loadMembers(res.conversation.conversationId);
    subscribePresence().catch(() => {});
    await openConversation(res.conversation.conversationId);
  } catch (err) {
    flash(err.message);
  }
}

async function setCustomStatus(e) {
  e.preventDefault();
  const minutes = Number($("custom-expiry").value);
  const fields = { text: $("custom-text").value.trim() || null, emoji: $("custom-emoji").value.trim() || null,
                   expiresAt: minutes ? Date.now() + minutes * 60000 : null };
  try {
    const res = await chat.call("presence.custom", fields);
    if (res && res.user) setPresence(res);
    $("custom-form").classList.add("hidden");
    renderRoster();
  } catch (err) { flash(`Status not set: ${err.message}`); }
}

async function clearCustomStatus() {
  $("custom-text").value = "";
  $("custom-emoji").value = "";
  try {
    const res = await chat.call("presence.custom", { text: null, emoji: null, expiresAt: null });
    if (res && res.user) setPresence(res);
    $("custom-form").classList.add("hidden");
    renderRoster();
  } catch (err) { flash(`Status not cleared: ${err.message}`); }
}

// --- sign-in (docs/protocol.md "Signing in from a browser") -----------------------------------
// The company's own identity provider, found from the email's domain: GET /auth/discovery, then the
// issuer's /.well-known/openid-configuration, then the authorization code flow with PKCE (S256).
// Tokens live in this tab only: in memory, and in sessionStorage so a reload stays signed in.
// ?signin=shortcut uses the dev IdP's POST /dev/idp/token instead (scripts and tests).
const SHORTCUT = params.get("signin") === "shortcut";
const PENDING_KEY = "chat.oidc.pending"; // the authorization request in flight: state, nonce, verifier
const SESSION_KEY = "chat.oidc.session"; // {email, accessToken}
const PENDING_MAX_MS = 10 * 60 * 1000;

function b64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomB64url(n) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return b64url(b);
}

async function getJson(url, init) {
  const res = await fetch(url, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = body.error;
    throw new Error(body.error_description || (e && (e.message || e)) || `HTTP ${res.status}`);
  }
  return body;
}

async function fetchToken(email) {
  return getJson("/dev/idp/token", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify({ email }) });
}

// email -> {issuer, clientId, authorizationEndpoint, tokenEndpoint}
async function discover(email) {
  const domain = email.split("@").pop();
  const found = await getJson(`/auth/discovery?domain=${encodeURIComponent(domain)}`);
  const conf = await getJson(`${found.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (conf.issuer !== found.issuer) throw new Error("the identity provider's discovery document names another issuer");
  if (!conf.authorization_endpoint || !conf.token_endpoint) throw new Error("the identity provider has no code flow");
  const methods = conf.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes("S256")) throw new Error("the identity provider lacks PKCE S256");
  return { issuer: found.issuer, clientId: found.clientId, authorizationEndpoint: conf.authorization_endpoint,
           tokenEndpoint: conf.token_endpoint };
}

// Leaves the page: to the IdP, which comes back to this page with ?code&state.
async function startSignIn(email) {
  const idp = await discover(email);
  const verifier = randomB64url(32); // 43 characters (RFC 7636)
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const pending = { ...idp, email, verifier, state: randomB64url(16), nonce: randomB64url(16),
                    redirectUri: `${location.origin}${location.pathname}`, at: Date.now() };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const url = new URL(idp.authorizationEndpoint);
  for (const [k, v] of Object.entries({
    response_type: "code", client_id: idp.clientId, redirect_uri: pending.redirectUri, scope: "openid email profile",
    state: pending.state, nonce: pending.nonce, code_challenge: challenge, code_challenge_method: "S256",
    login_hint: email,
  })) url.searchParams.set(k, v);
  location.assign(url.toString());
  return new Promise(() => {}); // the page is going away
}

// Back from the IdP: check state, trade the code (with the verifier) for tokens.
async function finishSignIn() {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
  sessionStorage.removeItem(PENDING_KEY);
  history.replaceState(null, "", location.pathname); // the code leaves the address bar and the history
  if (!pending || params.get("state") !== pending.state) throw new Error("the answer does not match a sign-in started here");
  if (params.get("error")) throw new Error(params.get("error_description") || params.get("error"));
  if (Date.now() - pending.at > PENDING_MAX_MS) throw new Error("the sign-in took too long");
  const tokens = await getJson(pending.tokenEndpoint, {
    method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: params.get("code") || "",
                                redirect_uri: pending.redirectUri, client_id: pending.clientId,
                                code_verifier: pending.verifier }),
  });
  if (tokens.id_token && claims(tokens.id_token).nonce !== pending.nonce) throw new Error("the ID token's nonce does not match");
  if (!tokens.access_token) throw new Error("the identity provider returned no access token");
  const email = String(claims(tokens.access_token).email || pending.email).toLowerCase();
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ email, accessToken: tokens.access_token }));
  return { email, accessToken: tokens.access_token };
}

function tokenFresh(token) {
  const exp = claims(token).exp;
  return typeof exp === "number" && exp * 1000 > Date.now() + 60000;
}

// Signed in with a token from the code flow: it serves every (re)connect while fresh; once it is
// not, the page goes through the IdP again (no refresh token in the page).
async function signInWithCode(email, accessToken) {
  let token = accessToken;
  const c = claims(token);
  await enterApp({ email, sub: c.sub, tenant: null, name: c.name || email }, async () => {
    if (tokenFresh(token)) return token;
    sessionStorage.removeItem(SESSION_KEY);
    return startSignIn(email);
  });
}

async function signIn(email) {
  const first = await fetchToken(email); // fails here (wrong email) before the app shows
  const c = claims(first.access_token);
  sessionStorage.setItem("chat.email", email);
  let token = first.access_token;
  await enterApp({ email, sub: first.sub || c.sub, tenant: first.tenant, name: c.name || email }, async () => {
    if (token) { const t = token; token = null; return t; }
    return (await fetchToken(email)).access_token; // a fresh token for every reconnect
  });
}

// The company id of the signed-in user: the token names only the issuer, so ask the directory
// (users.search finds the caller in its own company by its email).
async function learnTenant() {
  const res = await chat.call("users.search", { q: state.me.email, limit: 10 });
  const me = (res.users || []).find((u) => u.userId === state.me.sub && !u.external);
  if (!me) throw new Error("could not find myself in the directory");
  state.me.tenant = me.tenantId;
  document.body.dataset.tenant = me.tenantId;
}

async function enterApp(me, getToken) {
  state.me = me;
  const email = me.email;
  $("signin").classList.add("hidden");
  $("app").classList.remove("hidden");
  $("me-name").textContent = `${state.me.name} (${email})`;
  if (state.me.tenant) document.body.dataset.tenant = state.me.tenant;
  chat = new ChatClient(getToken);
  window.chat = chat; // for the console and the browser tests
  chat.addEventListener("event", (e) => onEvent(e.detail));
  chat.addEventListener("down", (e) => {
    $("conn").textContent = `offline, reconnecting in ${(e.detail.delay / 1000).toFixed(1)} s…`;
    $("conn").className = "down";
  });
  chat.addEventListener("open", async (e) => {
    try {
      if (!state.me.tenant) await learnTenant();
    } catch (err) {
      console.warn(err);
    }
    $("conn").textContent = e.detail.reconnect ? "connected (reconnected)" : "connected";
    $("conn").className = "";
    try {
      await loadInbox();
      await subscribePresence();
      if (e.detail.reconnect && state.open) {
        await loadMembers(state.open, true);
        renderAll();
        await markRead();
      }
      loadExpertTopics(); // its own errors handled; nothing else waits for it
    } catch (err) {
      console.warn(err);
    }
  });
  chat.addEventListener("synced", () => { document.body.dataset.synced = String(chat.stats.syncs); });
  await chat.connect();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  try {
    const email = $("email").value.trim().toLowerCase();
    await (SHORTCUT ? signIn(email) : startSignIn(email));
  } catch (err) {
    $("signin-error").textContent = `Could not sign in: ${err.message}`;
  }
});
$("composer").addEventListener("submit", sendFromComposer);
$("ask-form").addEventListener("submit", askExperts);
$("ask-text").addEventListener("input", onAskInput);
$("answers-browse").addEventListener("click", () => searchAnswers(null));
$("composer-input").addEventListener("input", onComposerInput);
$("thread-composer").addEventListener("submit", sendFromThread);
$("thread-close").addEventListener("click", closeThread);
$("attach").addEventListener("click", () => $("file-input").click());
$("file-input").addEventListener("change", async (e) => {
  for (const f of [...e.target.files]) await uploadFile(f);
  e.target.value = "";
});
$("newconv").addEventListener("submit", startConversation);
$("people-search").addEventListener("input", onFindInput);
$("people-search").addEventListener("keydown", (e) => {
  if (e.key === "Escape") { closeFind(); return; }
  if (e.key !== "Enter") return;
  e.preventDefault();
  const first = $("find-results").querySelector("li[data-user]");
  if (first) first.click();
});
$("my-status").addEventListener("change", (e) => chat.call("presence.set", { status: e.target.value }).catch((err) => flash(err.message)));
$("custom-toggle").addEventListener("click", () => $("custom-form").classList.toggle("hidden"));
$("custom-form").addEventListener("submit", setCustomStatus);
$("custom-clear").addEventListener("click", clearCustomStatus);
document.addEventListener("visibilitychange", () => { if (!document.hidden) markRead(); });
// Activity heartbeats (presence.md): at most one per 30 s while the user types or clicks.
let lastActive = 0;
for (const type of ["keydown", "pointerdown"]) {
  document.addEventListener(type, () => {
    if (!chat || !chat.connected || Date.now() - lastActive < 30000) return;
    lastActive = Date.now();
    chat.call("presence.heartbeat", { active: true }).catch(() => {});
  }, { passive: true });
}
setInterval(renderTyping, 1000);

// Sign-out: the socket closed for good (no reconnect), the tab's tokens and pending sign-in
// forgotten, and the page loaded afresh on the sign-in screen (nothing of the session stays in
// memory). The IdP's own session is not ended: with a real IdP the next sign-in may not prompt.
function signOut() {
  if (chat) chat.close();
  chat = null;
  window.chat = null;
  for (const key of [SESSION_KEY, PENDING_KEY, "chat.email"]) sessionStorage.removeItem(key);
  location.replace(`${location.pathname}${SHORTCUT ? "?signin=shortcut" : ""}`);
}
$("sign-out").addEventListener("click", signOut);

function signInFailed(err) {
  $("signin-error").textContent = `Could not sign in: ${err.message}`;
}

if (SHORTCUT) {
  const remembered = params.get("email") || sessionStorage.getItem("chat.email");
  if (remembered) {
    $("email").value = remembered;
    signIn(remembered).catch(signInFailed);
  }
} else if (params.has("state") && (params.has("code") || params.has("error"))) {
  finishSignIn().then(({ email, accessToken }) => signInWithCode(email, accessToken)).catch(signInFailed);
} else {
  const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  if (session && tokenFresh(session.accessToken)) {
    signInWithCode(session.email, session.accessToken).catch(signInFailed);
  } else if (params.get("email")) {
    $("email").value = params.get("email");
  }
}
