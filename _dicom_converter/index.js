
(function () {
  'use strict';
  var SERIES = JSON.parse(document.getElementById('index-data').textContent);
  var PAGE = 10;      // PageUp/PageDown step, in items
  var WHEEL = 50;     // px of wheel per item: a mouse notch is 100-120, a trackpad sends a few at a time
  var SWIPE = 24;     // px of finger travel per item
  var CONTROLS = 64;  // px at the foot of a <video> left to its own controls when swiping
  var SPEAK_MS = 250; // a wheel spun through 100 slices should not queue 100 announcements

  var $ = function (id) { return document.getElementById(id); };
  var viewer = $('viewer'), stage = $('viewer-stage'), slider = $('viewer-slider');
  var live = $('viewer-live'), modal = typeof viewer.showModal === 'function';
  var series = null, at = 0, opener = null, wheel = 0, touch = null, speakTimer = 0;
  var img = null, video = null, audio = null, none = null;
  var prefetched = [new Image(), new Image()];  // the next and previous image, no more

  // A relative URL whose first segment holds a colon would be read as a
  // scheme (javascript:, data:), and one starting with / leaves the folder:
  // "./" keeps either a path inside it.
  function relative(url) { return /^([^\/?#]*:|\/)/.test(url) ? './' + url : url; }

  function make(tag, props) {
    var el = document.createElement(tag);
    for (var key in props) el[key] = props[key];
    return el;
  }

  function media() {
    if (img) return;
    img = make('img', { alt: '', decoding: 'async', hidden: true });
    video = make('video', { controls: true, muted: true, loop: true, playsInline: true, hidden: true });
    video.preload = 'auto';
    audio = make('audio', { controls: true, hidden: true });
    audio.preload = 'metadata';
    none = make('p', { textContent: 'No picture for this item.', hidden: true });
    stage.append(img, video, none, audio);
  }

  function setSource(el, url) {
    if (url) {
      url = relative(url);
      if (el.getAttribute('src') !== url) el.src = url;
    } else if (el.hasAttribute('src')) {
      if (el.pause) el.pause();
      el.removeAttribute('src');
      if (el.load) el.load();  // stops the download of what was playing
    }
    el.hidden = !url;
  }

  function show(i) {
    var items = series.items, n = items.length, item = items[i];
    at = i;
    var picture = item.video ? null : item.image;
    setSource(img, picture);
    img.alt = item.title || '';
    setSource(video, item.video);
    if (item.video) video.play().catch(function () {});  // muted autoplay; refusal only leaves it paused
    setSource(audio, item.audio);
    none.hidden = !!(picture || item.video || item.audio);

    $('viewer-title').textContent = item.title || '';
    $('viewer-counter').textContent = (i + 1) + ' / ' + n;
    slider.value = String(i + 1);
    slider.setAttribute('aria-valuetext', 'image ' + (i + 1) + ' of ' + n);

    var facts = $('viewer-facts');
    facts.textContent = '';
    (item.facts || []).forEach(function (fact) {
      facts.append(make('dt', { textContent: fact[0] }), make('dd', { textContent: fact[1] }));
    });
    var links = $('viewer-links');
    links.textContent = '';
    (item.links || []).forEach(function (link) {
      var li = make('li');
      li.append(make('a', { textContent: link[0], href: relative(link[1]) }));
      links.append(li);
    });
    var excerpt = $('viewer-excerpt');
    excerpt.textContent = item.excerpt || '';
    excerpt.hidden = !item.excerpt;

    clearTimeout(speakTimer);
    speakTimer = setTimeout(function () { live.textContent = 'image ' + (at + 1) + ' of ' + n; }, SPEAK_MS);
    prefetch(i);
  }

  function prefetch(i) {
    [i + 1, i - 1].forEach(function (j, k) {
      var item = series.items[j];
      if (item && item.image && !item.video) prefetched[k].src = relative(item.image);
    });
  }

  function go(i) {
    i = Math.max(0, Math.min(series.items.length - 1, i));
    if (i !== at) show(i);
  }

  function open(index, button) {
    series = SERIES[index];
    opener = button;
    media();
    $('viewer-series').textContent = series.title;
    viewer.setAttribute('aria-label', series.title);
    slider.max = String(series.items.length);
    slider.parentNode.hidden = series.items.length < 2;
    live.textContent = '';
    if (modal) viewer.showModal(); else viewer.setAttribute('open', '');
    show(0);
    (series.items.length > 1 ? slider : $('viewer-close')).focus();
  }

  function close() {
    if (modal) viewer.close(); else { viewer.removeAttribute('open'); closed(); }
  }

  function closed() {
    [img, video, audio].concat(prefetched).forEach(function (el) { setSource(el, null); });
    clearTimeout(speakTimer);
    if (opener) opener.focus();
  }

  document.querySelectorAll('button[data-series]').forEach(function (button) {
    button.addEventListener('click', function () { open(Number(button.dataset.series), button); });
  });
  viewer.addEventListener('close', closed);
  $('viewer-close').addEventListener('click', close);
  slider.addEventListener('input', function () { go(Number(slider.value) - 1); });

  var KEYS = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: PAGE, PageUp: -PAGE };
  viewer.addEventListener('keydown', function (e) {
    if (!series || e.altKey || e.ctrlKey || e.metaKey) return;
    // the same keys on the slider, the video or a link: the viewer's meaning, one step each
    if (e.key in KEYS) go(at + KEYS[e.key]);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(series.items.length - 1);
    else if (e.key === 'Escape' && !modal) close();  // a modal <dialog> closes itself
    else return;
    e.preventDefault();
  });

  stage.addEventListener('wheel', function (e) {
    e.preventDefault();
    wheel += e.deltaMode === 1 ? e.deltaY * 40 : e.deltaY;  // lines (Firefox's mouse) to px
    if (Math.abs(wheel) >= WHEEL) { go(at + (wheel > 0 ? 1 : -1)); wheel = 0; }
  }, { passive: false });

  // A drag moves one item per SWIPE px along its main axis; up or left is forward,
  // as when scrolling a page.  Two fingers are a pinch-zoom (touch-action allows it).
  stage.addEventListener('touchstart', function (e) {
    var t = e.touches[0], target = e.target;
    var onControls = target === audio ||
      (target === video && t.clientY > video.getBoundingClientRect().bottom - CONTROLS);
    touch = e.touches.length === 1 && !onControls ? { x: t.clientX, y: t.clientY, done: 0 } : null;
  }, { passive: true });
  stage.addEventListener('touchmove', function (e) {
    if (!touch || e.touches.length !== 1) { touch = null; return; }
    var t = e.touches[0], dx = t.clientX - touch.x, dy = t.clientY - touch.y;
    var steps = Math.trunc((Math.abs(dy) >= Math.abs(dx) ? -dy : -dx) / SWIPE);
    if (steps !== touch.done) { go(at + steps - touch.done); touch.done = steps; }
    e.preventDefault();
  }, { passive: false });
  stage.addEventListener('touchend', function () { touch = null; });
})();
