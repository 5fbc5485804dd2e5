// Split rule form: add and remove recipient rows, and check as you type that the shares
// add up to exactly 100%. Shares are read as text into whole basis points (0.01%), never
// as floating-point numbers, so 33.33 + 33.33 + 33.34 is exactly 100. The server checks
// everything again; this only saves a round trip.
(function () {
  "use strict";
  var form = document.getElementById("split-form");
  if (!form) return;
  var rows = document.getElementById("recipient-rows");
  var template = document.getElementById("recipient-template");
  var total = document.getElementById("share-total");
  var save = document.getElementById("save-split");
  var prefix = "recipients";
  var totalForms = form.querySelector("[name='" + prefix + "-TOTAL_FORMS']");
  var SHARE = /^\s*(\d{1,3})(?:[.,](\d{1,2}))?\s*%?\s*$/;

  function shareBps(text) {
    var match = SHARE.exec(text);
    if (!match) return null;
    var bps = parseInt(match[1], 10) * 100 + parseInt((match[2] || "0").padEnd(2, "0"), 10);
    return bps > 0 && bps <= 10000 ? bps : null;
  }

  function formatBps(bps) {
    var part = bps % 100;
    return Math.floor(bps / 100) + (part ? "." + String(part).padStart(2, "0") : "") + "%";
  }

  function renumber() {
    var all = rows.querySelectorAll(".recipient-row");
    all.forEach(function (row, index) {
      row.querySelectorAll("input, label, p.error").forEach(function (el) {
        ["name", "id", "for"].forEach(function (attr) {
          var value = el.getAttribute(attr);
          if (value) el.setAttribute(attr, value.replace(/recipients-(\d+|__prefix__)-/, prefix + "-" + index + "-"));
        });
      });
    });
    totalForms.value = String(all.length);
    all.forEach(function (row) {
      row.querySelector(".remove-recipient").hidden = all.length < 2;
    });
  }

  function check() {
    var sum = 0;
    var valid = true;
    rows.querySelectorAll("input.share").forEach(function (input) {
      var bps = shareBps(input.value);
      if (bps === null) {
        valid = false;
        input.classList.add("invalid");
        input.setCustomValidity("a share from 0.01 to 100, at most two decimals");
      } else {
        sum += bps;
        input.classList.remove("invalid");
        input.setCustomValidity("");
      }
    });
    var ok = valid && sum === 10000;
    if (!valid) {
      total.textContent = "Every share must be a percentage from 0.01 to 100 (e.g. 33.33).";
    } else if (ok) {
      total.textContent = "Shares add up to 100% ✓";
    } else {
      total.textContent = "Shares add up to " + formatBps(sum) + ": they must add up to exactly 100%" +
        (sum < 10000 ? " (" + formatBps(10000 - sum) + " missing)." : " (" + formatBps(sum - 10000) + " too much).");
    }
    total.className = "share-total " + (ok ? "good" : "bad");
    save.disabled = !ok;
    return ok;
  }

  document.getElementById("add-recipient").addEventListener("click", function () {
    rows.appendChild(template.content.cloneNode(true));
    renumber();
    check();
    var inputs = rows.querySelectorAll(".recipient-row:last-child input");
    if (inputs.length) inputs[0].focus();
  });
  rows.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-recipient")) return;
    event.target.closest(".recipient-row").remove();
    renumber();
    check();
  });
  rows.addEventListener("input", check);
  form.addEventListener("submit", function (event) {
    if (!check()) event.preventDefault();
  });
  renumber();
  check();
})();
