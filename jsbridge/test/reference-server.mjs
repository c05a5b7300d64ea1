#!/usr/bin/env node
// Reference sync server: the official automerge-repo-sync-server setup
// (automerge-repo 2.5.6, WebSocketServerAdapter over `ws`, NodeFSStorageAdapter,
// peerId "storage-server-<hostname>", sharePolicy () => false), served on a plain
// node:http server instead of express. It is the yardstick the amsync relay is
// tested and benchmarked against, so it deliberately keeps the official
// behaviour, including its weaknesses:
//   - no SIGTERM/SIGINT handler: the signal ends the process at once, and
//     saves still inside the repo's 100 ms save throttle are lost;
//   - every upgrade on any path goes to the one WebSocketServer;
//   - GET / answers 200 like the official server; GET /healthz answers 200
//     once the WebSocket adapter is connected (503 before), which is the
//     readiness probe the interop and benchmark harnesses share with the relay.
//
// Usage: node test/reference-server.mjs --port N --data DIR [--host 127.0.0.1]

import fs from "node:fs"
import http from "node:http"
import os from "node:os"
import { parseArgs } from "node:util"

import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env.PORT ?? "3030" },
    data: { type: "string", default: process.env.DATA_DIR ?? ".amrg" },
    host: { type: "string", default: "127.0.0.1" },
  },
})

const port = Number.parseInt(values.port, 10)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`reference-server: invalid --port ${values.port}`)
  process.exit(2)
}
const dir = values.data
fs.mkdirSync(dir, { recursive: true })

const wss = new WebSocketServer({ noServer: true })

const wsAdapter = new WebSocketServerAdapter(wss)
const repo = new Repo({
  network: [wsAdapter],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `storage-server-${os.hostname()}`,
  // A server does not share generously: it syncs only documents a peer asks
  // for by id.
  sharePolicy: async () => false,
})

const server = http.createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0]
  if (req.method === "GET" && path === "/") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" })
    res.end("👍 @automerge/automerge-repo-sync-server is running")
    return
  }
  if (req.method === "GET" && path === "/healthz") {
    // The Repo hands the WebSocketServer to its adapter only after the storage
    // id has been read (or created) asynchronously; a socket accepted before
    // that gets no "connection" handler and its JOIN is never answered. The
    // official server has the same window and no way to see it; here /healthz
    // stays 503 until the adapter is connected (it sets its peerId then).
    const ready = wsAdapter.peerId !== undefined
    res.writeHead(ready ? 200 : 503, { "content-type": "text/plain; charset=utf-8" })
    res.end(ready ? "ok\n" : "starting\n")
    return
  }
  res.writeHead(404, { "content-type": "text/plain; charset=utf-8" })
  res.end("not found\n")
})

server.on("upgrade", (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, ws => {
    wss.emit("connection", ws, request)
  })
})

server.listen(port, values.host, () => {
  const addr = server.address()
  console.log(
    `reference-server listening on ${addr.address}:${addr.port} data=${dir} peerId=${repo.peerId}`
  )
})
