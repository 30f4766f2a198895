// Parley in the browser: plain ES modules, no build step, nothing fetched
// from anywhere but the gateway that served this page.
//
// Every piece of user text reaches the page through textContent, never as
// HTML. Rooms resume after a reconnect or a reload from the last seq seen, so
// nothing is missed and nothing shows twice.

import { Connection, ServerError } from "./connection.js";

const USER_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const ROOM_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const JOIN_BACKLOG = 50;
const HISTORY_PAGE = 50;
const STORE_KEY = "parley.v1";

const ERROR_TEXT = {
  bad_request: "The server did not understand that request.",
  unauthorized: "You are not signed in (or your token is no longer valid).",
  forbidden: "You are not allowed to do that.",
  not_found: "No such room.",
  room_exists: "A room with that name already exists.",
  not_member: "You are not a member of that room: join it first.",
  rate_limited: "You are sending too fast; slow down and try again.",
  too_large: "That message is too long (at most 4000 characters).",
  unavailable: "The room is briefly unavailable; try again in a moment.",
  internal: "The server hit an internal error.",
};

const $ = (id) => document.getElementById(id);

function describe(err) {
  if (err instanceof ServerError) {
    const known = ERROR_TEXT[err.code];
    return known ? `${known}${err.message && err.message !== err.code ? ` (${err.message})` : ""}` : err.message;
  }
  return String(err?.message ?? err);
}

// ---------------------------------------------------------------- storage

function loadSaved() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY)) ?? {};
  } catch {
    return {};
  }
}

function save() {
  const rooms = {};
  for (const [name, room] of state.open) rooms[name] = room.lastSeq;
  const data = { user: state.user, token: state.token, rooms, current: state.current };
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(data));
  } catch {
    // private mode or full: the app works without remembering
  }
}

// ------------------------------------------------------------------ state

const state = {
  user: "",
  token: "",
  auth: false,
  conn: null,
  listing: [], // the last `rooms` reply
  open: new Map(), // room -> RoomState
  current: null,
  joins: new Map(), // join request id -> room: a late error re-joins
  nextJoin: 1,
};

class RoomState {
  constructor(name, lastSeq = null) {
    this.name = name;
    this.lastSeq = lastSeq; // the last seq delivered here (null: none yet)
    this.oldest = null; // the oldest seq shown
    this.entries = []; // message and presence entries, in seq order
    this.members = new Map(); // user -> online
    this.unread = 0;
    this.owner = "";
    this.atStart = false; // history reaches the room's first entry
    this.loadingOlder = false;
  }
}

// ------------------------------------------------------------- connecting

async function readConfig() {
  try {
    const response = await fetch("/config.json", { cache: "no-store" });
    if (response.ok) return await response.json();
  } catch {
    // an older gateway: assume auth is off
  }
  return { auth: false };
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = state.auth
    ? `token=${encodeURIComponent(state.token)}`
    : `user=${encodeURIComponent(state.user)}`;
  return `${scheme}://${location.host}/ws?${query}`;
}

function tokenClaims(token) {
  // display and timing only: the gateway checks the token
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)) ?? {};
  } catch {
    return {};
  }
}

function userFromToken(token) {
  return tokenClaims(token).sub ?? "";
}

let renewTimer = null;
/** Ask for a fresh token a while before this one expires (a fifth of its
 * remaining life, at least a minute); the gateway closes with 4001 at expiry. */
function scheduleRenewal() {
  clearTimeout(renewTimer);
  $("renew-form").hidden = true;
  const exp = tokenClaims(state.token).exp;
  if (!state.auth || typeof exp !== "number") return;
  const remaining = exp * 1000 - Date.now();
  const ahead = Math.max(60_000, remaining / 5);
  renewTimer = setTimeout(showRenewal, Math.max(0, remaining - ahead));
}

function showRenewal() {
  const exp = tokenClaims(state.token).exp;
  const seconds = Math.max(0, Math.round(exp - Date.now() / 1000));
  $("renew-help").textContent =
    `Your sign-in expires in ${seconds} s. Paste a fresh token to stay connected.`;
  $("renew-error").textContent = "";
  $("renew-form").hidden = false;
}

