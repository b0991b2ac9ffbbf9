/* emailtrack snippet: shows each visitor their own substitute address.
 *
 * The readable source. `python -m frontend_js.build` turns it into the files
 * in dist/ that /s/<site_key>.js serves, with the site's settings in place of
 * __CONFIG__ (services.py); a test rebuilds them and compares. Lines between
 * `// @if FEATURE` and `// @endif` go only into the variants of sites that
 * use the feature (consent: consent mode or Global Privacy Control; hide:
 * anti-flicker), so a site downloads only the code its settings need. ES5,
 * which the minifier (calmjs.parse) reads; every byte is loaded by every page
 * of every customer site (budget: 1,500 bytes gzipped with two blocks).
 *
 * What it promises the host page:
 * - It never throws: every entry point (start, observer, timers, events,
 *   promises, the public function) catches; on any failure the page keeps
 *   its original address.
 * - No eval, no <style> tags, no style attribute strings: it runs under a
 *   strict Content-Security-Policy that allows its origin (anti-flicker hides
 *   through the CSSOM, which CSP does not govern).
 * - A cached address is shown only until its lease's expiry; past it, only
 *   the server's answer puts an address on the page.
 * - In consent mode, until consent it stores nothing and sends no ids.
 *
 * C = {site, collect, report, blocks: [{id, email, sel}], hb, consent, gpc,
 * hide}: a block without `sel` is "find in the page"; the others work inside
 * the elements that `sel` (a CSS selector) selects.
 */
