// The dashboard's only script: keeps every progress bar up to date by polling the progress API once a
// second (a GET with the session cookie) while its campaign sends, every 3 s while it may start soon.
"use strict";
(function () {
  function update(box) {
    var url = box.getAttribute("data-progress-url");
    fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) {
        if (!p) { return; }
        var done = p.total - (p.by_status.queued || 0);
        var bar = box.querySelector("progress");
        bar.max = p.total || 1;
        bar.value = done;
        box.querySelector(".percent").textContent = p.percent.toFixed(1) + "%";
        box.querySelector(".sent").textContent = p.by_status.sent;
        box.querySelector(".total").textContent = p.total;
        box.querySelector(".status").textContent = p.status;
        var rate = document.querySelector(".rates .rate");
        if (rate) { rate.textContent = p.rate_per_second.toFixed(1); }
        var bounce = document.querySelector(".rates .bounce-rate");
        if (bounce) { bounce.textContent = (100 * p.bounce_rate).toFixed(2) + "%"; }
        var complaint = document.querySelector(".rates .complaint-rate");
        if (complaint) { complaint.textContent = (100 * p.complaint_rate).toFixed(3) + "%"; }
        if (document.querySelector("p.actions") && p.status !== box.getAttribute("data-status")) {
          window.location.reload();  // a campaign page: its status, buttons and checklist change too
          return;
        }
        box.setAttribute("data-status", p.status);
        if (p.status === "sending") {
          setTimeout(function () { update(box); }, 1000);
        } else if (document.querySelector("p.actions") && (p.status === "draft" || p.status === "scheduled")) {
          setTimeout(function () { update(box); }, 3000);
        }
      })
      .catch(function () { setTimeout(function () { update(box); }, 5000); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-progress-url]");
    for (var i = 0; i < boxes.length; i++) {
      var status = boxes[i].querySelector(".status").textContent;
      boxes[i].setAttribute("data-status", status);
      // the list follows the campaigns that send; a campaign's own page also one that may start soon
      var own = document.querySelector("p.actions") !== null;
      if (status === "sending" || (own && (status === "scheduled" || status === "draft"))) { update(boxes[i]); }
    }
  });
})();
