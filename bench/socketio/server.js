// The Socket.IO 4 baseline of the comparison benchmark: the same rooms,
// joins, sends, per-room seq and acks as bench/bare_server.py, over
// Socket.IO's WebSocket transport.  node bench/socketio/server.js PORT
"use strict";
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const io = new Server(port, { transports: ["websocket"], serveClient: false });
const seqs = new Map();

function next(room) {
  const seq = (seqs.get(room) || 0) + 1;
  seqs.set(room, seq);
  return seq;
}

io.on("connection", (socket) => {
  const user = socket.handshake.query.user || "";
  socket.on("join", (frame) => {
    const room = frame.room;
    socket.join(room);
    const seq = next(room);
    socket.emit("joined", { type: "joined", room, last_seq: seq - 1 });
    io.to(room).emit("presence", { type: "presence", room, seq, user, event: "join" });
  });
  socket.on("send", (frame) => {
    const room = frame.room;
    const seq = next(room);
    socket.emit("ack", { type: "ack", id: frame.id, room, seq });
    io.to(room).emit("message", {
      type: "message", room, seq, from: user, text: frame.text, ts: new Date().toISOString(),
    });
  });
  socket.on("create", (frame) => {
    socket.emit("created", { type: "created", room: frame.room, owner: user });
  });
});
console.log("ready");
