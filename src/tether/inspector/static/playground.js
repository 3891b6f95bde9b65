// The playground: a turn over a real WebSocket to this server (the inspector's own route to the
// Responses WebSocket API), sent as any client sends it, continued from the previous response
// unless told otherwise. The socket opens with the first turn and stays open.
"use strict";

const form = document.getElementById("playground-form");
const statusLine = document.getElementById("playground-status");
const output = document.getElementById("playground-output");
const links = document.getElementById("playground-links");
let socket = null;
let last = null; // the latest response that completed: the next turn continues it

function say(text) {
  statusLine.textContent = text;
}

function link(href, text) {
  const anchor = document.createElement("a");
  anchor.href = href;
  anchor.textContent = text;
  return anchor;
}

function ended(response, stored) {
  say(`${response.id}: ${response.status}`);
  if (response.status === "completed") {
    last = response.id;
  }
  links.replaceChildren(link(`/inspector/turns/${response.id}`, "its turn in this connection's timeline"));
  if (stored) {
    links.append(" · ", link(`/inspector/responses/${response.id}`, "its chain and items"));
  }
}

function received(event, stored) {
  switch (event.type) {
    case "response.created":
      output.textContent = "";
      links.replaceChildren();
      say(`${event.response.id}: running`);
      break;
    case "response.output_text.delta":
      output.textContent += event.delta;
      break;
    case "response.completed":
    case "response.incomplete":
    case "response.failed":
      ended(event.response, stored);
      break;
    case "error":
      say(`error: ${event.error.message}`);
      break;
  }
}

function connected() {
  if (socket !== null && socket.readyState === WebSocket.OPEN) {
    return Promise.resolve(socket);
  }
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const opening = new WebSocket(`${scheme}://${location.host}/inspector/playground`);
    opening.onopen = () => {
      socket = opening;
      resolve(opening);
    };
    opening.onerror = () => reject(new Error("the WebSocket could not open"));
    opening.onclose = (close) => {
      socket = null;
      say(`WebSocket closed (${close.code}${close.reason ? ": " + close.reason : ""}); the next turn opens another`);
    };
  });
}

form.addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const fields = new FormData(form);
  const store = fields.get("store") === "on";
  const create = { type: "response.create", model: fields.get("model"), input: fields.get("input"), store };
  if (fields.get("chain") === "on" && last !== null) {
    create.previous_response_id = last;
  }
  try {
    const open = await connected();
    open.onmessage = (message) => received(JSON.parse(message.data), store);
    open.send(JSON.stringify(create));
    say("sent");
  } catch (failure) {
    say(failure.message);
  }
});
