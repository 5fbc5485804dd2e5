// The adjustment form: the account fields search the books as you type (the datalist is
// refilled from the server), and the totals per currency are computed by the server from
// the lines as typed (the same parser as the form's), so the browser never does sums of
// amounts itself. Without JavaScript the form still works: totals show after a submit.
(function () {
  "use strict";
  var form = document.getElementById("adjustment-form");
  if (!form) return;
  var list = document.getElementById("ledger-accounts");
  var totals = document.querySelector("#adjustment-totals tbody");
  var searchTimer = null;
  var totalsTimer = null;

  function text(tag, value, className) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (className) el.className = className;
    return el;
  }

  function search(query) {
    fetch(form.dataset.accountsUrl + "?q=" + encodeURIComponent(query), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { accounts: [] }; })
      .then(function (body) {
        list.replaceChildren.apply(list, body.accounts.map(function (a) {
          var option = text("option", a.label);
          option.value = a.code;
          return option;
        }));
      });
  }

  function refreshTotals() {
    fetch(form.dataset.totalsUrl, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) return;
        var rows = body.totals.map(function (t) {
          var tr = document.createElement("tr");
          tr.dataset.currency = t.currency;
          tr.append(text("td", t.currency), text("td", t.debits, "num"), text("td", t.credits, "num"),
            text("td", t.balanced ? "balanced" : t.difference, t.balanced ? "num" : "num unbalanced"));
          return tr;
        });
        if (!rows.length) {
          var empty = text("td", "No lines yet.");
          empty.colSpan = 4;
          var tr = document.createElement("tr");
          tr.className = "empty";
          tr.append(empty);
          rows = [tr];
        }
        totals.replaceChildren.apply(totals, rows);
        form.dataset.totalsReady = "true";
      });
  }

  form.addEventListener("input", function (event) {
    var target = event.target;
    if (target.classList.contains("account-code")) {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () { search(target.value); }, 200);
    }
    form.dataset.totalsReady = "false";
    clearTimeout(totalsTimer);
    totalsTimer = setTimeout(refreshTotals, 300);
  });
  form.addEventListener("change", function () {
    form.dataset.totalsReady = "false";
    clearTimeout(totalsTimer);
    totalsTimer = setTimeout(refreshTotals, 100);
  });
})();
