// The login form posts JSON to /api/login, then goes back to the page asked for.
"use strict";
(function () {
  const form = document.getElementById("login");
  const error = document.getElementById("error");
  function next() {
    const target = new URLSearchParams(window.location.search).get("next") || "/";
    // Only a path of this site: never an open redirect to another one.
    return target.startsWith("/") && !target.startsWith("//") ? target : "/";
  }
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    error.textContent = "";
    const body = {
      login: document.getElementById("username").value,
      password: document.getElementById("password").value,
    };
    try {
      const response = await fetch("/api/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
      if (response.ok) {
        window.location.assign(next());
        return;
      }
      const answer = await response.json().catch(() => ({}));
      error.textContent = answer.error || "Connexion impossible (" + response.status + ")";
    } catch (e) {
      error.textContent = "Serveur injoignable : réessayez.";
    }
  });
})();
