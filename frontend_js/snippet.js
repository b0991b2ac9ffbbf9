/* emailtrack snippet: shows each visitor their own substitute address.
 *
 * The readable source. `python -m frontend_js.build` turns it into the files
 * in dist/ that /s/<site_key>.js serves, with the site's settings in place of
 * the __name__ placeholders (services.py); a test rebuilds them and compares.
 * Lines between `// @if FEATURE` and `// @endif` (or `// @else`) go only into
 * the variants of sites that use the feature (consent: consent mode or Global
 * Privacy Control; hide: anti-flicker; report: the install check; shadow:
 * inside shadow roots), so a site downloads only the code its settings need.
 * What browsers since 2020 run: arrow functions, spread, optional chaining,
 * Unicode property escapes, attachShadow. Every byte is loaded by every page
 * of every customer site (budget: 1,500 bytes gzipped with three blocks, in
 * every variant, bench/snippet_size.py), so it is written for size as much as
 * for the reader: a function's locals are often its unused trailing
 * parameters, the functions come in the order that compresses best, and the
 * minifier (tdewolff's, see build.py) does the rest.
 *
 * What it promises the host page:
 * - It never throws: every entry point (start, observer, timers, events,
 *   promises, the public function, the attachShadow wrapper) catches, or
 *   calls only code that catches; on any failure the page keeps its original
 *   address.
 * - No eval, no <style> tags, no style attribute strings: it runs under a
 *   strict Content-Security-Policy that allows its origin (anti-flicker hides
 *   through the CSSOM, which CSP does not govern).
 * - A cached address is shown only until its lease's expiry; past it, only
 *   the server's answer puts an address on the page.
 * - In consent mode, until consent it stores nothing and sends no ids.
 */