async function renew(token) {
  if (userFromToken(token) !== state.user) {
    $("renew-error").textContent = `That token is not for ${state.user}.`;
    return;
  }
  try {
    await state.conn.request({ type: "auth", token });
  } catch (error) {
    $("renew-error").textContent = `The server refused that token (${error.message}).`;
    return;
  }
  state.token = token;
  save();
  $("renew-token").value = "";
  scheduleRenewal();
}

function expired() {
  clearTimeout(renewTimer);
  $("renew-form").hidden = true;
  $("app-view").hidden = true;
  $("signin-view").hidden = false;
  $("signin-error").textContent = "Your sign-in expired: paste a fresh token.";
  $("signin-token").value = "";
  $("signin-token").focus();
}

function signIn(user, token) {
  state.user = user;
  state.token = token;
  save();
  $("who").textContent = `signed in as ${user}`;
  $("who").hidden = false;
  $("signout").hidden = false;
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  state.conn?.stop();
  state.conn = new Connection(socketUrl, {
    onFrame,
    onState: showStatus,
    onOpen: resume,
  });
  state.conn.start();
  scheduleRenewal();
}

function signOut() {
  state.conn?.stop();
  state.conn = null;
  state.open.clear();
  state.current = null;
  state.user = "";
  state.token = "";
  save();
  location.reload();
}

function showStatus(conn, detail) {
  if (conn === "expired") expired();
  const el = $("status");
  el.dataset.state = conn;
  el.textContent = detail ? `${conn} (${detail})` : conn;
  if (conn !== "online" && !state.conn?.opened) {
    $("signin-error").textContent = "";
  }
}

/** After every (re)connect: list rooms, re-join every open room from its last seq. */
async function resume() {
  refreshRooms();
  for (const room of [...state.open.values()]) joinRoom(room.name, { since: room.lastSeq });
}

// ------------------------------------------------------------------ rooms

async function refreshRooms() {
  try {
    const reply = await state.conn.request({ type: "rooms" });
    state.listing = reply.rooms;
    for (const info of state.listing) {
      const room = state.open.get(info.room);
      if (room) room.owner = info.owner;
    }
    renderRoomLists();
    if (state.current) renderRoomHead(state.open.get(state.current));
  } catch (err) {
    flash(describe(err));
  }
}

async function createRoom(name) {
  try {
    const created = await state.conn.request({ type: "create", room: name });
    await joinRoom(name, {});
    const room = state.open.get(name);
    if (room) room.owner = created.owner;
    selectRoom(name);
    refreshRooms();
  } catch (err) {
    flash(describe(err));
  }
}

async function joinRoom(name, { since = null }) {
  let room = state.open.get(name);
  if (!room) {
    room = new RoomState(name, since);
    state.open.set(name, room);
  }
  const frame = { type: "join", room: name, id: `join-${state.nextJoin++}` };
  if (room.lastSeq !== null) frame.since = room.lastSeq;
  state.joins.set(frame.id, name);
  try {
    const reply = await state.conn.request(frame);
    if (room.lastSeq === null) {
      // the gateway sends the last JOIN_BACKLOG entries first
      room.lastSeq = Math.max(0, reply.last_seq - JOIN_BACKLOG);
    }
    if (room.oldest === null) room.oldest = room.lastSeq + 1;
    if (room.oldest <= 1) room.atStart = true;
    room.members = new Map(reply.members.map((u) => [u, room.members.get(u) ?? false]));
    const info = state.listing.find((r) => r.room === name);
    if (info) room.owner = info.owner;
    loadMembers(room);
    save();
    renderRoomLists();
    if (state.current === name) renderRoom();
  } catch (err) {
    if (err.code === "not_found" || err.code === "not_member") {
      state.open.delete(name);
      if (state.current === name) selectRoom(null);
      save();
      renderRoomLists();
    }
    if (err.code !== "unavailable" || state.conn?.state === "online") flash(describe(err));
    state.joins.delete(frame.id);
    retryJoin(name);
  }
}

