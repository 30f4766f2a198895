// One WebSocket to the gateway that serves this page, kept open.
//
// Requests carry an id and resolve with the reply that echoes it (or reject
// with the error frame). When the socket drops, the connection reconnects
// with exponential backoff; sends still waiting for their ack are sent again
// with the same id (the gateway de-duplicates them), other requests fail
// with `unavailable` and the app re-joins its rooms from the last seq it saw.

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;

export class ServerError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/** Close code of a connection whose token expired without a refresh. */
export const TOKEN_EXPIRED = 4001;

export class Connection {
  /**
   * @param {() => string} url the WebSocket URL (asked again at each attempt)
   * @param {{onFrame: Function, onState: Function, onOpen: Function}} hooks
   */
  constructor(url, hooks) {
    this.url = url;
    this.hooks = hooks;
    this.ws = null;
    this.state = "offline";
    this.stopped = true;
    this.opened = false; // has any attempt ever opened
    this.nextId = 1;
    this.pending = new Map(); // id -> {frame, resolve, reject, timer, resend}
    this.delay = BACKOFF_FIRST_MS;
    this.retryTimer = null;
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    for (const [id, p] of this.pending) this._settle(id, p, new ServerError("unavailable", "signed out"));
    if (this.ws) this.ws.close(1000, "bye");
    this._setState("offline");
  }

  /** Send a frame that has no reply (typing), if connected. */
  send(frame) {
    if (this.state === "online") this.ws.send(JSON.stringify(frame));
  }

  /** Send a request frame; resolves with its reply frame. */
  request(frame, { resend = false } = {}) {
    const id = frame.id ?? `w${Date.now().toString(36)}-${this.nextId++}`;
    const full = { ...frame, id };
    return new Promise((resolve, reject) => {
      const entry = { frame: full, resolve, reject, resend, timer: null };
      entry.timer = setTimeout(
        () => this._settle(id, entry, new ServerError("unavailable", "no answer from the server")),
        REQUEST_TIMEOUT_MS,
      );
      this.pending.set(id, entry);
      if (this.state === "online") this.ws.send(JSON.stringify(full));
      else if (!resend) this._settle(id, entry, new ServerError("unavailable", "not connected"));
    });
  }

  _settle(id, entry, error, reply) {
    clearTimeout(entry.timer);
    this.pending.delete(id);
    if (error) entry.reject(error);
    else entry.resolve(reply);
  }

  _setState(state, detail = "") {
    this.state = state;
    this.hooks.onState(state, detail);
  }

  _connect() {
    if (this.stopped) return;
    this._setState(this.opened ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.opened = true;
      this.delay = BACKOFF_FIRST_MS;
      this._setState("online");
      for (const entry of this.pending.values()) {
        if (entry.resend) ws.send(JSON.stringify(entry.frame));
      }
      this.hooks.onOpen();
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      const entry = frame.id !== undefined ? this.pending.get(frame.id) : undefined;
      if (entry && frame.type === "error") {
        this._settle(frame.id, entry, new ServerError(frame.code, frame.message));
      } else if (entry) {
        this._settle(frame.id, entry, null, frame);
      }
      this.hooks.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [id, entry] of this.pending) {
        if (!entry.resend) this._settle(id, entry, new ServerError("unavailable", "connection lost"));
      }
      if (event.code === TOKEN_EXPIRED) {
        // the same token would be refused again: the page asks for a new one
        this.stopped = true;
        this._setState("expired");
        return;
      }
      if (!this.stopped) this._retry(event.code);
    };
  }

  _retry(code) {
    // jitter spreads the clients of a restarted gateway over the window
    const wait = this.delay * (0.8 + 0.4 * Math.random());
    this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
    const seconds = Math.max(1, Math.round(wait / 1000));
    this._setState(this.opened ? "reconnecting" : "connecting", `retrying in ${seconds}s`, code);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._connect(), wait);
  }
}
