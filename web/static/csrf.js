// The session's CSRF token (base.html's <meta name="csrf-token">) on every unsafe request:
// htmx requests get the X-CSRF-Token header, and window.omiFetch is fetch with it.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // omiFetch(url, {method, json, headers, ...}): `json` is sent as a JSON body; the answer
  // is fetch's Response (read it with .json()).
  window.omiFetch = function (url, opts) {
    var options = Object.assign({ method: "GET", credentials: "same-origin" }, opts || {});
    var headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    headers["X-CSRF-Token"] = csrfToken();
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(options.json);
      delete options.json;
    }
    options.headers = headers;
    return fetch(url, options);
  };
  window.omiCsrfToken = csrfToken;
})();
