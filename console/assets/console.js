// The live tail: follows the server-sent events of the page's filters and adds each
// event as a row. Every value goes in as text (textContent), never as markup.
"use strict";
(function () {
  const main = document.getElementById("tail");
  if (!main) return;
  const rows = document.getElementById("tail-rows");
  const status = document.getElementById("tail-status");
  const base = main.dataset.events;
  const console_path = base.slice(0, -"/tail/events".length);
  const KEEP = 500;
  const source = new EventSource(base + window.location.search);
  const cell = (tr, cls, text) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  };
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => {
    status.textContent = source.readyState === EventSource.CLOSED
      ? "closed: reload the page"
      : "reconnecting (events in between are not shown)";
  };
  source.addEventListener("failure", (m) => { status.textContent = "the store failed: " + m.data; });
  source.addEventListener("event", (m) => {
    const e = JSON.parse(m.data);
    const tr = document.createElement("tr");
    tr.className = "event";
    tr.dataset.eventId = e.id;
    const position = cell(tr, "position", "");
    const link = document.createElement("a");
    link.className = "event-link";
    link.href = console_path + "/events/" + encodeURIComponent(e.id);
    link.textContent = String(e.position);
    position.appendChild(link);
    cell(tr, "", e.recorded_at);
    cell(tr, "stream", e.aggregate_type + "/" + e.aggregate_id);
    cell(tr, "num", String(e.version));
    cell(tr, "type", e.event_type);
    cell(tr, "", e.topic || "");
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > KEEP) rows.removeChild(rows.lastChild);
  });
})();
