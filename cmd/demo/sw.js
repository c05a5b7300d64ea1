// Service worker of the demo page: the page, the bridge and the wasm come
// from the network when it answers (so a new server version is picked up
// at once) and from this cache when it does not, so that the page opens
// while the server is unreachable. Records themselves live in IndexedDB.
const CACHE = "amsync-demo-shell-v1"
const SHELL = ["/", "/jsbridge.js", "/automerge.wasm"]

self.addEventListener("install", event => {
  event.waitUntil(caches.open(CACHE).then(c => c.addAll(SHELL)).then(() => self.skipWaiting()))
})

self.addEventListener("activate", event => {
  event.waitUntil(
    caches.keys()
      .then(keys => Promise.all(keys.filter(k => k !== CACHE).map(k => caches.delete(k))))
      .then(() => self.clients.claim()),
  )
})

self.addEventListener("fetch", event => {
  const req = event.request
  const url = new URL(req.url)
  if (req.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return
  event.respondWith(
    fetch(req)
      .then(resp => {
        if (resp.ok) {
          const copy = resp.clone()
          event.waitUntil(caches.open(CACHE).then(c => c.put(url.pathname, copy)))
        }
        return resp
      })
      .catch(() => caches.match(url.pathname).then(hit => hit ?? Response.error())),
  )
})
