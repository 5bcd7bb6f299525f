// The chat page: ask, then follow the answer the server is generating (fetch + SSE parsing),
// stop it, and open cited chunks. HTML comes from the server, already sanitized.
import { csrf } from "./app.js";

const form = document.getElementById("ask");
const conversation = document.getElementById("conversation");
const stopButton = document.getElementById("stop");
const sendButton = document.getElementById("send");
const errorBox = document.getElementById("chat-error");
const dialog = document.getElementById("source");
let current = null; // { id, controller }

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function turnFor(id) {
  let turn = document.getElementById(`answer-${id}`);
  if (!turn) {
    turn = document.createElement("article");
    turn.className = "turn";
    turn.id = `answer-${id}`;
    turn.dataset.answer = id;
    conversation.append(turn);
  }
  return turn;
}

// Server-sent events from a fetch body: blocks end with a blank line; `event:` and `data:` fields.
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      yield { name, data: data.join("\n") };
    }
  }
}

async function follow(id) {
  const controller = new AbortController();
  current = { id, controller };
  stopButton.disabled = false;
  sendButton.disabled = true;
  const turn = turnFor(id);
  try {
    const response = await fetch(`/chat/answers/${encodeURIComponent(id)}/events`, {
      headers: { Accept: "text/event-stream" },
      signal: controller.signal,
    });
    if (!response.ok) {
      showError((await response.json()).message ?? `The answer could not be followed (${response.status}).`);
      return;
    }
    let updates = 0;
    for await (const event of sseEvents(response)) {
      if (event.name !== "answer") continue;
      const answer = JSON.parse(event.data);
      turn.innerHTML = answer.html; // rendered and sanitized by the server
      turn.dataset.status = answer.status;
      turn.dataset.updates = String(++updates);
    }
  } catch (error) {
    if (error.name !== "AbortError") showError("The connection to the answer was lost; reload to see it.");
  } finally {
    if (current?.id === id) current = null;
    stopButton.disabled = true;
    sendButton.disabled = false;
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const response = await fetch("/chat/answers", {
    method: "POST",
    body: new FormData(form),
    headers: { Accept: "application/json", "X-CSRF-Token": csrf },
  });
  const body = await response.json();
  if (!response.ok) {
    showError(body.message ?? `Asking failed (${response.status}).`);
    return;
  }
  form.question.value = "";
  // The answer's own address: a reload finds it again, running or done.
  history.replaceState(null, "", body.url);
  follow(body.id);
});

stopButton.addEventListener("click", async () => {
  if (!current) return;
  const { id } = current;
  stopButton.disabled = true;
  // The server stops generating; its stream then ends with the answer marked stopped.
  const response = await fetch(`/chat/answers/${encodeURIComponent(id)}/stop`, {
    method: "POST",
    headers: { "X-CSRF-Token": csrf },
  });
  if (!response.ok && response.status !== 409) showError(`Stopping failed (${response.status}).`);
});

conversation.addEventListener("click", async (event) => {
  const button = event.target.closest("button.cite");
  if (!button) return;
  const turn = button.closest("[data-answer]");
  const response = await fetch(
    `/chat/answers/${encodeURIComponent(turn.dataset.answer)}/citations/${encodeURIComponent(button.dataset.cite)}`,
  );
  document.getElementById("source-body").innerHTML = await response.text(); // server-rendered, escaped
  dialog.showModal();
});

// A reload while an answer runs: follow it again (the server kept generating).
for (const turn of conversation.querySelectorAll('[data-status="running"]')) follow(turn.dataset.answer);
