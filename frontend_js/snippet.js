/* emailtrack snippet: shows each visitor their own substitute address.
 *
 * The readable source. `python -m frontend_js.build` turns it into the files
 * in dist/ that /s/<site_key>.js serves, with the site's settings in place of
 * the __name__ placeholders (services.py); a test rebuilds them and compares.
 * Lines between `// @if FEATURE` and `// @endif` go only into the variants of
 * sites that use the feature (consent: consent mode or Global Privacy
 * Control; hide: anti-flicker; report: the install check; shadow: inside
 * shadow roots), so a site downloads only the code its settings need. ES5 (which the minifier, calmjs.parse, reads) plus what
 * browsers since 2020 have (Unicode property escapes, attachShadow). Every
 * byte is loaded by every page of every customer site (budget: 1,500 bytes
 * gzipped with two blocks, in every variant), so it is written for size as
 * much as for the reader.
 *
 * What it promises the host page:
 * - It never throws: every entry point (start, observer, timers, events,
 *   promises, the public function, the attachShadow wrapper) catches; on any
 *   failure the page keeps its original address.
 * - No eval, no <style> tags, no style attribute strings: it runs under a
 *   strict Content-Security-Policy that allows its origin (anti-flicker hides
 *   through the CSSOM, which CSP does not govern).
 * - A cached address is shown only until its lease's expiry; past it, only
 *   the server's answer puts an address on the page.
 * - In consent mode, until consent it stores nothing and sends no ids.
 */
