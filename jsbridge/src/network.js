// The WebSocket client adapter of automerge-repo, with our own reconnect
// policy. The stock adapter (2.5.6) retries every 5 s, fixed: after a
// server restart every client comes back in the same second, and a client
// that lost its network waits up to 5 s after it returns. This subclass
// keeps the stock protocol code (join, peer, CBOR framing) and replaces
// only the retry loop: exponential backoff with full jitter, an immediate
// retry when the browser reports that the network is back, a deadline on
// the handshake, and a switch to stay offline on purpose.

import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

// The stock adapter arms a timer of retryInterval in connect() and in its
// close handler. Handing it the longest delay a timer takes (2^31-1 ms,
// about 24.8 days; larger values fire at once) keeps those timers from
// ever firing while the page lives; this class does the retrying.
const NEVER = 2 ** 31 - 1

/** Defaults of the reconnect policy, in milliseconds. */
export const RECONNECT_DEFAULTS = Object.freeze({
  minDelay: 250,
  maxDelay: 10_000,
  handshakeTimeout: 10_000,
})

/**
 * backoffDelay is the wait before retry number attempt (0 for the first
 * retry): a uniformly random delay between minDelay and
 * min(maxDelay, minDelay * 2^attempt) ("full jitter" above a floor).
 */
export function backoffDelay(attempt, { minDelay, maxDelay }, random = Math.random) {
  const cap = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30))
  return Math.round(minDelay + random() * (cap - minDelay))
}

export class ReconnectingWebSocketAdapter extends WebSocketClientAdapter {
  #opts
  #random
  #attempt = 0
  #timer
  #handshakeTimer
  #paused = false
  #closed = false
  #online = false
  #onBrowserOnline = () => this.retryNow()
  // A paused adapter counts as ready (the Repo waits for its adapters to be
  // ready before it gives up on a document that is not stored locally).
  #pausedReady
  #markPausedReady

  /**
   * @param {string} url ws:// or wss:// URL of the relay
   * @param {{minDelay?: number, maxDelay?: number, handshakeTimeout?: number, random?: () => number}} opts
   */
  constructor(url, opts = {}) {
    super(url, NEVER)
    const { random, ...rest } = opts
    this.#opts = { ...RECONNECT_DEFAULTS, ...rest }
    if (!(this.#opts.minDelay > 0 && this.#opts.maxDelay >= this.#opts.minDelay)) {
      throw new RangeError("jsbridge: reconnect delays: want 0 < minDelay <= maxDelay")
    }
    this.#random = random ?? Math.random
    this.#pausedReady = new Promise(resolve => (this.#markPausedReady = resolve))
    if (typeof addEventListener === "function") addEventListener("online", this.#onBrowserOnline)
  }

  /** online is true while the relay has answered the handshake on a live socket. */
  get online() {
    return this.#online
  }

  /** paused is true after pause(): the adapter stays offline until resume(). */
  get paused() {
    return this.#paused
  }

  isReady() {
    return this.#paused || super.isReady()
  }

  whenReady() {
    return Promise.race([super.whenReady(), this.#pausedReady])
  }

  connect(peerId, peerMetadata) {
    if (this.#closed) return
    this.peerId = peerId
    this.peerMetadata = peerMetadata
    if (this.#paused) return
    this.#dial()
  }

  #dial() {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const old = this.socket
    super.connect(this.peerId, this.peerMetadata)
    // The stock connect drops the old socket's listeners but leaves it
    // open; close it so that the relay does not keep a stale session.
    if (old && old !== this.socket && old.readyState <= 1) old.close()
    clearTimeout(this.#handshakeTimer)
    const socket = this.socket
    this.#handshakeTimer = setTimeout(() => {
      // No peer message in time: give up on this socket (its close event
      // schedules the next attempt).
      if (this.socket === socket && !this.#online) socket.close()
    }, this.#opts.handshakeTimeout)
  }

  #schedule() {
    if (this.#paused || this.#closed || this.#timer !== undefined) return
    const delay = backoffDelay(this.#attempt++, this.#opts, this.#random)
    this.emit("reconnect-scheduled", { delay, attempt: this.#attempt })
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      if (!this.#paused && !this.#closed) this.#dial()
    }, delay)
  }

  /** retryNow dials at once (unless paused) and restarts the backoff. */
  retryNow() {
    if (this.#paused || this.#closed || this.#online) return
    this.#attempt = 0
    this.#dial()
  }

  // Replaces the stock close handler (a class field, so this one, defined
  // after the base constructor ran, wins).
  onClose = () => {
    clearTimeout(this.#handshakeTimer)
    const peer = this.remotePeerId
    this.remotePeerId = undefined
    if (peer) this.emit("peer-disconnected", { peerId: peer })
    this.#setOffline()
    this.#schedule()
  }

  #setOffline() {
    if (this.#online) {
      this.#online = false
      this.emit("status", { online: false })
    }
  }

  peerCandidate(remotePeerId, peerMetadata) {
    clearTimeout(this.#handshakeTimer)
    this.#attempt = 0
    super.peerCandidate(remotePeerId, peerMetadata)
    if (!this.#online) {
      this.#online = true
      this.emit("status", { online: true })
    }
  }

  // 2.5.6 throws when a message is sent on a socket that is not open (a
  // closing socket whose close event has not fired yet); later versions
  // drop it, as we do: the sync protocol resends after the reconnect.
  send(message) {
    if (!this.socket || this.socket.readyState !== 1) return
    super.send(message)
  }

  /** pause closes the connection and stays offline until resume(). */
  pause() {
    if (this.#paused) return
    this.#paused = true
    this.#markPausedReady()
    this.#stop()
  }

  /** resume reconnects after pause(). */
  resume() {
    if (!this.#paused || this.#closed) return
    this.#paused = false
    this.#attempt = 0
    if (this.peerId) this.#dial()
  }

  #stop() {
    clearTimeout(this.#timer)
    this.#timer = undefined
    clearTimeout(this.#handshakeTimer)
    if (this.socket && this.peerId) {
      // The stock disconnect: drops the listeners, closes the socket,
      // clears its retry timer, and tells the Repo the relay is gone.
      super.disconnect()
      this.socket = undefined
      this.remotePeerId = undefined
    }
    this.#setOffline()
  }

  disconnect() {
    this.#closed = true
    if (typeof removeEventListener === "function") removeEventListener("online", this.#onBrowserOnline)
    this.#stop()
  }
}