/** A join that failed for a passing reason (an election, a slow node) is tried again. */
function retryJoin(name) {
  setTimeout(
    () => {
      if (state.open.has(name) && state.conn?.state === "online") joinRoom(name, {});
    },
    1000 + Math.random() * 1000,
  );
}

async function loadMembers(room) {
  try {
    const reply = await state.conn.request({ type: "members", room: room.name });
    room.members = new Map(reply.members.map((m) => [m.user, m.online]));
    if (state.current === room.name) renderMembers(room);
  } catch {
    // the list from `joined` stays
  }
}

async function leaveRoom(name) {
  try {
    await state.conn.request({ type: "leave", room: name });
    state.open.delete(name);
    if (state.current === name) selectRoom(null);
    save();
    renderRoomLists();
  } catch (err) {
    flash(describe(err));
  }
}

function confirmDelete(name) {
  const dialog = $("confirm");
  $("confirm-text").textContent = `Delete the room “${name}” for everyone? Its history is gone for good.`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    try {
      await state.conn.request({ type: "delete", room: name });
      roomDeleted(name, true);
    } catch (err) {
      flash(describe(err));
    }
  };
  dialog.showModal();
  $("confirm-ok").focus();
}

function roomDeleted(name, byMe) {
  if (!state.open.has(name)) return;
  state.open.delete(name);
  if (state.current === name) selectRoom(null);
  save();
  refreshRooms();
  if (!byMe) flash(`The room “${name}” was deleted by its owner.`, true);
}

async function loadOlder(room) {
  if (room.atStart || room.loadingOlder || room.oldest === null) return;
  room.loadingOlder = true;
  $("log-top").textContent = "loading older messages…";
  try {
    const reply = await state.conn.request({
      type: "history",
      room: room.name,
      before: room.oldest,
      limit: HISTORY_PAGE,
    });
    const page = reply.messages.filter((e) => e.seq < room.oldest);
    // (edits and reactions come folded into their messages)
    const older = page.filter((e) => e.target === undefined);
    if (page.length) room.oldest = page[0].seq;
    if (older.length) room.entries = [...older, ...room.entries];
    if (page.length < HISTORY_PAGE || room.oldest <= 1) room.atStart = true;
    if (state.current === room.name) {
      const log = $("log");
      const fromBottom = log.scrollHeight - log.scrollTop;
      renderEntries(room);
      log.scrollTop = log.scrollHeight - fromBottom; // keep the reader's place
    }
  } catch (err) {
    flash(describe(err));
  } finally {
    room.loadingOlder = false;
    renderLogTop(room);
  }
}

// ----------------------------------------------------------------- frames

function onFrame(frame) {
  switch (frame.type) {
    case "message":
    case "presence":
    case "edit":
    case "unsent":
    case "reaction":
      if (frame.seq === undefined) onlineChange(frame);
      else onEntry(frame);
      break;
    case "typing":
      showTyping(frame.room, frame.user);
      break;
    case "mention":
      if (frame.room !== state.current || document.visibilityState !== "visible") {
        flash(`${frame.from} mentioned you in ${roomLabel(frame.room)}`, true);
      }
      break;
    case "invitation":
      flash(`${frame.from} invited you to # ${frame.room}: pick it in the list to join`, true);
      refreshRooms();
      break;
    case "deleted":
      roomDeleted(frame.room, false);
      break;
    case "error":
      // the gateway answered `joined` but could not attach the room's feed
      // (its backlog read failed): this socket gets none of its entries
      if (state.joins.has(frame.id)) {
        const name = state.joins.get(frame.id);
        state.joins.delete(frame.id);
        retryJoin(name);
      }
      break;
    default:
      break; // replies are handled by their requests
  }
}

