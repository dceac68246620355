// Reference web client for the local stack: the WebSocket protocol of docs/protocol.md, no dependencies.
// Sign in through the dev identity provider, inbox with unread counts, conversations, live messages,
// presence, and a socket that reconnects by itself with jittered backoff and syncs what it missed.

const params = new URLSearchParams(location.search);
const BACKOFF_INITIAL_MS = Number(params.get("backoff")) || 500; // ?backoff=ms (tests slow it down)
const BACKOFF_MAX_MS = 15000;
const REQUEST_TIMEOUT_MS = 15000;
const HEARTBEAT_MS = 60000;

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
    this.stats = { connects: 0, reconnects: 0, replayed: 0, syncs: 0 };
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
  async send(conversationId, body, clientMessageId = randomId()) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.call("message.send", { conversationId, clientMessageId, body });
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

  // Record a message as delivered; false if it already was.
  delivered(m) {
    let s = this.seen.get(m.conversationId);
    if (!s) this.seen.set(m.conversationId, (s = new Set()));
    if (s.has(m.seq)) return false;
    s.add(m.seq);
    if (m.seq > (this.highSeq.get(m.conversationId) || 0)) this.highSeq.set(m.conversationId, m.seq);
    return true;
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

const state = {
  me: null, // {email, sub, name}
  convs: new Map(), // conversationId -> conversation view (with unread)
  members: new Map(), // conversationId -> [{tenantId, userId}]
  presence: new Map(), // "tenant#user" -> {status, custom}
  open: null, // open conversationId
  messages: [], // of the open conversation, oldest first
  typing: new Map(), // userKey -> expiresAt (open conversation)
};
let chat = null;

const userKey = (u) => `${u.tenantId}#${u.userId}`;
const isMe = (u) => state.me && u && u.userId === state.me.sub;
const label = (u) => (isMe(u) ? "you" : `${u.userId.slice(0, 8)}${u.tenantId !== state.me.tenant ? `@${u.tenantId}` : ""}`);
const statusOf = (u) => (state.presence.get(userKey(u)) || {}).status || "offline";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node; // user content only ever goes in as text nodes
}

function title(conv) {
  if (conv.name) return conv.name;
  const others = (state.members.get(conv.conversationId) || []).filter((u) => !isMe(u));
  if (others.length) return others.map(label).join(", ");
  return conv.kind === "direct" ? "Direct message" : `Group (${conv.memberCount})`;
}

function renderInbox() {
  const list = $("inbox");
  const convs = [...state.convs.values()].sort((a, b) => (b.lastActivityAt || 0) - (a.lastActivityAt || 0));
  list.replaceChildren(...convs.map((c) => {
    const others = (state.members.get(c.conversationId) || []).filter((u) => !isMe(u));
    const dot = c.kind === "direct" && others.length === 1 ? [el("span", { class: `dot ${statusOf(others[0])}` }), " "] : [];
    const li = el("li", { class: c.conversationId === state.open ? "open" : "", "data-conversation": c.conversationId },
      el("span", { class: "title" }, ...dot, title(c), ...(c.external ? [el("span", { class: "badge" }, "external")] : [])),
      c.unread ? el("span", { class: "unread", "data-unread": String(c.unread) }, String(c.unread)) : el("span"),
      el("span", { class: "preview" }, c.lastMessage ? c.lastMessage.text || "" : "no messages yet"));
    li.onclick = () => openConversation(c.conversationId);
    return li;
  }));
}