((w, d) => {
  // The site's settings. A block ({id, e, sel}) shows in place of its
  // original address `e`; without `sel` it is "find in the page", with it it
  // works inside the elements that `sel` (a CSS selector) selects.
  var site = __site__, blocks = __blocks__, hb = __hb__,
    // @if report
    report = __report__, // the install check's URL
    // @endif
    // @if consent
    // `allowed`: tracking is allowed before the page says so (no consent mode).
    // Global Privacy Control, if honoured, says no whatever the page says.
    allowed = __consent__, gpc = __gpc__ && navigator.globalPrivacyControl, consent,
    // @endif
    // @if hide
    hidden, // the elements hidden until the address came
    // @endif
    saved = {}, shown = {}, callbacks = [], sent = 0, exp, known, observer,
    // Every callback the browser or the page runs for us that may throw goes
    // through here.
    safe = f => (a, b) => {
      try {
        f(a, b);
      } catch { /* never into the host page */ }
    },
    store = () => {
      try {
        // @if consent
        if (!consent) delete localStorage["emailtrack_" + site];
        else
        // @endif
          localStorage["emailtrack_" + site] = JSON.stringify(saved);
      } catch { /* storage blocked: the page still works */ }
    },
    send = heartbeat => {
      var mine = ++sent;
      fetch(__collect__, {
        method: "POST",
        keepalive: 1,
        // Keys left undefined are not sent; the server reads them as null
        // (and a missing "consent" as true, a missing "hb" as false).
        body: JSON.stringify({
          site, url: location.href, v: 1, vid: saved.vid, ref: d.referrer, hb: heartbeat,
          // @if consent
          consent,
          // @endif
          screen: screen.width + "x" + screen.height, lang: navigator.language,
          ga: cookie(/_ga=\w+\.\w+\.(\d+\.\d+)/), ym: cookie(/_ym_uid=(\d+)/)
        })
      }).then(r => r.json()).then(data => mine == sent && got(data)) // an older request answering late never wins
        // Server down, slow or refusing: the original stays (or a valid cache).
        .catch(() => known || use([]));
    },
    // The document (or an open shadow root): watched for changes from now
    // on, and done at once (with the open shadow roots already inside it:
    // neither XPath nor the observer looks into a shadow root by itself).
    watch = root => {
      observer.observe(root, { childList: 1, subtree: 1, characterData: 1, attributes: 1 });
      // @if shadow
      // (XPath takes no shadow root as its context: its children, then.)
      root.childNodes.forEach(each);
      root.querySelectorAll("*").forEach(host);
      // @else
      each(root);
      // @endif
    },
    // A node, added or changed, or one of those found here. An element (or
    // the document): the texts and attributes below it that hold an "@", which
    // XPath finds natively, so the page is never walked node by node in
    // script (each branch filters on its own: a filter over the union is far
    // slower). A text or attribute: each whole address in it that a block may
    // show (sales.info@x and info@x.org are not info@x) becomes the address of
    // the first such block whose scope holds the element; every such block is
    // found here. While that block's address is unknown (b.to empty), the
    // address stays (in anti-flicker mode, hidden). Code, and what the visitor
    // types, is never rewritten.
    each = (n, found, k, el, v) => {
      try {
        // @if shadow
        host(n); // an added shadow host
        // @endif
        if (v = n.nodeValue) {
          // (A text right inside a shadow root belongs to its host.)
          el = n.ownerElement || n.parentElement
            // @if shadow
            || n.parentNode.host
            // @endif
          ;
          v = v.replace(/[\p{L}\w.+@-]*@[\p{L}\w.+@-]*[\p{L}\w]/gu, m => {
            var to;
            el.closest("[data-emailtrack-ignore],script,style,textarea,input,[contenteditable]") || blocks.forEach(b => {
              try {
                if (b.s.includes(m.toLowerCase()) && (!b.sel || el.closest(b.sel))) {
                  // @if report
                  b.f = 1;
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
              } catch { /* an invalid selector */ }
            });
            return to || m;
          });
          // Our own writes come back through the observer and change nothing.
          if (v != n.nodeValue) n.nodeValue = v;
        } else for (found = d.evaluate(".//text()[contains(.,'@')]|.//@*[contains(.,'@')]", n, n, 6), k = found.snapshotLength; k--;) each(found.snapshotItem(k));
      } catch { /* not in a document, gone, or a Trusted Types sink */ }
    },
    // Shows `subs` ([{block, email}]). A block without one goes back to its
    // original if it showed another address; else the page is left as it is.
    use = subs => {
      var again; // b.to starts undefined: the first call always shows
      blocks.forEach(b => {
        var to = b.to && b.e || "";
        subs.forEach(s => s.block == b.id && (to = s.email));
        if (to != b.to) again = b.s.push((b.to = to).toLowerCase()); // (a length: true)
        shown[b.id] = to || b.e;
      });
      known = 1;
      if (again) {
        watch(d);
        callbacks.forEach(f => f(shown));
      }
      // @if hide
      unhide();
      // @endif
    },
    // @if shadow
    host = el => el.shadowRoot && watch(el.shadowRoot),
    // @endif
    got = data => {
      use(data.subs); // an error answer ({"error"}) throws here: a failure
      hb = data.hb || hb; // the server says when to beat next
      exp = data.exp || NaN; // (no lease: no expiry)
      saved = data;
      // @if consent
      data.c = !allowed; // consent given by the page: remembered until withdrawn
      // @endif
      store();
    },
    // Every `hb` seconds (as the server last said), and at the lease's expiry
    // if that comes first.
    tick = () => setTimeout(() => tick(beat()), Math.min(hb, exp - Date.now() / 1e3 || hb) * 1e3),
    // @if hide
    unhide = () => {
      hidden = hidden?.forEach(el => el.style.visibility = "");
    },
    // @endif
    // The heartbeat extends the lease while the page is visible. A lease past
    // its expiry without the server's word goes back to the original at once.
    beat = safe((event, missing) => {
      if (exp * 1e3 <= Date.now()) exp = use([]);
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
        missing = blocks.flatMap(b => b.f ? [] : b.id);
        if (missing[0]) navigator.sendBeacon(report, JSON.stringify({ site, url: location.href, missing }));
        report = 0;
      }
      // @endif
    }),
    cookie = re => (
      // @if consent
      consent &&
      // @endif
      d.cookie.match(re) || [])[1],
    command = (name, arg) => {
      if (name == "ready") {
        callbacks.push(arg = safe(arg));
        if (known) arg(shown);
      }
      // @if consent
      if (name == "consent" && !gpc && !arg != !consent) {
        consent = !!arg;
        if (!consent) got({ subs: [] }); // forgets the visitor: stores nothing, shows the original
        if (sent) send(); // once started; before, the first page view carries it
      }
      // @endif
    };
  // Each block's addresses the page may show (b.s, in lower case): its
  // original, and each one shown since, so that a new lease replaces an old one.
  blocks.forEach(b => b.s = [b.e.toLowerCase()]);
  try {
    try {
      saved = JSON.parse(localStorage["emailtrack_" + site]) || {};
    } catch { /* nothing cached */ }
    // @if consent
    consent = !gpc && !!(allowed || saved.c);
    if (!consent) store(saved = {});
    // @endif
    // Started at the top of <head>, the observer sees each node the parser
    // adds before it is painted: no flash of the original address. Only what
    // changed is looked at, never the whole page again: the added nodes, a
    // changed text, or the attributes of an element whose one changed.
    observer = new MutationObserver(records => records.forEach(r =>
      [...r.addedNodes, ...r.target.attributes || [r.target]].forEach(each)));
    // The calls queued before the script came, then the public function (the
    // queue is read before forEach's second argument replaces it).
    (w.emailtrack?.q || []).forEach(args => command(...args), w.emailtrack = command = safe(command));
    if (saved.exp * 1e3 > Date.now()) got(saved);
    else {
      // @if hide
      hidden = [];
      setTimeout(unhide, __hide__);
      // @endif
      watch(d);
    }
    // @if shadow
    // Shadow roots made from now on (web components, chat widgets): open ones
    // are watched as the document is. The page gets its root as before.
    // (`host` finds only an open root: a closed one is no element's shadowRoot.)
    var attach = Element.prototype.attachShadow;
    Element.prototype.attachShadow = function (options) {
      return host(this, options = attach.call(this, options)) || options;
    };
    // @endif
    d.addEventListener("visibilitychange", beat);
    tick();
    send();
  } catch { /* never into the host page */ }
})(window, document);
