// The live views: every element with a `data-live` URL is re-rendered by the server from that
// fragment every second. While the server does not answer, the header's badge says so, and the
// views pick up again when it answers.
"use strict";

const EVERY_MS = 1000;
const shown = new WeakMap(); // the fragment each element shows, to leave an unchanged one alone

async function refresh(element) {
  const response = await fetch(element.dataset.live, { cache: "no-store" });
  if (response.status === 401) {
    location.assign("/inspector/login?next=" + encodeURIComponent(location.pathname));
    return false;
  }
  if (!response.ok) {
    return false;
  }
  const html = await response.text();
  if (shown.get(element) !== html) {
    element.innerHTML = html;
    shown.set(element, html);
  }
  return true;
}

async function tick() {
  const views = [...document.querySelectorAll("[data-live]")];
  const answered = await Promise.all(views.map((view) => refresh(view).catch(() => false)));
  document.getElementById("live-status").classList.toggle("lost", answered.includes(false));
  setTimeout(tick, EVERY_MS);
}

setTimeout(tick, EVERY_MS);
