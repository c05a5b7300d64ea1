// Makes docs/demo.png: the demo page in headless Chromium, with numbered
// todos and one written while offline (not numbered yet, pending).
//
//   node test/browser/screenshot.mjs [out.png]

import path from "node:path"

import { Demo, Profile, buildBinaries, cleanup, online, poll, repoRoot, synced, tempDir } from "./harness.mjs"

const out = process.argv[2] ?? path.join(repoRoot, "docs/demo.png")
let server
let P
try {
  const { demo } = await buildBinaries()
  server = await Demo.start({ bin: demo, data: tempDir("data") })
  P = await Profile.launch("screenshot")
  const page = await P.open(server.base + "/")
  await online(page)
  for (const title of ["Buy oat milk", "Call the plumber about the kitchen tap", "Water the plants"]) {
    await page.fill("#new-title", title)
    await page.click("#add button")
    await poll(page, `"${title}" to be numbered`, t => [...document.querySelectorAll("#list li")].some(li => li.querySelector(".title").textContent === t && !li.querySelector(".no.waiting")), title)
  }
  await page.click("#list li:first-child .toggle")
  await poll(page, "the first todo to be done", () => document.querySelectorAll("#list li.done").length === 1)
  await synced(page)
  await page.click("#toggle-offline")
  await poll(page, "the page to be offline", () => document.querySelector("#status").dataset.state === "offline")
  await page.fill("#new-title", "Book train tickets (written offline)")
  await page.click("#add button")
  await poll(page, "the pending todo", () => document.querySelector("#status-text").textContent.includes("1 pending"))
  await page.locator("#new-title").blur()
  const box = await page.locator("main").boundingBox()
  await page.screenshot({
    path: out,
    clip: { x: box.x - 24, y: box.y - 24, width: box.width + 48, height: box.height + 48 },
  })
  console.log(`wrote ${out}`)
} finally {
  await P?.close()
  await server?.stop()
  cleanup()
}