function renderMessages() {
  const box = $("messages");
  if (!state.open) return;
  if (!state.messages.length) {
    box.replaceChildren(el("div", { class: "empty" }, "No messages yet. Say hello."));
    return;
  }
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(...state.messages.map((m) => {
    const when = new Date(m.createdAt || Date.now()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const body = m.deleted ? "message deleted" : m.kind === "file" && m.file ? `📎 ${m.file.name} (${m.file.size} bytes)` : m.body;
    return el("div", { class: `msg${isMe(m.sender) ? " mine" : ""}${m.pending ? " pending" : ""}${m.deleted ? " deleted" : ""}`,
                       "data-seq": String(m.seq || "") },
      el("div", { class: "meta" }, `${label(m.sender)} · ${m.pending ? "sending…" : when}${m.editedAt ? " · edited" : ""}`),
      el("div", { class: "body" }, body));
  }));
  if (atBottom || state.messages.length < 30) box.scrollTop = box.scrollHeight;
}

function renderHeader() {
  const conv = state.convs.get(state.open);
  if (!conv) return;
  $("conv-name").replaceChildren(title(conv), ...(conv.external ? [el("span", { class: "badge" }, "external")] : []));
  $("conv-members").replaceChildren(...(state.members.get(conv.conversationId) || []).map((u) =>
    el("span", { "data-user": u.userId }, el("span", { class: `dot ${statusOf(u)}` }), ` ${label(u)}`)));
}

function renderRoster() {
  const items = [...state.presence.entries()].filter(([k]) => !state.me || k !== `${state.me.tenant}#${state.me.sub}`);
  $("roster").replaceChildren(...items.map(([key, p]) => {
    const [tenantId, userId] = key.split("#");
    const custom = p.custom && (p.custom.text || p.custom.emoji) ? ` · ${p.custom.emoji || ""} ${p.custom.text || ""}` : "";
    return el("li", { "data-user": userId, "data-status": p.status },
      el("span", { class: `dot ${p.status}` }), label({ tenantId, userId }),
      el("span", { class: "status-text" }, `${p.status.replace(/_/g, " ")}${custom}`));
  }));
  const mine = state.me && state.presence.get(`${state.me.tenant}#${state.me.sub}`);
  $("my-dot").className = `dot ${mine ? mine.status : "available"}`;
}

function renderTyping() {
  const now = Date.now();
  const who = [...state.typing.entries()].filter(([, exp]) => exp > now).map(([k]) => {
    const [tenantId, userId] = k.split("#");
    return label({ tenantId, userId });
  });
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

async function loadMembers(conversationId) {
  if (state.members.has(conversationId)) return;
  try {
    const res = await chat.call("member.list", { conversationId });
    state.members.set(conversationId, res.members.map((m) => ({ tenantId: m.tenantId, userId: m.userId })));
  } catch { /* not visible any more */ }
}

async function loadInbox() {
  const res = await chat.call("conversation.list", { limit: 100 });
  state.convs = new Map(res.conversations.map((c) => [c.conversationId, c]));
  for (const c of res.conversations) chat.track(c.conversationId, c.lastSeq);
  renderInbox();
  await Promise.all(res.conversations.map((c) => loadMembers(c.conversationId)));
  renderInbox();
}

async function subscribePresence() {
  const res = await chat.call("presence.subscribe", {});
  for (const p of res.roster || []) state.presence.set(userKey(p.user), { status: p.status, custom: p.custom });
  renderRoster();
  renderInbox();
  renderHeader();
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
  state.open = conversationId;
  state.typing.clear();
  renderTyping();
  $("composer").classList.remove("hidden");
  await loadMembers(conversationId);
  renderHeader();
  renderInbox();
  const res = await chat.call("history", { conversationId, limit: 50 });
  if (state.open !== conversationId) return;
  state.messages = res.messages.slice().reverse();
  for (const m of state.messages) chat.delivered(m);
  renderMessages();
  await markRead();
  $("composer-input").focus();
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
  if (m.conversationId === state.open) {
    const i = state.messages.findIndex((x) => (x.pending && x.clientMessageId === m.clientMessageId) || x.seq === m.seq);
    if (i >= 0) state.messages[i] = m; else state.messages.push(m);
    state.messages.sort((a, b) => (a.seq || Infinity) - (b.seq || Infinity));
    state.typing.delete(userKey(m.sender));
    renderMessages();
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
      if (f.message.conversationId === state.open) {
        state.messages = state.messages.map((m) => (m.seq === f.message.seq ? f.message : m));
        renderMessages();
      }
      break;
    case "message.deleted":
      if (f.conversationId === state.open) {
        state.messages = state.messages.map((m) => (m.seq === f.seq ? { ...m, deleted: true, body: null } : m));
        renderMessages();
      }
      break;
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
    case "presence.changed": {
      // posts may arrive out of order: an older publication never replaces a newer one
      const prev = state.presence.get(userKey(f.user));
      if (prev && prev.updatedAt && prev.updatedAt > f.updatedAt) break;
      state.presence.set(userKey(f.user), { status: f.status, custom: f.custom, updatedAt: f.updatedAt });
      renderRoster();
      renderInbox();
      renderHeader();
      break;
    }
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

async function sendFromComposer(e) {
  e.preventDefault();
  const input = $("composer-input");
  const body = input.value.trim();
  const conversationId = state.open;
  if (!body || !conversationId) return;
  input.value = "";
  const clientMessageId = randomId();
  const pending = { conversationId, clientMessageId, body, pending: true, sender: { tenantId: state.me.tenant, userId: state.me.sub } };
  state.messages.push(pending);
  renderMessages();
  try {
    const res = await chat.send(conversationId, body, clientMessageId);
    onMessage(res.message);
  } catch (err) {
    state.messages = state.messages.filter((m) => m !== pending);
    renderMessages();
    $("typing").textContent = `not sent: ${err.message}`;
  }
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

async function fetchToken(email) {
  const res = await fetch("/dev/idp/token", { method: "POST", headers: { "Content-Type": "application/json" },
                                              body: JSON.stringify({ email }) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error_description || body.error || `HTTP ${res.status}`);
  return body;
}

async function signIn(email) {
  const first = await fetchToken(email); // fails here (wrong email) before the app shows
  const c = claims(first.access_token);
  state.me = { email, sub: first.sub || c.sub, tenant: first.tenant, name: c.name || email };
  sessionStorage.setItem("chat.email", email);
  $("signin").classList.add("hidden");
  $("app").classList.remove("hidden");
  $("me-name").textContent = `${state.me.name} (${email})`;
  let token = first.access_token;
  chat = new ChatClient(async () => {
    if (token) { const t = token; token = null; return t; }
    return (await fetchToken(email)).access_token; // a fresh token for every reconnect
  });
  window.chat = chat; // for the console and the browser tests
  chat.addEventListener("event", (e) => onEvent(e.detail));
  chat.addEventListener("down", (e) => {
    $("conn").textContent = `offline, reconnecting in ${(e.detail.delay / 1000).toFixed(1)} s…`;
    $("conn").className = "down";
  });
  chat.addEventListener("open", async (e) => {
    $("conn").textContent = e.detail.reconnect ? "connected (reconnected)" : "connected";
    $("conn").className = "";
    try {
      await loadInbox();
      await subscribePresence();
      if (e.detail.reconnect && state.open) await markRead();
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
    await signIn($("email").value.trim().toLowerCase());
  } catch (err) {
    $("signin-error").textContent = `Could not sign in: ${err.message}`;
  }
});
$("composer").addEventListener("submit", sendFromComposer);
$("composer-input").addEventListener("input", onComposerInput);
$("newconv").addEventListener("submit", startConversation);
$("my-status").addEventListener("change", (e) => chat.call("presence.set", { status: e.target.value }).catch(() => {}));
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

const remembered = params.get("email") || sessionStorage.getItem("chat.email");
if (remembered) {
  $("email").value = remembered;
  signIn(remembered).catch((err) => { $("signin-error").textContent = `Could not sign in: ${err.message}`; });
}
