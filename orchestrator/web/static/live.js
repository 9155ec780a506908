// bluegreen dashboard: refresh <main> in place from the same page, every few seconds.
// Same origin only (the CSP forbids anything else); the server renders and escapes the HTML,
// and DOMParser never runs scripts. Without JavaScript a <noscript> meta refresh does this.
(function () {
  "use strict";
  var every = 2000;
  function swap() {
    fetch(window.location.pathname, { headers: { "Accept": "text/html" },
                                      cache: "no-store", credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, "text/html");
        var main = next.querySelector("main");
        var here = document.querySelector("main");
        if (main && here) { here.replaceWith(document.importNode(main, true)); }
        if (next.title) { document.title = next.title; }
        document.documentElement.removeAttribute("data-offline");
      })
      .catch(function () { document.documentElement.setAttribute("data-offline", "1"); })
      .then(function () { window.setTimeout(swap, every); });
  }
  window.setTimeout(swap, every);
}());
