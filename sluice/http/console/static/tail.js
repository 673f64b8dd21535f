// The request log's live tail: new entries over Server-Sent Events, added to the top of the table.
// Text only (textContent), never HTML from the server; without JavaScript the page still reads.
(function () {
  "use strict";
  var state = document.getElementById("tail-state");
  var rows = document.getElementById("log-rows");
  if (!state || !rows || !window.EventSource || location.search.indexOf("before=") !== -1) return;
  var prefix = state.getAttribute("data-src").split("/requests/")[0];
  var source = new EventSource(state.getAttribute("data-src"));
  function money(pico) {
    var d = pico / 1e12;
    return d >= 0.01 || d === 0 ? "$" + d.toFixed(2) : "$" + d.toFixed(6);
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  source.onopen = function () { state.textContent = "Live: new requests appear at the top."; };
  source.onerror = function () { state.textContent = "Live tail reconnecting…"; };
  source.addEventListener("skipped", function () {
    state.textContent = "Live: more than 100 requests a second; showing the newest.";
  });
  source.addEventListener("request", function (event) {
    var r = JSON.parse(event.data);
    var empty = rows.querySelector("tr.empty");
    if (empty) empty.remove();
    var tr = document.createElement("tr");
    tr.className = "fresh";
    var first = cell(tr, "");
    var link = document.createElement("a");
    link.href = prefix + "/requests/" + encodeURIComponent(r.id);
    link.textContent = r.ts;
    first.appendChild(link);
    cell(tr, r.key);
    cell(tr, r.team);
    cell(tr, r.model);
    cell(tr, String(r.status), "num");
    cell(tr, r.decision, "decision-" + r.decision);
    cell(tr, money(r.cost_pico), "num");
    cell(tr, Math.round(r.latency_ms) + " ms", "num");
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > 200) rows.removeChild(rows.lastChild);
  });
})();