function onEntry(entry) {
  const room = state.open.get(entry.room);
  if (!room || room.lastSeq === null) return;
  if (entry.seq <= room.lastSeq) return; // already shown (a resume overlaps)
  if (entry.seq > room.lastSeq + 1) {
    // a hole: ask again from what we have; the overlap is dropped above
    joinRoom(room.name, {});
    return;
  }
  room.lastSeq = entry.seq;
  if (entry.target !== undefined) {
    // about an earlier message: shown on it (one not loaded here needs nothing)
    const target = room.entries.find((e) => e.seq === entry.target && e.type === "message");
    if (target) {
      annotate(target, entry);
      if (state.current === room.name) redrawEntry(target);
    }
    saveSoon();
    return;
  }
  room.entries.push(entry);
  if (entry.type === "message") clearTyping(room.name, entry.from);
  if (entry.type === "presence") {
    if (entry.event === "join") room.members.set(entry.user, room.members.get(entry.user) ?? false);
    if (entry.event === "leave") room.members.delete(entry.user);
  }
  const shown = state.current === room.name;
  if (shown) {
    appendEntry(room, entry);
    if (entry.type === "presence") renderMembers(room);
  }
  const seen = shown && document.visibilityState === "visible";
  if (!seen && entry.type === "message" && entry.from !== state.user) {
    room.unread += 1;
    renderRoomLists();
  }
  saveSoon();
}

/** Apply an edit, unsend or reaction to the message it is about. */
function annotate(message, about) {
  if (message.unsent) return; // an unsent message stays unsent
  if (about.type === "edit") {
    message.text = about.text;
    message.edited = true;
  } else if (about.type === "unsent") {
    message.unsent = true;
    delete message.text;
    delete message.reactions;
  } else if (about.type === "reaction") {
    const reactions = (message.reactions ??= {});
    const users = (reactions[about.emoji] ??= []);
    const at = users.indexOf(about.from);
    if (about.on && at < 0) users.push(about.from);
    if (!about.on && at >= 0) users.splice(at, 1);
    if (!users.length) delete reactions[about.emoji];
  }
}

function redrawEntry(entry) {
  const old = $("entries").querySelector(`li[data-seq="${entry.seq}"]`);
  if (old) old.replaceWith(entryItem(entry));
}

const typingUntil = new Map(); // room -> Map(user -> ms)
function showTyping(roomName, user) {
  if (user === state.user) return;
  const users = typingUntil.get(roomName) ?? new Map();
  typingUntil.set(roomName, users);
  users.set(user, Date.now() + 4000);
  renderTyping();
  setTimeout(renderTyping, 4100);
}

function clearTyping(roomName, user) {
  typingUntil.get(roomName)?.delete(user);
  renderTyping();
}

function renderTyping() {
  const users = [...(typingUntil.get(state.current) ?? new Map())]
    .filter(([, until]) => until > Date.now())
    .map(([user]) => user)
    .sort();
  $("typing").textContent =
    users.length === 0 ? "" : `${users.join(", ")} ${users.length === 1 ? "is" : "are"} typing…`;
}

function roomLabel(name) {
  const room = state.open.get(name);
  const info = state.listing.find((r) => r.room === name);
  const other = room?.dmWith || (info?.dm ? info.with : "");
  return other ? `@ ${other}` : `# ${name}`;
}

function onlineChange(frame) {
  const room = state.open.get(frame.room);
  if (!room) return;
  room.members.set(frame.user, frame.event === "online");
  if (state.current === room.name) renderMembers(room);
}

let saveTimer = null;
function saveSoon() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(save, 300);
}

// --------------------------------------------------------------- sending

async function send(text) {
  const room = state.current;
  if (!text.trim()) return;
  $("room-error").textContent = "";
  try {
    if (editing) {
      const { seq } = editing;
      stopEditing();
      await state.conn.request({ type: "edit", room, seq, text }, { resend: true });
    } else if (text.startsWith("/") && !text.startsWith("//")) {
      await command(text.slice(1).trim());
    } else if (room) {
      const body = text.startsWith("//") ? text.slice(1) : text;
      await state.conn.request({ type: "send", room, text: body }, { resend: true });
    }
  } catch (err) {
    $("room-error").textContent = describe(err);
  }
}

/** The newest message of mine still standing in the open room (what ↑ edits). */
function lastOwn() {
  const room = state.open.get(state.current);
  return room?.entries.findLast((e) => e.type === "message" && e.from === state.user && !e.unsent);
}

