// @amsync/jsbridge: records in IndexedDB, synced through an amsync relay
// (or any automerge-repo sync server), kept in step across the tabs of a
// profile. See docs/jsbridge.md.
//
//   import { openStore } from "/jsbridge.js"
//   const store = await openStore({ url: "ws://host:port", name: "my-app" })
//   const todos = store.collection("todos")
//   const id = await todos.put({ title: "milk", done: false })

export { openStore, Store, Collection } from "./store.js"
export { RecordsError, indexId, derivedId } from "./records.js"
export { backoffDelay, RECONNECT_DEFAULTS } from "./network.js"
// Helpers for update callbacks: updateText(doc, ["title"], "new title")
// edits a text field as a diff, so that concurrent edits of one field
// merge instead of one replacing the other; splice likewise by position.
export { updateText, splice, Counter, ImmutableString } from "@automerge/automerge/slim"
