/* emailtrack snippet: shows each visitor their own substitute address.
 * The server renders this site's settings into CONFIG. Nothing here may throw
 * into the host page: every entry point is wrapped, and on any failure the
 * page keeps its original address. */
(function (w, d) {
  "use strict";
  var C = /*CONFIG*/ {};
  var KEY_VID = "emailtrack_vid", KEY_SUB = "emailtrack_sub_" + C.site;
  var queue = (w.emailtrack && w.emailtrack.q) || [];
  var consent = C.consent !== false;
  var shown = {};      // block id -> email currently on the page
  var readyCallbacks = [], assigned = null, hbTimer = null, observer = null;

  function store(get, key, value) {
    try {
      if (get) return w.localStorage.getItem(key);
      if (value === null) w.localStorage.removeItem(key);
      else w.localStorage.setItem(key, value);
    } catch (e) { return null; }
  }

  function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  // Every address a block may currently show: its original and the last substitute.
  function pairs(subs) {
    var out = [];
    for (var i = 0; i < subs.length; i++) {
      var block = blockById(subs[i].block);
      if (!block) continue;
      var from = [block.email];
      if (shown[block.id] && shown[block.id] !== block.email) from.push(shown[block.id]);
      out.push({ block: block, re: new RegExp(from.map(escapeRe).join("|"), "gi"), to: subs[i].email });
    }
    return out;
  }

  function blockById(id) {
    for (var i = 0; i < C.blocks.length; i++) if (C.blocks[i].id === id) return C.blocks[i];
    return null;
  }

  function replaceIn(root, reps) {
    if (!reps.length || !root) return;
    if (root.nodeType === 3) { replaceText(root, reps); return; }
    if (root.nodeType !== 1 && root.nodeType !== 9) return;
    if (root.nodeType === 1) replaceElement(root, reps);
    var walker = d.createTreeWalker(root, 5 /* elements and text */, null);
    var node;
    while ((node = walker.nextNode())) {
      if (node.nodeType === 3) replaceText(node, reps);
      else replaceElement(node, reps);
    }
  }

  function skipped(el) {
    if (!el) return false;
    var tag = el.nodeName;
    return tag === "SCRIPT" || tag === "STYLE" || tag === "TEXTAREA" || tag === "INPUT" ||
      (el.closest && el.closest("[data-emailtrack-ignore]"));
  }

  function replaceText(node, reps) {
    if (skipped(node.parentNode)) return;
    var text = node.nodeValue, out = text;
    for (var i = 0; i < reps.length; i++) { reps[i].re.lastIndex = 0; out = out.replace(reps[i].re, reps[i].to); }
    if (out !== text) node.nodeValue = out;
  }

  function replaceElement(el, reps) {
    if (el.nodeName !== "A" || skipped(el)) return;
    var href = el.getAttribute("href");
    if (!href || !/^mailto:/i.test(href)) return;
    var out = href;
    for (var i = 0; i < reps.length; i++) { reps[i].re.lastIndex = 0; out = out.replace(reps[i].re, reps[i].to); }
    if (out !== href) el.setAttribute("href", out);
  }

  function apply(subs) {
    var reps = pairs(subs);
    replaceIn(d.body || d.documentElement, reps);
    for (var i = 0; i < subs.length; i++) shown[subs[i].block] = subs[i].email;
    watch();
  }

  // Content added later (SPAs, popups) gets the same replacement, node by node.
  function watch() {
    if (observer || !w.MutationObserver || !assigned) return;
    observer = new w.MutationObserver(function (records) {
      try {
        var reps = pairs(assigned.subs);
        for (var i = 0; i < records.length; i++) {
          var added = records[i].addedNodes;
          for (var j = 0; j < added.length; j++) replaceIn(added[j], reps);
        }
      } catch (e) { /* never break the page */ }
    });
    observer.observe(d.documentElement, { childList: true, subtree: true });
  }

  function cookie(name) {
    var m = d.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }

  function gaClientId() {
    var ga = cookie("_ga");
    return ga ? ga.split(".").slice(-2).join(".") : null;
  }

  function assign(data) {
    var subs = data.subs || [], seen = {};
    for (var i = 0; i < subs.length; i++) seen[subs[i].block] = 1;
    // A block that lost its address goes back to the original.
    for (var id in shown) if (!seen[id] && blockById(+id)) subs.push({ block: +id, email: blockById(+id).email });
    assigned = { subs: subs, exp: data.exp || 0 };
    if (consent && data.vid) {
      store(false, KEY_VID, data.vid);
      store(false, KEY_SUB, assigned.exp ? JSON.stringify(assigned) : null);
    }
    if (d.body) apply(assigned.subs);
    else d.addEventListener("DOMContentLoaded", function () { apply(assigned.subs); });
    var cbs = readyCallbacks; readyCallbacks = [];
    for (var j = 0; j < cbs.length; j++) fire(cbs[j]);
  }

  function fire(cb) {
    try {
      var emails = {};
      for (var i = 0; i < assigned.subs.length; i++) emails[assigned.subs[i].block] = assigned.subs[i].email;
      cb(emails);
    } catch (e) { /* the page's own callback failed; not ours to report */ }
  }

  function send(heartbeat) {
    if (!w.fetch) return;
    var body = {
      v: 1, site: C.site, vid: consent ? store(true, KEY_VID) : null, url: w.location.href,
      ref: d.referrer || "", screen: w.screen ? w.screen.width + "x" + w.screen.height : "",
      lang: navigator.language || "", ga: gaClientId(), ym: cookie("_ym_uid"), consent: consent, hb: !!heartbeat
    };
    w.fetch(C.collect, {
      method: "POST", body: JSON.stringify(body), keepalive: true, credentials: "omit",
      headers: { "Content-Type": "text/plain" }
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        assign(data);
        schedule(data.hb);
      })["catch"](function () { /* server down: the original address stays */ });
  }

  // The heartbeat keeps the lease while the page is visible, and stops while hidden.
  function schedule(seconds) {
    if (hbTimer) w.clearTimeout(hbTimer);
    if (!seconds || !consent) return;
    hbTimer = w.setTimeout(function () {
      hbTimer = null;
      if (d.visibilityState === "visible") send(true);
    }, seconds * 1000);
  }

  function cached() {
    if (!consent) return null;
    try {
      var c = JSON.parse(store(true, KEY_SUB) || "null");
      // Never show an address past its lease expiry without the server's word.
      return c && c.exp * 1000 > Date.now() ? c : null;
    } catch (e) { return null; }
  }

  function command(name, arg) {
    if (name === "consent") {
      var was = consent;
      consent = !!arg;
      if (!consent) { store(false, KEY_VID, null); store(false, KEY_SUB, null); }
      if (consent && !was) send(false);
    } else if (name === "ready" && typeof arg === "function") {
      if (assigned) fire(arg); else readyCallbacks.push(arg);
    }
  }

  try {
    w.emailtrack = function () { try { command(arguments[0], arguments[1]); } catch (e) { /* ignore */ } };
    for (var i = 0; i < queue.length; i++) w.emailtrack.apply(null, queue[i]);
    var early = cached();
    if (early) {
      assigned = early;
      if (d.body) apply(early.subs);
      else d.addEventListener("DOMContentLoaded", function () { apply(early.subs); });
    }
    d.addEventListener("visibilitychange", function () {
      if (d.visibilityState === "visible" && assigned && !hbTimer) send(true);
    });
    send(false);
  } catch (e) { /* never break the host page */ }
})(window, document);