function lastMessage() {
  const room = state.open.get(state.current);
  return room?.entries.findLast((e) => e.type === "message" && !e.unsent);
}

let editing = null; // {seq} of the message the composer edits
function startEditing() {
  const mine = lastOwn();
  if (!mine) return false;
  editing = { seq: mine.seq };
  const box = $("send-text");
  box.value = mine.text;
  box.placeholder = `Editing your message — Enter saves, Esc cancels`;
  return true;
}

function stopEditing() {
  editing = null;
  $("send-text").placeholder = "Message";
}

/** /dm USER, /invite USER, /edit TEXT, /unsend, /react EMOJI, /unreact EMOJI. */
async function command(line) {
  const [name, ...rest] = line.split(/\s+/);
  const arg = rest.join(" ");
  const room = state.current;
  if (name === "dm" && USER_RE.test(arg)) {
    const reply = await state.conn.request({ type: "dm", user: arg });
    await openJoined(reply, arg);
  } else if (name === "invite" && room && USER_RE.test(arg)) {
    await state.conn.request({ type: "invite", room, user: arg });
    flash(`invited ${arg}`);
  } else if (name === "edit" && room && lastOwn() && arg) {
    await state.conn.request({ type: "edit", room, seq: lastOwn().seq, text: arg });
  } else if (name === "unsend" && room && lastOwn()) {
    await state.conn.request({ type: "unsend", room, seq: lastOwn().seq });
  } else if ((name === "react" || name === "unreact") && room && lastMessage() && arg) {
    await state.conn.request({ type: name, room, seq: lastMessage().seq, emoji: arg });
  } else {
    flash(`unknown or incomplete command /${line}: try /dm USER, /invite USER, /react 👍`);
  }
}

/** A `joined` reply of `dm`: follow the room like any joined one. */
async function openJoined(reply, other) {
  let room = state.open.get(reply.room);
  if (!room) {
    room = new RoomState(reply.room, Math.max(0, reply.last_seq - JOIN_BACKLOG));
    state.open.set(reply.room, room);
  }
  room.dmWith = other;
  await joinRoom(reply.room, {});
  selectRoom(reply.room);
}

let typingSent = 0;
function typed() {
  const room = state.current;
  const text = $("send-text").value;
  if (!room || !text || text.startsWith("/") || editing) return;
  if (Date.now() - typingSent < 3000) return;
  typingSent = Date.now();
  state.conn.send({ type: "typing", room });
}

// ---------------------------------------------------------------- render

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderRoomLists() {
  const openList = $("open-rooms");
  openList.replaceChildren();
  for (const room of state.open.values()) {
    const li = el("li");
    const link = el("button", "room-link");
    link.type = "button";
    link.dataset.room = room.name;
    link.append(el("span", "", roomLabel(room.name)));
    if (state.current === room.name) link.setAttribute("aria-current", "true");
    link.onclick = () => selectRoom(room.name);
    li.append(link);
    if (room.unread) {
      const badge = el("span", "badge", String(room.unread));
      badge.setAttribute("aria-label", `${room.unread} unread`);
      li.append(badge);
    }
    openList.append(li);
  }
  if (!state.open.size) openList.append(el("li", "muted", "none yet"));

  const allList = $("all-rooms");
  allList.replaceChildren();
  for (const info of state.listing) {
    const li = el("li");
    const link = el("button", "room-link");
    link.type = "button";
    link.dataset.room = info.room;
    link.append(el("span", "", roomLabel(info.room)));
    const members = info.members === 1 ? "1 member" : `${info.members} members`;
    const active = info.last_ts ? ` · active ${since(info.last_ts)}` : "";
    link.append(el("span", "meta", `${info.owner} · ${members}${active}`));
    link.title = state.open.has(info.room) ? "Open" : "Join";
    link.onclick = async () => {
      if (!state.open.has(info.room)) await joinRoom(info.room, {});
      if (state.open.has(info.room)) selectRoom(info.room);
    };
    li.append(link);
    allList.append(li);
  }
  if (!state.listing.length) allList.append(el("li", "muted", "no rooms yet"));
}

