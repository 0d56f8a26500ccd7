/* The live occupancy page (index.html): loaded as a file so the CSP forbids inline script. */
"use strict";
(function () {
  // The API addresses come from the page (data-* on <body>): no inline script (CSP).
  var API = document.body.dataset;
  var ROOM_STATES = { occupied: "occupée", free: "libre", unknown: "inconnue" };
  var UNIT_STATES = { online: "en ligne", offline: "hors ligne", unknown: "état inconnu" };
  var REASONS = {
    unknown_card: "carte inconnue", revoked: "badge révoqué", expired: "badge expiré",
    not_yet_valid: "badge pas encore valide", wrong_centre: "autre télécentre",
    server_timeout: "hors délai serveur", server_denied: "refusé par le serveur",
    lockdown: "confinement"
  };
  var DOOR_EVENTS = { door_forced: "porte forcée", door_held: "porte restée ouverte",
                      door_closed: "porte fermée", exit: "sortie par le bouton",
                      tamper: "lecteur ou boîtier arraché",
                      tamper_cleared: "lecteur ou boîtier remis en place",
                      lockdown: "confinement du boîtier", release: "fin du confinement" };
  var NOTICES = { door_closed: true, exit: true, tamper_cleared: true, release: true };  // no alarm
  var centreNames = {};   // centre_id -> name, learned from the occupancy data
  var memberNames = {};   // member_id -> name, learned from the people present
  var roomNames = {};     // "centre/room" -> name

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hhmm(ts) {
    var d = new Date(ts * 1000), now = new Date();
    var t = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (d.toDateString() === now.toDateString()) return t;
    return pad(d.getDate()) + "/" + pad(d.getMonth() + 1) + " " + t;
  }
  function hhmmss(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }
  function personName(id, name) { return name ? name : "Membre n°" + id; }
  function plural(n, one, many) { return n + " " + (n <= 1 ? one : many); }

  function renderCentre(c) {
    var card = el("article", "card");
    card.appendChild(el("h2", null, c.name || c.centre_id));
    var people = c.people || [];
    var present = typeof c.present === "number" ? c.present : people.length;
    var count = el("div", "count", present);
    count.appendChild(el("small", null, present <= 1 ? "personne présente" : "personnes présentes"));
    card.appendChild(count);
    var list = el("ul", "people");
    people.forEach(function (p) {
      if (p.name) memberNames[p.member_id] = p.name;
      var li = el("li", null, personName(p.member_id, p.name));
      if (p.since) li.appendChild(el("span", null, "depuis " + hhmm(p.since)));
      list.appendChild(li);
    });
    if (!people.length) list.appendChild(el("li", "empty", "Personne actuellement"));
    card.appendChild(list);
    var chips = el("div", "chips");
    (c.rooms || []).forEach(function (r) {
      var state = ROOM_STATES[r.state] ? r.state : "unknown";
      if (r.name) roomNames[c.centre_id + "/" + r.room_id] = r.name;
      var chip = el("span", "chip " + state, (r.name || r.room_id) + " : " + ROOM_STATES[state]);
      if (r.since) chip.title = "depuis " + hhmm(r.since);
      chips.appendChild(chip);
    });
    if (chips.firstChild) card.appendChild(chips);
    var units = c.units || [];
    var unitLine = el("div", "units", units.length ? "Unité : " : "Aucune unité déclarée");
    units.forEach(function (u, i) {
      if (i) unitLine.appendChild(document.createTextNode(", "));
      unitLine.appendChild(document.createTextNode(u.device_id + " "));
      var s = el("span", u.state, UNIT_STATES[u.state] || UNIT_STATES.unknown);
      if (u.last_seen) s.title = "vue pour la dernière fois à " + hhmm(u.last_seen);
      unitLine.appendChild(s);
    });
    card.appendChild(unitLine);
    var allOffline = units.length > 0 && units.every(function (u) { return u.state !== "online"; });
    if (allOffline) card.appendChild(el("div", "warning", "⚠ unité hors ligne : état des salles inconnu"));
    return card;
  }

  function renderOccupancy(data) {
    if (!Array.isArray(data)) return;
    var box = document.getElementById("centres");
    clear(box);
    var total = 0;
    data.forEach(function (c) {
      centreNames[c.centre_id] = c.name || c.centre_id;
      total += typeof c.present === "number" ? c.present : (c.people || []).length;
      box.appendChild(renderCentre(c));
    });
    if (!data.length) box.appendChild(el("p", "empty", "Aucun télécentre déclaré."));
    document.getElementById("total").textContent =
      plural(total, "personne présente", "personnes présentes") + " au total";
    document.getElementById("updated").textContent = hhmmss(new Date());
  }

  function describe(e) {
    var who = e.member_id !== undefined && e.member_id !== null
      ? personName(e.member_id, e.member_name || memberNames[e.member_id]) : "";
    var door = e.door ? " (" + e.door + ")" : "";
    if (e.kind === "access") {
      if (e.granted) {
        var dir = e.direction === "out" ? "sortie" : "entrée";
        return { text: dir + (who ? " — " + who : "") + door, cls: null };
      }
      var why = REASONS[e.reason] || e.reason || "motif inconnu";
      return { text: "refusé (" + why + ")" + (who ? " — " + who : "") + door, cls: "denied" };
    }
    if (e.kind === "room") {
      var room = roomNames[e.centre_id + "/" + e.room] || "salle " + (e.room || "?");
      return { text: room + " : " + (ROOM_STATES[e.room_state] || e.room_state || "?"),
               cls: null };
    }
    if (e.kind === "unlock") return { text: "déverrouillage à distance" + door, cls: null };
    if (DOOR_EVENTS[e.kind]) {
      return { text: DOOR_EVENTS[e.kind] + door, cls: NOTICES[e.kind] ? null : "alert" };
    }
    return { text: String(e.kind), cls: null };
  }

  function renderEvents(body) {
    var list = document.getElementById("events");
    var items = body && Array.isArray(body.items) ? body.items : [];
    clear(list);
    items.forEach(function (e) {
      var li = el("li");
      li.appendChild(el("time", null, hhmm(e.ts)));
      li.appendChild(document.createTextNode((centreNames[e.centre_id] || e.centre_id) + " · "));
      var d = describe(e);
      li.appendChild(el("span", d.cls, d.text));
      if (e.historical) li.appendChild(document.createTextNode(" (différé)"));
      list.appendChild(li);
    });
    if (!items.length) list.appendChild(el("li", "empty", "Aucun passage enregistré."));
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(url + " : HTTP " + r.status);
      return r.json();
    });
  }

  function loadEvents() {
    return getJSON(API.events + "?limit=15").then(renderEvents).catch(function (err) {
      console.warn(err);
    });
  }

  // At most one /api/events request per second, whatever the SSE rate.
  var lastEvents = 0, eventsTimer = null;
  function scheduleEvents() {
    if (eventsTimer) return;
    var wait = Math.max(0, lastEvents + 1000 - Date.now());
    eventsTimer = setTimeout(function () {
      eventsTimer = null;
      lastEvents = Date.now();
      loadEvents();
    }, wait);
  }

  var banner = document.getElementById("banner");
  function connect() {
    var source = new EventSource(API.stream);
    source.onopen = function () { banner.classList.remove("visible"); };
    source.onmessage = function (msg) {
      banner.classList.remove("visible");
      var data;
      try { data = JSON.parse(msg.data); } catch (err) { console.warn(err); return; }
      renderOccupancy(data);
      scheduleEvents();
    };
    source.onerror = function () {
      banner.classList.add("visible");
      // EventSource retries by itself unless it gave up (CLOSED): then start again.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, 5000);
      }
    };
  }

  getJSON(API.occupancy).then(renderOccupancy).catch(function (err) {
    console.warn(err);
    banner.classList.add("visible");
  }).then(loadEvents);
  connect();
})();
