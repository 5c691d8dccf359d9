
(function () {
  'use strict';
  var SERIES = JSON.parse(document.getElementById('index-data').textContent);
  var PAGE = 10;      // PageUp/PageDown step, in items
  var WHEEL = 50;     // px of wheel per item: a mouse notch is 100-120, a trackpad sends a few at a time
  var SWIPE = 24;     // px of finger travel per item
  var CONTROLS = 64;  // px at the foot of a <video> left to its own controls when swiping
  var SPEAK_MS = 250; // a wheel spun through 100 slices should not queue 100 announcements
  var ZOOM_STEP = 1.25; // one click, key or wheel notch of zoom
  var SCALE_SHARE = 0.2; // a scale bar about a fifth of the picture's visible width

  var $ = function (id) { return document.getElementById(id); };
  var viewer = $('viewer'), stage = $('viewer-stage'), slider = $('viewer-slider');
  var live = $('viewer-live'), modal = typeof viewer.showModal === 'function';
  var series = null, at = 0, opener = null, wheel = 0, touch = null, speakTimer = 0;
  var img = null, video = null, audio = null, none = null, frame = null;
  var overlay = $('viewer-overlay');
  var zoom = 1, panX = 0, panY = 0, drag = null, pinch = null;  // zoom 1: the picture fits the stage
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
    frame = make('iframe', { title: 'Document', hidden: true });
    stage.append(img, video, frame, none, audio);
    img.addEventListener('load', layout);
    video.addEventListener('loadedmetadata', layout);
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
    // a report's page or a document, shown in place; a report (HTML) without scripts or origin
    var page = picture || item.video ? null : item.page;
    if (page && /\.html?$/i.test(page)) frame.setAttribute('sandbox', ''); else frame.removeAttribute('sandbox');
    setSource(frame, page);
    none.hidden = !!(picture || item.video || item.audio || page);
    $('viewer-zoom').hidden = !picture;  // pictures zoom; a video, a sound or a page do not
    layout();

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
    [img, video, audio, frame].concat(prefetched).forEach(function (el) { setSource(el, null); });
    zoomTo(1);
    clearTimeout(speakTimer);
    if (opener) opener.focus();
  }

  // Zoom and pan (pictures), and what a radiology viewer draws over them: the patient
  // direction at each edge and a scale bar, both HTML over the image, its pixels untouched.
  function shownMedia() { return !img.hidden ? img : !video.hidden ? video : null; }

  function naturalSize(el) { return el === img ? [img.naturalWidth, img.naturalHeight] : [video.videoWidth, video.videoHeight]; }

  function fitScale(el) {  // screen px per picture px when it fits (object-fit: contain)
    var n = naturalSize(el);
    return n[0] && n[1] ? Math.min(el.offsetWidth / n[0], el.offsetHeight / n[1]) : 0;
  }

  function zoomTo(z, x, y) {  // x, y: the stage point that stays put (default: the centre)
    var fit = img && !img.hidden ? fitScale(img) : 0;
    // from the fitted size (or 1:1, when a small picture fits enlarged) to 8x or 4 screen px per image px
    var least = fit ? Math.min(1, 1 / fit) : 1, most = fit ? Math.max(8, 4 / fit) : 8;
    z = Math.max(least, Math.min(most, z));
    if (z <= 1) { panX = panY = 0; } else if (img) {
      var cx = (x === undefined ? stage.clientWidth / 2 : x) - (img.offsetLeft + img.offsetWidth / 2);
      var cy = (y === undefined ? stage.clientHeight / 2 : y) - (img.offsetTop + img.offsetHeight / 2);
      panX = cx - (cx - panX) * z / zoom;
      panY = cy - (cy - panY) * z / zoom;
    }
    zoom = z;
    layout();
  }

  function niceLength(mm) {  // the largest 1, 2 or 5 x 10^k mm not above `mm`
    var power = Math.pow(10, Math.floor(Math.log(mm) / Math.LN10)), nice = power;
    [2, 5, 10].forEach(function (m) { if (m * power <= mm) nice = m * power; });
    return nice;
  }

  function layout() {
    var item = series && series.items[at], el = img && shownMedia();
    overlay.hidden = true;
    if (img) img.style.transform = zoom === 1 ? '' : 'translate(' + panX + 'px,' + panY + 'px) scale(' + zoom + ')';
    $('viewer-zoom-one').setAttribute('aria-pressed', String(!!(el && Math.abs(fitScale(el) * zoom - 1) < 0.01)));
    if (!el || !item || !(item.orient || item.mm || item.window)) return;
    var n = naturalSize(el), fit = fitScale(el);
    if (!fit) return;
    var scale = fit * (el === img ? zoom : 1), w = n[0] * scale, h = n[1] * scale;
    var cx = el.offsetLeft + el.offsetWidth / 2 + (el === img ? panX : 0);
    var cy = el.offsetTop + el.offsetHeight / 2 + (el === img ? panY : 0);
    var left = Math.max(0, cx - w / 2), top = Math.max(0, cy - h / 2);
    var right = Math.min(stage.clientWidth, cx + w / 2), bottom = Math.min(stage.clientHeight, cy + h / 2);
    if (el === video) bottom -= CONTROLS;  // above the video's own controls
    overlay.style.left = left + 'px'; overlay.style.top = top + 'px';
    overlay.style.width = Math.max(0, right - left) + 'px'; overlay.style.height = Math.max(0, bottom - top) + 'px';
    ['left', 'top', 'right', 'bottom'].forEach(function (edge, k) {
      overlay.querySelector('.' + edge).textContent = item.orient ? item.orient[k] : '';
    });
    overlay.querySelector('.window').textContent = item.window || '';
    var bar = overlay.querySelector('.scale');
    bar.hidden = !item.mm;
    if (item.mm) {  // mm[1]: the spacing between columns, along a row (PS3.3 10.7.1.3)
      var mmPerPx = item.mm[1] * (item.columns ? item.columns / n[0] : 1) / scale;
      var mm = niceLength(SCALE_SHARE * (right - left) * mmPerPx);
      bar.querySelector('.bar').style.width = (mm / mmPerPx) + 'px';
      bar.querySelector('.label').textContent = (mm >= 10 && mm % 10 === 0 ? mm / 10 + ' cm' : mm + ' mm') +
        (item.mm_note ? ' (' + item.mm_note + ')' : '');
    }
    overlay.hidden = false;
  }

  document.querySelectorAll('button[data-series]').forEach(function (button) {
    button.addEventListener('click', function () { open(Number(button.dataset.series), button); });
  });
  viewer.addEventListener('close', closed);
  $('viewer-close').addEventListener('click', close);
  slider.addEventListener('input', function () { go(Number(slider.value) - 1); });
  $('viewer-zoom-in').addEventListener('click', function () { zoomTo(zoom * ZOOM_STEP); });
  $('viewer-zoom-out').addEventListener('click', function () { zoomTo(zoom / ZOOM_STEP); });
  $('viewer-zoom-fit').addEventListener('click', function () { zoomTo(1); });
  $('viewer-zoom-one').addEventListener('click', function () { if (img && !img.hidden) zoomTo(1 / fitScale(img)); });
  window.addEventListener('resize', layout);
  stage.addEventListener('dblclick', function (e) {  // 1:1 at the point, and back to fit
    if (!img || img.hidden) return;
    var r = stage.getBoundingClientRect();
    zoomTo(zoom === 1 ? 1 / fitScale(img) : 1, e.clientX - r.left, e.clientY - r.top);
  });
  stage.addEventListener('pointerdown', function (e) {
    if (zoom === 1 || e.pointerType === 'touch' || e.target !== img) return;
    drag = { x: e.clientX - panX, y: e.clientY - panY };
    stage.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  stage.addEventListener('pointermove', function (e) {
    if (!drag) return;
    panX = e.clientX - drag.x; panY = e.clientY - drag.y;
    layout();
  });
  stage.addEventListener('pointerup', function () { drag = null; });

  var KEYS = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: PAGE, PageUp: -PAGE };
  viewer.addEventListener('keydown', function (e) {
    if (!series || e.altKey || e.ctrlKey || e.metaKey) return;
    // the same keys on the slider, the video or a link: the viewer's meaning, one step each
    if (e.key in KEYS) go(at + KEYS[e.key]);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(series.items.length - 1);
    else if (e.key === 'Escape' && !modal) close();  // a modal <dialog> closes itself
    else if (e.key === '+' || e.key === '=') zoomTo(zoom * ZOOM_STEP);
    else if (e.key === '-') zoomTo(zoom / ZOOM_STEP);
    else if (e.key === '0') zoomTo(1);
    else if (e.key === '1' && img && !img.hidden) zoomTo(1 / fitScale(img));
    else return;
    e.preventDefault();
  });

  stage.addEventListener('wheel', function (e) {
    e.preventDefault();
    if (e.ctrlKey) {  // Ctrl + wheel, and a trackpad's pinch, which browsers send as one
      var r = stage.getBoundingClientRect();
      zoomTo(zoom * Math.pow(ZOOM_STEP, -e.deltaY / 100), e.clientX - r.left, e.clientY - r.top);
      return;
    }
    wheel += e.deltaMode === 1 ? e.deltaY * 40 : e.deltaY;  // lines (Firefox's mouse) to px
    if (Math.abs(wheel) >= WHEEL) { go(at + (wheel > 0 ? 1 : -1)); wheel = 0; }
  }, { passive: false });

  // A drag moves one item per SWIPE px along its main axis; up or left is forward,
  // as when scrolling a page; on a zoomed picture it pans.  Two fingers zoom (pinch).
  function spread(touches) {
    return Math.hypot(touches[0].clientX - touches[1].clientX, touches[0].clientY - touches[1].clientY);
  }
  stage.addEventListener('touchstart', function (e) {
    var t = e.touches[0], target = e.target;
    pinch = e.touches.length === 2 ? { d: spread(e.touches), zoom: zoom } : null;
    if (zoom > 1 && e.touches.length === 1) { touch = { pan: true, x: t.clientX - panX, y: t.clientY - panY }; return; }
    var onControls = target === audio ||
      (target === video && t.clientY > video.getBoundingClientRect().bottom - CONTROLS);
    touch = e.touches.length === 1 && !onControls ? { x: t.clientX, y: t.clientY, done: 0 } : null;
  }, { passive: true });
  stage.addEventListener('touchmove', function (e) {
    if (pinch && e.touches.length === 2) {
      var r = stage.getBoundingClientRect();
      zoomTo(pinch.zoom * spread(e.touches) / pinch.d, (e.touches[0].clientX + e.touches[1].clientX) / 2 - r.left,
             (e.touches[0].clientY + e.touches[1].clientY) / 2 - r.top);
      e.preventDefault();
      return;
    }
    if (touch && touch.pan && e.touches.length === 1) {
      panX = e.touches[0].clientX - touch.x; panY = e.touches[0].clientY - touch.y;
      layout();
      e.preventDefault();
      return;
    }
    if (!touch || e.touches.length !== 1) { touch = null; return; }
    var t = e.touches[0], dx = t.clientX - touch.x, dy = t.clientY - touch.y;
    var steps = Math.trunc((Math.abs(dy) >= Math.abs(dx) ? -dy : -dx) / SWIPE);
    if (steps !== touch.done) { go(at + steps - touch.done); touch.done = steps; }
    e.preventDefault();
  }, { passive: false });
  stage.addEventListener('touchend', function () { touch = null; pinch = null; });
})();
