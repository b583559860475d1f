// forewarn console: refreshes what the server renders. Every page works without this file.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf"]')?.content ?? "";

// A template's preview follows its form: each change or keystroke (after a pause) asks the
// server for the preview again and puts its HTML in place.
function livePreview(form) {
  const target = document.getElementById("preview");
  let timer = null;
  let asked = 0;
  const refresh = async () => {
    const ticket = ++asked;
    const body = new URLSearchParams(new FormData(form));
    body.set("template", form.dataset.template);
    body.delete("csrf");
    const response = await fetch(form.dataset.preview, {
      method: "POST",
      headers: { "x-csrf-token": csrf(), "content-type": "application/x-www-form-urlencoded" },
      body,
      credentials: "same-origin",
    });
    if (ticket !== asked) return; // a later keystroke's answer is on its way
    if (response.ok) {
      target.innerHTML = await response.text();
      target.dataset.version = String(ticket);
    }
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  };
  form.addEventListener("input", (event) => {
    if (event.target.name !== "file") soon();
  });
  form.addEventListener("change", (event) => {
    // Another file is loaded into the editor: the page itself changes.
    if (event.target.name === "file") {
      const url = new URL(form.action, location.href);
      for (const name of ["example", "customer", "locale", "offer", "file"]) {
        const field = form.elements.namedItem(name);
        if (field) url.searchParams.set(name, field.value);
      }
      location.assign(url);
    }
  });
}

// Reads the JSON at `url` after `first` ms, hands it to `show`, and again after as many ms as
// `show` returns, until it returns nothing; a failed read is tried again after 3 s.
function poll(url, first, show) {
  const tick = async () => {
    let view;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      view = await response.json();
    } catch {
      setTimeout(tick, 3000);
      return;
    }
    const next = show(view);
    if (next) setTimeout(tick, next);
  };
  setTimeout(tick, first);
}

// An incident's progress, read every second until everything is done.
function liveProgress(section) {
  const field = (name) => section.querySelector(`[data-field="${name}"]`);
  poll(section.dataset.progress, 0, (view) => {
    for (const [name, value] of Object.entries(view.counts)) {
      const cell = section.querySelector(`[data-count="${name}"]`);
      if (cell) cell.textContent = String(value);
    }
    for (const name of ["title", "severity", "status", "phase"]) {
      const node = field(name);
      if (node && node.textContent !== String(view[name])) node.textContent = String(view[name]);
    }
    const bar = field("bar");
    bar.max = view.bar_max;
    bar.value = view.bar_value;
    bar.textContent = String(view.bar_value);
    const list = field("fanouts");
    list.replaceChildren(...view.fanouts.map((line) => {
      const item = document.createElement("li");
      item.textContent = line;
      return item;
    }));
    section.dataset.done = String(view.done);
    return view.done ? 5000 : 1000;
  });
}

// A simulation's progress, read every second; its page is loaded again, with the report, when
// the replay is done.
function liveSimulation(section) {
  const field = (name) => section.querySelector(`[data-field="${name}"]`);
  poll(section.dataset.progress, 1000, (view) => {
    if (view.done) {
      location.reload();
      return null;
    }
    const bar = field("bar");
    bar.value = view.percent;
    bar.textContent = `${view.percent} %`;
    field("percent").textContent = String(view.percent);
    field("events").textContent = String(view.events);
    return 1000;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("preview-form");
  if (form) livePreview(form);
  const progress = document.getElementById("progress");
  if (progress) liveProgress(progress);
  const simulation = document.getElementById("simulation-progress");
  if (simulation) liveSimulation(simulation);
});