function since(ts) {
  const seconds = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(ts).toLocaleDateString();
}

function selectRoom(name) {
  state.current = name;
  if (editing) stopEditing();
  renderTyping();
  save();
  const room = name ? state.open.get(name) : null;
  $("app-view").classList.toggle("in-room", Boolean(room));
  $("empty").hidden = Boolean(room);
  $("room-view").hidden = !room;
  if (room) {
    room.unread = 0;
    renderRoom();
    $("send-text").focus();
  }
  renderRoomLists();
}

function renderRoom() {
  const room = state.open.get(state.current);
  if (!room) return;
  renderRoomHead(room);
  $("room-error").textContent = "";
  renderEntries(room);
  renderMembers(room);
  const log = $("log");
  log.scrollTop = log.scrollHeight;
}

function renderRoomHead(room) {
  if (!room) return;
  $("room-title").textContent = roomLabel(room.name);
  $("room-owner").textContent = room.owner ? `owner ${room.owner}` : "";
  $("delete").hidden = room.owner !== state.user;
}

function dayOf(ts) {
  return ts ? new Date(ts).toDateString() : "";
}

function renderLogTop(room) {
  $("log-top").textContent = room.atStart
    ? "This is the start of the room."
    : "Scroll up for older messages.";
}

function renderEntries(room) {
  const list = $("entries");
  list.replaceChildren();
  let day = "";
  for (const entry of room.entries) {
    const entryDay = dayOf(entry.ts);
    if (entryDay && entryDay !== day) {
      list.append(daySeparator(entry.ts));
      day = entryDay;
    }
    list.append(entryItem(entry));
  }
  list.dataset.day = day;
  renderLogTop(room);
}

function appendEntry(room, entry) {
  const list = $("entries");
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const entryDay = dayOf(entry.ts);
  if (entryDay && entryDay !== list.dataset.day) {
    list.append(daySeparator(entry.ts));
    list.dataset.day = entryDay;
  }
  list.append(entryItem(entry));
  if (atBottom || entry.from === state.user) log.scrollTop = log.scrollHeight;
}

function daySeparator(ts) {
  const li = el("li", "day");
  li.setAttribute("role", "separator");
  li.textContent = new Date(ts).toLocaleDateString(undefined, {
    weekday: "long",
    year: "numeric",
    month: "long",
    day: "numeric",
  });
  return li;
}

function entryItem(entry) {
  if (entry.type === "presence") {
    const verb = entry.event === "join" ? "joined" : entry.event === "leave" ? "left" : entry.event;
    const li = el("li", "system", `${entry.user} ${verb} the room`);
    li.dataset.seq = entry.seq;
    return li;
  }
  const li = el("li", entry.from === state.user ? "msg own" : "msg");
  li.dataset.seq = entry.seq;
  const head = el("div", "head");
  head.append(el("span", "from", entry.from));
  const time = el("time");
  if (entry.ts) {
    time.dateTime = entry.ts;
    time.textContent = new Date(entry.ts).toLocaleTimeString(undefined, {
      hour: "2-digit",
      minute: "2-digit",
    });
  }
  head.append(time);
  if (entry.unsent) {
    li.classList.add("unsent");
    li.append(head, el("div", "text", "message unsent"));
    return li;
  }
  const text = el("div", "text", entry.text);
  if (entry.edited) text.append(el("span", "edited", " (edited)"));
  li.append(head, text);
  const reactions = Object.entries(entry.reactions ?? {});
  if (reactions.length) {
    const row = el("div", "reactions");
    for (const [emoji, users] of reactions) {
      const chip = el("span", "", `${emoji} ${users.length}`);
      chip.title = users.join(", ");
      row.append(chip);
    }
    li.append(row);
  }
  return li;
}