(function (w, d) {
  var C = __CONFIG__, KEY = "emailtrack_" + C.site, blocks = C.blocks;
  var saved = {}, shown = {}, callbacks = [], sent = 0, exp, known;
  // @if consent
  var consent, started, gpc = C.gpc && navigator.globalPrivacyControl;
  // @endif
  // @if hide
  var hiding, hidden = [];
  // @endif

  // Every callback the browser or the page runs for us goes through here.
  function safe(f) {
    return function (a, b) {
      try {
        f(a, b);
      } catch (e) { /* never into the host page */ }
    };
  }

  function store() {
    try {
      // @if consent
      if (!consent) return localStorage.removeItem(KEY);
      // @endif
      localStorage.setItem(KEY, JSON.stringify(saved));
    } catch (e) { /* storage blocked: the page still works */ }
  }

  // The block's pattern matches every address it may show on this page: the
  // original and each one shown since, so a new lease replaces an old one.
  // The edges keep sales.info@x and info@x.org from matching info@x.
  function pattern(b) {
    b.seen = b.seen || [b.email];
    b.re = RegExp("(^|[^\\w.+-])(" + b.seen.map(function (s) {
      return s.replace(/\W/g, "\\$&");
    }).join("|") + ")(?![\\w-]|\\.\\w)", "gi");
  }

  // The texts and attributes (of `root` and below it) that hold an "@": XPath
  // finds them natively, so the page is never walked node by node in script.
  // (Each branch filters on its own: a filter over the union is far slower.)
  function each(root) {
    try {
      if (root.nodeType == 3) return root.nodeValue.indexOf("@") < 0 || fix(root, root.parentNode);
      var found = d.evaluate(".//text()[contains(.,'@')]|.//@*[contains(.,'@')]", root, null, 6, null), n, k;
      for (k = 0; (n = found.snapshotItem(k)); k++) fix(n, n.ownerElement || n.parentNode);
    } catch (e) { /* not in the document's tree */ }
  }

  // A text or attribute `n` of element `el`, rewritten by each block whose
  // scope holds it (a block with `sel` works inside the elements it selects).
  // While a block's address is unknown (b.to empty) a match only marks the
  // block found (and in anti-flicker mode hides the element).
  function fix(n, el) {
    // Code, and what the visitor types, is never rewritten.
    if (el.closest("[data-emailtrack-ignore],script,style,textarea,input,[contenteditable]")) return;
    blocks.forEach(function (b) {
      try {
        if (b.sel && !el.closest(b.sel)) return;
        var v = n.nodeValue.replace(b.re, function (m, edge) {
          b.found = 1;
          // @if hide
          // An element with its own inline visibility is left alone, so
          // unhiding never changes what the page set.
          if (hiding && !b.to && !el.style.visibility) {
            hidden.push(el);
            el.style.visibility = "hidden";
          }
          // @endif
          return b.to ? edge + b.to : m;
        });
        if (v != n.nodeValue) n.nodeValue = v;
      } catch (e) { /* an invalid selector, a Trusted Types sink */ }
    });
  }

  // @if hide
  function unhide() {
    hiding = 0;
    hidden.forEach(function (el) {
      el.style.visibility = "";
    });
  }

  // @endif
  // Shows `subs` ([{block, email}]). A block without one goes back to its
  // original if it showed another address; else the page is left as it is.
  function use(subs) {
    var map = {}, changed; // b.to starts undefined: the first call always shows
    subs.forEach(function (s) {
      map[s.block] = s.email;
    });
    blocks.forEach(function (b) {
      var to = map[b.id] || (b.seen[1] ? b.email : "");
      if (to != b.to) {
        b.to = to;
        changed = 1;
        if (to && b.seen.indexOf(to) < 0) {
          b.seen.push(to);
          pattern(b);
        }
      }
      shown[b.id] = to || b.email;
    });
    known = 1;
    if (changed) {
      each(d.documentElement);
      callbacks.forEach(function (f) {
        safe(f)(shown);
      });
    }
  }

  function got(data) {
    use(data.subs); // an error answer ({"error"}) throws here: a failure
    C.hb = data.hb || C.hb; // the server says when to beat next
    // @if consent
    data.c = !C.consent; // consent given by the page: remembered until withdrawn
    if (consent) {
      // @endif
      exp = data.exp;
      saved = data;
      store();
      // @if consent
    }
    // @endif
    // @if hide
    unhide();
    // @endif
  }

  // Server down, slow or refusing: the original stays (or a valid cache).
  function failed() {
    if (!known) use([]);
    // @if hide
    unhide();
    // @endif
  }

  function cookie(re) {
    // @if consent
    if (!consent) return;
    // @endif
    return (d.cookie.match(re) || [])[1];
  }

  function send(heartbeat) {
    var mine = ++sent;
    fetch(C.collect, {
      method: "POST",
      keepalive: true,
      // Keys left undefined are not sent; the server reads them as null
      // (and a missing "consent" as true).
      body: JSON.stringify({
        // @if consent
        consent: !!consent,
        // @endif
        v: 1, site: C.site, vid: saved.vid, url: location.href, ref: d.referrer, hb: !!heartbeat,
        screen: screen.width + "x" + screen.height, lang: navigator.language,
        ga: cookie(/_ga=\w+\.\w+\.(\d+\.\d+)/), ym: cookie(/_ym_uid=(\d+)/)
      })
    }).then(function (r) {
      return r.json();
    }).then(function (data) {
      if (mine == sent) got(data); // an older request answering late never wins
    }).catch(safe(failed));
  }

  // The heartbeat extends the lease while the page is visible. A lease past
  // its expiry without the server's word goes back to the original at once.
  function beat() {
    // @if consent
    if (!consent) return;
    // @endif
    if (exp && exp * 1e3 <= Date.now()) {
      exp = 0;
      use([]);
    }
    if (!d.hidden) send(1);
  }

  // Every `hb` seconds (as the server last said), and at the lease's expiry
  // if that comes first.
  function tick() {
    setTimeout(safe(function () {
      beat();
      tick();
    }), Math.min(C.hb, exp ? exp - Date.now() / 1e3 : C.hb) * 1e3);
  }

  // Install check, a while after the page has loaded (content may come
  // late): the blocks whose original address this page lacks.
  function check() {
    var missing = [];
    if (d.readyState != "complete") return later();
    blocks.forEach(function (b) {
      if (!b.found) missing.push(b.id);
    });
    if (missing[0] && C.report) {
      // The server keeps the page's address without its query and fragment.
      navigator.sendBeacon(C.report, JSON.stringify({ site: C.site, url: location.href, missing: missing }));
    }
  }

  function later() {
    setTimeout(safe(check), 3e3);
  }

  function command(name, arg) {
    if (name == "ready") {
      callbacks.push(arg);
      if (known) safe(arg)(shown);
    }
    // @if consent
    if (name == "consent" && !gpc && !arg != !consent) {
      consent = !!arg;
      if (!consent) {
        saved = {};
        store();
        exp = 0;
        use([]);
      }
      if (started) send();
    }
    // @endif
  }

  try {
    try {
      saved = JSON.parse(localStorage.getItem(KEY)) || {};
    } catch (e) { /* nothing cached */ }
    // @if consent
    consent = !gpc && (C.consent || saved.c);
    if (!consent) {
      saved = {};
      store();
    }
    // @endif
    var queue = w.emailtrack && w.emailtrack.q || [];
    w.emailtrack = safe(command);
    queue.forEach(function (args) {
      w.emailtrack(args[0], args[1]);
    });
    blocks.forEach(pattern);
    if (saved.exp * 1e3 > Date.now()) {
      exp = saved.exp;
      use(saved.subs);
    } else {
      // @if hide
      hiding = C.hide;
      setTimeout(safe(unhide), hiding);
      // @endif
      each(d.documentElement);
    }
    // Started at the top of <head>, this sees each node the parser adds before
    // it is painted: no flash of the original address. Only what changed is
    // looked at, never the whole page again; our own writes come back here
    // and change nothing the second time.
    new MutationObserver(safe(function (records) {
      records.forEach(function (r) {
        [].forEach.call(r.addedNodes, each);
        if (r.target.nodeType == 3) each(r.target);
      });
    })).observe(d.documentElement, { childList: true, subtree: true, characterData: true });
    d.addEventListener("visibilitychange", safe(beat));
    later();
    // @if consent
    started = 1;
    // @endif
    tick();
    send();
  } catch (e) { /* never into the host page */ }
})(window, document);