(function (w, d) {
  // The site's settings. A block ({id, sel, e}) without `sel` is "find in
  // the page"; the others work inside the elements that `sel` (a CSS
  // selector) selects. `e`, the block's own original address, defaults to
  // the site's.
  var site = __site__, email = __email__, blocks = __blocks__, collect = __collect__, hb = __hb__,
    // @if report
    report = __report__, // the install check's URL
    // @endif
    // @if consent
    // `allowed`: tracking is allowed before the page says so (no consent mode).
    // Global Privacy Control, if honoured, says no whatever the page says.
    allowed = __consent__, gpc = __gpc__ && navigator.globalPrivacyControl, consent,
    // @endif
    // @if hide
    hide = __hide__, hidden, // the elements hidden until the address came
    // @endif
    KEY = "emailtrack_" + site, saved = {}, shown = {}, callbacks = [], sent = 0, exp, known, observer;
  // Each block's addresses the page may show (b.s, in lower case): its
  // original, and each one shown since, so that a new lease replaces an old one.
  blocks.forEach(function (b) {
    b.s = [(b.e = b.e || email).toLowerCase()];
  });

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
      if (!consent) delete localStorage[KEY];
      else
      // @endif
        localStorage[KEY] = JSON.stringify(saved);
    } catch (e) { /* storage blocked: the page still works */ }
  }

  // The document (or an open shadow root): watched for changes from now on,
  // and done at once (with the open shadow roots already inside it: neither
  // XPath nor the observer looks into a shadow root by itself).
  function watch(root) {
    observer.observe(root, { childList: true, subtree: true, characterData: true, attributes: true });
    each(root);
    // @if shadow
    [].forEach.call(root.querySelectorAll("*"), host);
    // @endif
  }

  // @if shadow
  function host(el) {
    if (el.shadowRoot) watch(el.shadowRoot);
  }

  // @endif

  // The texts and attributes (of `root` and below it) that hold an "@": XPath
  // finds them natively, so the page is never walked node by node in script.
  // (Each branch filters on its own: a filter over the union is far slower.)
  function each(root) {
    try {
      // @if shadow
      host(root); // an added shadow host
      // XPath takes no shadow root as its context: its children, then.
      if (root.nodeType == 11) return [].forEach.call(root.childNodes, each);
      // @endif
      if (root.nodeValue) return fix(root); // an added text
      var found = d.evaluate(".//text()[contains(.,'@')]|.//@*[contains(.,'@')]", root, null, 6), k;
      for (k = found.snapshotLength; k--; ) fix(found.snapshotItem(k));
    } catch (e) { /* not in a document */ }
  }

  // A text or attribute: each whole address in it that a block may show
  // (sales.info@x and info@x.org are not info@x) becomes the address of the
  // first such block whose scope holds the element; every such block is
  // found here. While that block's address is unknown (b.to empty), the address
  // stays (in anti-flicker mode, hidden).
  function fix(n) {
    try {
      // (A text right inside a shadow root belongs to its host.)
      var el = n.ownerElement || n.parentElement || n.parentNode.host, v = n.nodeValue;
      // Code, and what the visitor types, is never rewritten.
      if (v.indexOf("@") < 0 || el.closest("[data-emailtrack-ignore],script,style,textarea,input,[contenteditable]")) return;
      v = v.replace(/[\p{L}\w.+@-]*[\p{L}\w]/gu, function (m) {
        var to;
        blocks.forEach(function (b) {
          try {
            if (b.s.indexOf(m.toLowerCase()) >= 0 && (!b.sel || el.closest(b.sel))) {
              // @if report
              b.found = 1;
              // @endif
              // @if hide
              // An element with its own inline visibility is left alone,
              // so unhiding never changes what the page set.
              if (hidden && !b.to && !el.style.visibility) {
                hidden.push(el);
                el.style.visibility = "hidden";
              }
              // @endif
              to = to || b.to || m;
            }
          } catch (e) { /* an invalid selector */ }
        });
        return to || m;
      });
      if (v != n.nodeValue) n.nodeValue = v;
    } catch (e) { /* gone, or a Trusted Types sink */ }
  }

  // Only what changed is looked at, never the whole page again; our own
  // writes come back here and change nothing the second time.
  function changed(records) {
    records.forEach(function (r) {
      [].forEach.call(r.addedNodes, each);
      // A changed text, or the attributes of an element whose one changed.
      [].forEach.call(r.target.attributes || [r.target], fix);
    });
  }

  // @if hide
  function unhide() {
    (hidden || []).forEach(function (el) {
      el.style.visibility = "";
    });
    hidden = 0;
  }

  // @endif
  // Shows `subs` ([{block, email}]). A block without one goes back to its
  // original if it showed another address; else the page is left as it is.
  function use(subs) {
    var again; // b.to starts undefined: the first call always shows
    blocks.forEach(function (b) {
      var to = b.to && b.e || "";
      subs.forEach(function (s) {
        if (s.block == b.id) to = s.email;
      });
      if (to != b.to) again = b.s.push((b.to = to).toLowerCase()); // (a length: true)
      shown[b.id] = to || b.e;
    });
    known = 1;
    if (again) {
      watch(d);
      callbacks.forEach(function (f) {
        safe(f)(shown);
      });
    }
  }

  function got(data) {
    use(data.subs); // an error answer ({"error"}) throws here: a failure
    hb = data.hb || hb; // the server says when to beat next
    exp = data.exp;
    saved = data;
    // @if consent
    data.c = !allowed; // consent given by the page: remembered until withdrawn
    // @endif
    store();
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
    if (consent)
    // @endif
      return (d.cookie.match(re) || [])[1];
  }

  function send(heartbeat) {
    var mine = ++sent;
    fetch(collect, {
      method: "POST",
      keepalive: true,
      // Keys left undefined are not sent; the server reads them as null
      // (and a missing "consent" as true, a missing "hb" as false).
      body: JSON.stringify({
        // @if consent
        consent: !!consent,
        // @endif
        site: site, url: location.href, v: 1, vid: saved.vid, ref: d.referrer, hb: heartbeat,
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
    if (exp && exp * 1e3 <= Date.now()) {
      exp = 0;
      use([]);
    }
    if (!d.hidden) {
      // @if consent
      if (consent)
      // @endif
        send(true);
    }
    // @if report
    // Install check, once a page, when it is first hidden (the visitor
    // leaves or switches away; content that came late has come): the blocks
    // whose address this page lacks. The server keeps the page's address
    // without its query and fragment.
    else if (report) {
      var missing = [];
      blocks.forEach(function (b) {
        if (!b.found) missing.push(b.id);
      });
      if (missing[0]) navigator.sendBeacon(report, JSON.stringify({ site: site, url: location.href, missing: missing }));
      report = 0;
    }
    // @endif
  }

  // Every `hb` seconds (as the server last said), and at the lease's expiry
  // if that comes first.
  function tick() {
    setTimeout(safe(function () {
      beat();
      tick();
    }), Math.min(hb, exp ? exp - Date.now() / 1e3 : hb) * 1e3);
  }


  function command(name, arg) {
    if (name == "ready") {
      callbacks.push(arg);
      if (known) safe(arg)(shown);
    }
    // @if consent
    if (name == "consent" && !gpc && !arg != !consent) {
      consent = !!arg;
      if (!consent) got({ subs: [] }); // forgets the visitor: stores nothing, shows the original
      if (sent) send(); // once started; before, the first page view carries it
    }
    // @endif
  }

  try {
    try {
      saved = JSON.parse(localStorage[KEY]) || {};
    } catch (e) { /* nothing cached */ }
    // @if consent
    consent = !gpc && (allowed || saved.c);
    if (!consent) {
      saved = {};
      store();
    }
    // @endif
    // Started at the top of <head>, the observer sees each node the parser
    // adds before it is painted: no flash of the original address.
    observer = new MutationObserver(safe(changed));
    var queue = w.emailtrack;
    w.emailtrack = safe(command);
    (queue && queue.q || []).forEach(function (args) {
      w.emailtrack.apply(w, args);
    });
    if (saved.exp * 1e3 > Date.now()) got(saved);
    else {
      // @if hide
      hidden = [];
      setTimeout(safe(unhide), hide);
      // @endif
      watch(d);
    }
    // @if shadow
    // Shadow roots made from now on (web components, chat widgets): open ones
    // are watched as the document is. The page gets its root as before.
    // (`host` finds only an open root: a closed one is no element's shadowRoot.)
    var proto = Element.prototype, attach = proto.attachShadow;
    proto.attachShadow = function (options) {
      options = attach.call(this, options);
      safe(host)(this);
      return options;
    };
    // @endif
    d.addEventListener("visibilitychange", safe(beat));
    tick();
    send();
  } catch (e) { /* never into the host page */ }
})(window, document);