function renderMembers(room) {
  const list = $("member-list");
  list.replaceChildren();
  const users = [...room.members.entries()].sort(
    ([a, x], [b, y]) => Number(y) - Number(x) || a.localeCompare(b),
  );
  for (const [user, online] of users) {
    const li = el("li", online ? "online" : "", user);
    li.setAttribute("aria-label", `${user}, ${online ? "online" : "offline"}`);
    list.append(li);
  }
}

let flashTimer = null;
/** Tell the user something: under the room when one is open, else in the notice bar. */
function flash(text, sticky = false) {
  const notice = $("notice");
  if (state.current) {
    $("room-error").textContent = text;
  } else {
    notice.textContent = text;
    notice.hidden = false;
  }
  clearTimeout(flashTimer);
  flashTimer = setTimeout(
    () => {
      $("room-error").textContent = "";
      notice.hidden = true;
    },
    sticky ? 30_000 : 8000,
  );
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("renew-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("renew-token").value.trim();
    if (token) renew(token);
  });
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("signin-user").value.trim();
    const token = $("signin-token").value.trim();
    if (state.auth) {
      const sub = userFromToken(token);
      if (!token) {
        $("signin-error").textContent = "Paste your token to sign in.";
        return;
      }
      signIn(sub || "?", token);
    } else {
      if (!USER_RE.test(user)) {
        $("signin-error").textContent =
          "A user name is 1–32 lowercase letters, digits, - or _, starting with a letter or digit.";
        return;
      }
      signIn(user, "");
    }
  });
  $("signout").onclick = signOut;
  $("refresh-rooms").onclick = refreshRooms;
  $("create-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("create-room");
    const name = input.value.trim();
    if (!ROOM_RE.test(name)) {
      flash("A room name is 1–64 lowercase letters, digits, - or _.");
      return;
    }
    input.value = "";
    createRoom(name);
  });
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = $("send-text");
    const text = box.value;
    box.value = "";
    box.style.height = "";
    send(text);
  });
  $("send-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("send-form").requestSubmit();
    } else if (event.key === "ArrowUp" && !event.target.value && startEditing()) {
      event.preventDefault();
    } else if (event.key === "Escape" && editing) {
      event.target.value = "";
      stopEditing();
    }
  });
  $("send-text").addEventListener("input", (event) => {
    typed();
    const box = event.target;
    box.style.height = "";
    box.style.height = `${Math.min(box.scrollHeight, 160)}px`;
  });
  $("leave").onclick = () => state.current && leaveRoom(state.current);
  $("delete").onclick = () => state.current && confirmDelete(state.current);
  $("back").onclick = () => selectRoom(null);
  $("toggle-members").onclick = () => {
    const shown = $("members").classList.toggle("shown");
    $("toggle-members").setAttribute("aria-expanded", String(shown));
  };
  $("log").addEventListener("scroll", () => {
    const room = state.open.get(state.current);
    if (room && $("log").scrollTop < 60) loadOlder(room);
  });
  document.addEventListener("visibilitychange", () => {
    const room = state.open.get(state.current);
    if (document.visibilityState === "visible" && room && room.unread) {
      room.unread = 0;
      renderRoomLists();
    }
  });
}

async function main() {
  wire();
  const config = await readConfig();
  state.auth = Boolean(config.auth);
  $("user-row").hidden = state.auth;
  $("signin-user").required = !state.auth;
  $("token-row").hidden = !state.auth;
  if (state.auth) $("signin-help").textContent = "Paste the token you were given.";
  const saved = loadSaved();
  const usable = state.auth ? Boolean(saved.token) : USER_RE.test(saved.user ?? "");
  if (usable) {
    // resume each room a little before where it was, so the view refills
    for (const [name, seq] of Object.entries(saved.rooms ?? {})) {
      const since = seq === null ? null : Math.max(0, seq - JOIN_BACKLOG);
      state.open.set(name, new RoomState(name, since));
    }
    signIn(saved.user, saved.token ?? "");
    if (saved.current && state.open.has(saved.current)) selectRoom(saved.current);
    else selectRoom(null);
  } else {
    $("signin-view").hidden = false;
    if (saved.user) $("signin-user").value = saved.user;
    (state.auth ? $("signin-token") : $("signin-user")).focus();
  }
}

main();
