// mesonet page: upload a file to /api/v1/detect?include=crops and show the record.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const TRACK_COLOURS = ["#2457c5", "#8e44ad", "#00897b", "#ef6c00", "#5d4037", "#c2185b"];

const state = {
  maxBytes: 200 * 1024 * 1024,
  defaultThreshold: 0.5,
  objectUrl: null,
  record: null,
  file: null,
  shownFace: null,
  busy: false,
};

// Same scale as mesonet.annotate.score_colour: green (real) -> amber -> red (fake).
function scoreColour(p) {
  p = Math.min(Math.max(Number(p) || 0, 0), 1);
  if (p < 0.5) return `rgb(${Math.round(510 * p)},200,60)`;
  return `rgb(230,${Math.round(400 * (1 - p))},60)`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const pct = (p) => `${Math.round(p * 100)}%`;
const secs = (t) => `${(Number(t) || 0).toFixed(t >= 10 ? 1 : 2)} s`;
// thresholds are shown to two decimals (0.45, not 0.448885)
const thr2 = (t) => (t == null || t === "" ? "" : Number(t).toFixed(2));

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    // a style attribute would be blocked by the Content-Security-Policy; CSSOM is not
    if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  if (text !== null) node.textContent = text;
  return node;
}

// ------------------------------------------------------------------ setup

async function loadSettings() {
  try {
    const health = await (await fetch("/healthz")).json();
    state.maxBytes = health.max_upload_mb * 1024 * 1024;
    $("limit").textContent = `${health.max_upload_mb} MB`;
    $("model-name").textContent = health.model;
    $("opt-frames").max = health.max_frames;
    const models = await (await fetch("/api/v1/models")).json();
    const serving = models.serving || {};
    if (serving.threshold != null) {
      state.defaultThreshold = serving.threshold;
      $("opt-threshold").placeholder = thr2(serving.threshold);
    }
    if (serving.frames != null) $("opt-frames").placeholder = String(serving.frames);
    fillModelPicker(models, serving.name);
    fillVideoPicker(models.video_models || []);
  } catch (err) {
    $("model-name").textContent = "unknown (server not answering?)";
  }
}

// The bundled models, the served one preselected; picking another re-analyses the file.
const SET_NAMES = {
  dfdc_faces_test: "DFDC",
  mesonet_deepfake_val: "Deepfake",
  ffpp_faces_dev: "FF++",
  ffpp_c40_videos: "FF++ c40 videos",
};

function modelAbout(card) {
  if (!card) return "";
  const aucs = Object.entries(SET_NAMES)
    .filter(([key]) => card.metrics && card.metrics[key] && card.metrics[key].auc != null)
    .map(([key, name]) => `${name} ${card.metrics[key].auc.toFixed(2)}`);
  const calibrated = card.calibration && card.calibration.data
    ? `calibrated on ${card.calibration.data}` : "not calibrated";
  const int8 = state.int8 && state.int8.has(card.name)
    ? "; scored in int8 (AUC within 0.005 of these)" : "";
  return (aucs.length ? `ROC AUC: ${aucs.join(", ")}; ` : "") + calibrated + int8;
}

function fillModelPicker(models, served) {
  const select = $("opt-model");
  state.int8 = new Set(models.int8 || []);
  // video models (a card with a sequence) have their own picker
  const frameModels = (models.bundled || []).filter((c) => !c.sequence || !c.sequence.frames);
  const cards = new Map(frameModels.map((c) => [c.name, c]));
  if (served && !cards.has(served)) cards.set(served, (models.serving || {}).card);
  select.replaceChildren();
  for (const [name, card] of [...cards.entries()].sort(([a], [b]) => (a === served ? -1 : b === served ? 1 : 0))) {
    const label = name + (name === models.default ? " (default)" : "");
    const option = el("option", { value: name }, label);
    if (name === served) option.selected = true;
    select.append(option);
  }
  state.servedModel = served;
  state.cards = cards;
  $("model-about").textContent = modelAbout(cards.get(select.value));
  select.addEventListener("change", () => {
    const card = cards.get(select.value);
    $("model-about").textContent = modelAbout(card);
    if (card && card.threshold != null) $("opt-threshold").placeholder = thr2(card.threshold);
    if (state.file && !state.busy) analyse(state.file);
  });
}

// The bundled video models, none preselected; picking one re-analyses the file.
function fillVideoPicker(names) {
  const select = $("opt-video-model");
  for (const name of names) select.append(el("option", { value: name }, name));
  $("video-picker").hidden = names.length === 0;
  $("video-about").hidden = names.length === 0;
  for (const id of ["opt-video-model", "opt-video-rule", "opt-explain"]) {
    $(id).addEventListener("change", () => {
      if (state.file && !state.busy) analyse(state.file);
    });
  }
}

function setupDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) analyse(e.target.files[0]);
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.remove("dragging");
    });
  }
  drop.addEventListener("drop", (e) => {
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) analyse(files[0]);
  });
  // A file dropped beside the zone must not make the browser navigate away.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  let timer = null;
  window.addEventListener("resize", () => {
    clearTimeout(timer);
    timer = setTimeout(() => state.record && renderTimeline(state.record), 150);
  });
}

// ------------------------------------------------------------------ upload

function setStatus(text, { progress = null, spinning = false } = {}) {
  $("status").hidden = false;
  $("state").textContent = text;
  $("spinner").hidden = !spinning;
  const bar = $("progress");
  bar.hidden = progress === null && !spinning;
  if (progress === null) bar.removeAttribute("value");
  else bar.value = progress;
}

function resetResult() {
  state.record = null;
  state.shownFace = null;
  $("verdict").dataset.verdict = "";
  $("verdict").dataset.model = "";
  $("result").hidden = true;
  $("view-box").hidden = true;
  $("timeline-box").hidden = true;
  $("gallery-box").hidden = true;
  $("explain-box").hidden = true;
  $("explain").replaceChildren();
  $("explain-text").textContent = "";
  $("timeline").replaceChildren();
  $("timeline-legend").replaceChildren();
  $("gallery").replaceChildren();
  $("facts").replaceChildren();
  const canvas = $("canvas");
  canvas.dataset.drawn = "0";
  canvas.dataset.source = "";
  canvas.width = 0;
  canvas.height = 0;
  $("box-count").textContent = "0";
  $("view-caption").textContent = "";
}

function formOptions(form) {
  const frames = $("opt-frames").value.trim();
  const threshold = $("opt-threshold").value.trim();
  const aggregate = $("opt-aggregate").value;
  if (frames) form.append("frames", frames);
  if (threshold) form.append("threshold", threshold);
  if (aggregate) form.append("aggregate", aggregate);
  const model = $("opt-model").value;
  if (model && model !== state.servedModel) form.append("model", model);
  const videoModel = $("opt-video-model").value;
  const videoRule = $("opt-video-rule").value;
  if (videoModel) form.append("video_model", videoModel);
  if (videoModel && videoRule) form.append("video_rule", videoRule);
  if ($("opt-explain").checked) form.append("explain", "true");
}

function analyse(file) {
  if (state.busy) return;
  resetResult();
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(file);
  state.file = file;
  if (file.size > state.maxBytes) {
    showError(`${file.name} is too large: the limit is ${$("limit").textContent} per file.`);
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  formOptions(form);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/v1/detect?include=crops");
  xhr.responseType = "json";
  state.busy = true;
  setStatus(`Uploading ${file.name}… 0%`, { progress: 0 });
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    const p = Math.round((100 * e.loaded) / e.total);
    setStatus(`Uploading ${file.name}… ${p}%`, { progress: p });
  };
  xhr.upload.onload = () => {
    const what = file.type.startsWith("video") ? "video" : "file";
    setStatus(`Analysing the ${what}: finding faces and scoring them…`, { spinning: true });
  };
  xhr.onload = () => {
    state.busy = false;
    $("status").hidden = true;
    const body = xhr.response;
    if (xhr.status === 200 && body) {
      render(body);
    } else {
      const detail = body && body.detail ? body.detail : `the server answered ${xhr.status}`;
      showError(detail, xhr.status);
    }
  };
  xhr.onerror = () => {
    state.busy = false;
    $("status").hidden = true;
    showError("The upload failed: the server could not be reached or closed the connection.");
  };
  xhr.send(form);
}

function showError(message, status = null) {
  $("status").hidden = true;
  $("result").hidden = false;
  const verdict = $("verdict");
  verdict.className = "verdict error";
  $("verdict-text").textContent = status === 503 ? "The server is busy" : "Could not analyse this file";
  $("verdict-sub").textContent = message;
}

// ------------------------------------------------------------------ verdict

function render(record) {
  state.record = record;
  $("result").hidden = false;
  const verdict = $("verdict");
  const p = record.fake_probability;
  if (record.status === "ok") {
    const words = record.verdict || (record.label === "fake" ? "likely forged" : "likely real");
    const kind = { "likely forged": "fake", "likely real": "real", uncertain: "uncertain" }[words];
    verdict.className = `verdict ${kind}`;
    verdict.dataset.verdict = words;
    verdict.dataset.model = record.model;
    const text = words.charAt(0).toUpperCase() + words.slice(1);
    $("verdict-text").textContent = `${text} — ${pct(p)} fake probability`;
    const n = record.faces.length;
    $("verdict-sub").textContent = record.kind === "video"
      ? videoSummary(record)
      : `${plural(n, "face")}; the most suspicious one decides.`;
  } else {
    verdict.className = "verdict none";
    $("verdict-text").textContent = "No face found";
    // why: the file smaller than the smallest face looked for, or none found
    const why = record.error && record.error !== "no face found"
      ? `${record.error.charAt(0).toUpperCase()}${record.error.slice(1)}. ` : "";
    $("verdict-sub").textContent = `${why}MesoNet judges faces: nothing was scored in this ` +
      `${record.kind || "file"}. Try a sharper or closer shot.`;
  }
  renderFacts(record);
  renderTimeline(record);
  renderGallery(record);
  renderExplain(record);
  const frame = record.annotated && record.annotated.frame;
  showFace(frame ? frame.face : null);
}

const decisiveTrack = (record) => (record.tracks || []).find((t) => t.decisive) || null;

// "2 face tracks over 32 frames; track 0 (100% of the frames) decides, ..."
function videoSummary(record) {
  const tracks = record.tracks || [];
  const where = `${plural(tracks.length, "face track")} over ${plural(record.frames_analyzed, "frame")}`;
  const decisive = decisiveTrack(record);
  if (!decisive) return `${where}.`;
  const eligible = tracks.filter((t) => t.eligible).length;
  const among = eligible > 1 ? `, the most suspicious of the ${eligible} that cover enough of the video` : "";
  const short = tracks.length - eligible;
  const rest = short ? `; ${plural(short, "other track")} reported, not deciding` : "";
  return `${where}; track ${decisive.id} (${pct(decisive.share)} of the frames) decides${among}${rest}.`;
}

function trackRole(track) {
  if (track.decisive) return "decides";
  return track.eligible ? "could decide" : "too short or small to decide";
}

// A track's two kinds of evidence, when a video model scored it.
function evidenceText(track) {
  if (track.temporal_probability == null) return "";
  return ` (frames ${pct(track.frame_probability)}, temporal ${pct(track.temporal_probability)})`;
}

function renderFacts(record) {
  const facts = $("facts");
  const add = (k, v) => {
    facts.append(el("dt", {}, k), el("dd", {}, v));
  };
  add("File", record.path);
  add("Model", record.model);
  if (record.status === "ok") add("Label", `${record.label} (${record.verdict || "no verdict"})`);
  if (record.kind === "video") {
    add("Video", `${secs(record.duration_s)}, ${record.frames_analyzed} frames analysed`);
    add("Video score", `${record.aggregation} over each face track; the tracks that cover enough ` +
      "of the frames (else the longest) can decide, and the most suspicious of them does");
    const tracks = record.tracks || [];
    if (tracks.length) {
      add("Tracks", tracks.map((t) => `#${t.id}: ${plural(t.frames, "frame")} (${pct(t.share)}), ` +
        `${Math.round(t.median_size)} px, ${pct(t.fake_probability)} fake${evidenceText(t)}, ` +
        trackRole(t)).join("; "));
    }
    if (record.video_model) {
      add("Video model", `${record.video_model}, rule ${record.video_rule}; ` +
        `decided by ${record.evidence || "frames"} evidence`);
    }
    const segs = record.segments || [];
    add("Flagged", segs.length
      ? segs.map((s) => `${secs(s.start_s)}–${secs(s.end_s)} (track ${s.track}, ${pct(s.fake_probability)})`).join("; ")
      : "no segment");
  }
  add("Threshold", thr2(threshold(record)));
}

const threshold = (record) =>
  record.annotated && record.annotated.threshold != null
    ? record.annotated.threshold
    : state.defaultThreshold;

// ------------------------------------------------------------------ picture with boxes

function drawBoxes(ctx, faces, scale, t) {
  // Sizes in screen pixels: the canvas is shown shrunk on small screens.
  const shown = ctx.canvas.getBoundingClientRect().width || ctx.canvas.width;
  const k = ctx.canvas.width / shown;
  const line = Math.max(2, Math.round(2 * k));
  ctx.font = `${Math.round(13 * k)}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const face of faces) {
    const [x, y, bw, bh] = face.box.map((v) => v * scale);
    const colour = scoreColour(face.fake_probability);
    ctx.lineWidth = line;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, bw, bh);
    let label = `${face.fake_probability >= t ? "fake" : "real"} ${face.fake_probability.toFixed(2)}`;
    if (face.track != null) label += ` #${face.track}`;
    const m = ctx.measureText(label);
    const th = parseInt(ctx.font, 10) + 6;
    const top = Math.max(0, y - th);
    ctx.fillStyle = colour;
    ctx.fillRect(x - line / 2, top, m.width + 10, th);
    ctx.fillStyle = "#000";
    ctx.fillText(label, x + 4, top + 3);
  }
  return faces.length;
}

function paint(source, width, height, faces, scale, caption, origin) {
  const canvas = $("canvas");
  $("view-box").hidden = false; // laid out before drawing, so label sizes can be measured
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(source, 0, 0, width, height);
  const n = drawBoxes(ctx, faces, scale, threshold(state.record));
  canvas.dataset.drawn = "1";
  canvas.dataset.source = origin; // "upload" (decoded here) or "server" (its JPEG)
  $("box-count").textContent = String(n);
  $("view-caption").textContent = caption;
}

function facesOnFrame(record, face) {
  if (!face) return [];
  if (record.kind !== "video") return record.faces;
  return record.faces.filter((f) => f.frame === face.frame);
}

// Show the picture (image, or the video frame of face ``index``) with its faces boxed.
function showFace(index) {
  const record = state.record;
  const face = index == null ? null : record.faces[index];
  state.shownFace = index;
  const faces = facesOnFrame(record, face);
  const fallback = () => paintServerFrame(record, index);
  if (record.kind === "video") {
    if (!face) {
      $("view-box").hidden = true;
      return;
    }
    const caption = `Frame at ${secs(face.time_s)}` +
      (index === (record.annotated && record.annotated.frame && record.annotated.frame.face)
        ? " (the most suspicious face of the deciding track)" : "");
    grabVideoFrame(face.time_s)
      .then((video) => paint(video, video.videoWidth, video.videoHeight, faces, 1, caption, "upload"))
      .catch(fallback);
    markTimeline(face.time_s);
  } else {
    const img = new Image();
    img.onload = () => {
      const scale = Math.min(1, 1600 / Math.max(img.naturalWidth, img.naturalHeight));
      const w = Math.round(img.naturalWidth * scale);
      const h = Math.round(img.naturalHeight * scale);
      const caption = faces.length ? "Boxes coloured by fake probability" : "";
      paint(img, w, h, faces, scale, caption, "upload");
    };
    img.onerror = fallback;
    img.src = state.objectUrl;
  }
}

// The server's JPEG of the most suspicious frame, for media the browser cannot decode.
function paintServerFrame(record, index) {
  const frame = record.annotated && record.annotated.frame;
  if (!frame || (index != null && record.kind === "video" &&
      record.faces[index].frame !== record.faces[frame.face].frame)) {
    $("view-caption").textContent = "This browser cannot show that frame.";
    $("view-box").hidden = !frame;
    return;
  }
  const img = new Image();
  img.onload = () => {
    const faces = facesOnFrame(record, record.faces[frame.face]);
    const caption = record.kind === "video" ? `Frame at ${secs(frame.time_s)} (the most suspicious face of the deciding track)` : "";
    const scale = img.naturalWidth / frame.width;
    paint(img, img.naturalWidth, img.naturalHeight, faces, scale, caption, "server");
  };
  img.src = `data:image/jpeg;base64,${frame.jpeg}`;
}

let videoEl = null;

// Seek a <video> of the uploaded file to ``time`` and resolve once that frame is ready.
function grabVideoFrame(time) {
  return new Promise((resolve, reject) => {
    if (!videoEl || videoEl.dataset.src !== state.objectUrl) {
      videoEl = document.createElement("video");
      videoEl.muted = true;
      videoEl.playsInline = true;
      videoEl.preload = "auto";
      videoEl.dataset.src = state.objectUrl;
      videoEl.src = state.objectUrl;
    }
    const video = videoEl;
    const timer = setTimeout(() => done(new Error("video frame timed out")), 8000);
    function done(err) {
      clearTimeout(timer);
      video.removeEventListener("seeked", onSeeked);
      video.removeEventListener("error", onError);
      video.removeEventListener("loadeddata", onReady);
      if (err) reject(err);
      else resolve(video);
    }
    const onSeeked = () => (video.videoWidth ? done() : done(new Error("no picture")));
    const onError = () => done(new Error("video not decodable here"));
    const onReady = () => {
      const end = Number.isFinite(video.duration) ? Math.max(video.duration - 0.001, 0) : time;
      video.currentTime = Math.min(time + 0.001, end);
    };
    video.addEventListener("seeked", onSeeked);
    video.addEventListener("error", onError);
    if (video.error) onError();
    else if (video.readyState >= 2) onReady();
    else video.addEventListener("loadeddata", onReady);
  });
}

// ------------------------------------------------------------------ timeline

function renderTimeline(record) {
  const box = $("timeline-box");
  const holder = $("timeline");
  holder.replaceChildren();
  $("timeline-legend").replaceChildren();
  if (record.kind !== "video" || !record.faces.length) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const width = Math.max(holder.clientWidth || 600, 260);
  const height = width < 480 ? 150 : 190;
  const pad = { left: 34, right: 16, top: 10, bottom: 26 };
  const duration = Math.max(record.duration_s || 0, ...record.faces.map((f) => f.time_s || 0), 1e-3);
  const x = (t) => pad.left + (Math.min(Math.max(t, 0), duration) / duration) * (width - pad.left - pad.right);
  const y = (p) => pad.top + (1 - p) * (height - pad.top - pad.bottom);
  const svg = el("svg:svg", {
    viewBox: `0 0 ${width} ${height}`,
    width: String(width),
    height: String(height),
    role: "img",
    "aria-label": "Fake probability of each face track over time",
  });
  svg.append(el("svg:rect", {
    x: pad.left, y: pad.top, width: width - pad.left - pad.right,
    height: height - pad.top - pad.bottom, fill: "#fafbfc", stroke: "#d9dde3",
  }));
  const silent = new Set((record.tracks || []).filter((t) => !t.eligible).map((t) => t.id));
  for (const s of record.segments || []) {
    // a segment of a track that cannot decide the video is shaded fainter
    const seg = el("svg:rect", {
      class: silent.has(s.track) ? "segment minor" : "segment", x: x(s.start_s), y: pad.top,
      width: Math.max(x(s.end_s) - x(s.start_s), 2), height: height - pad.top - pad.bottom,
      fill: silent.has(s.track) ? "rgba(198,40,40,0.07)" : "rgba(198,40,40,0.18)",
    });
    seg.append(el("svg:title", {}, `flagged ${secs(s.start_s)}–${secs(s.end_s)}, track ${s.track}, ${pct(s.fake_probability)}`));
    svg.append(seg);
  }
  for (const p of [0, 0.5, 1]) {
    svg.append(el("svg:text", { x: pad.left - 6, y: y(p) + 4, "text-anchor": "end", fill: "#5d6470" }, p.toFixed(1)));
  }
  const step = niceStep(duration / (width < 480 ? 4 : 7));
  const digits = step < 1 ? Math.ceil(-Math.log10(step) - 1e-9) : 0;
  for (let t = 0; t <= duration + 1e-9; t += step) {
    svg.append(el("svg:line", { x1: x(t), x2: x(t), y1: height - pad.bottom, y2: height - pad.bottom + 4, stroke: "#8a9099" }));
    svg.append(el("svg:text", { x: x(t), y: height - 8, "text-anchor": "middle", fill: "#5d6470" }, `${t.toFixed(digits)}s`));
  }
  const t = threshold(record);
  svg.append(el("svg:line", {
    class: "threshold", x1: pad.left, x2: width - pad.right, y1: y(t), y2: y(t),
    stroke: "#c62828", "stroke-dasharray": "5 4", "stroke-width": 1.5,
  }));
  const tracks = new Map();
  record.faces.forEach((f, i) => {
    const k = f.track ?? 0;
    if (!tracks.has(k)) tracks.set(k, []);
    tracks.get(k).push([f, i]);
  });
  const legend = $("timeline-legend");
  const summaries = new Map((record.tracks || []).map((t) => [t.id, t]));
  const decisive = decisiveTrack(record);
  // the decisive track is drawn last (on top) and thickest; tracks that cannot decide dashed
  const order = [...tracks.entries()].sort((a, b) =>
    (decisive && a[0] === decisive.id) - (decisive && b[0] === decisive.id) || a[0] - b[0]);
  for (const [k, faces] of order) {
    faces.sort((a, b) => a[0].time_s - b[0].time_s);
    const colour = TRACK_COLOURS[k % TRACK_COLOURS.length];
    const summary = summaries.get(k);
    const deciding = Boolean(summary && summary.decisive);
    const line = {
      class: deciding ? "track decisive" : "track", fill: "none", stroke: colour,
      "stroke-width": deciding ? 3.5 : 1.5, "stroke-linejoin": "round",
      points: faces.map(([f]) => `${x(f.time_s)},${y(f.fake_probability)}`).join(" "),
    };
    if (summary && !summary.eligible) {
      line["stroke-dasharray"] = "4 3";
      line.opacity = 0.7;
    }
    if (summary && summary.windows) {
      // the video model's score of each 24-frame window: a bar over the time it spans, in
      // the track's colour, outlined (as in the timeline PNG); drawn beneath the frame
      // scores' dots, which stay clickable
      for (const w of summary.windows) {
        for (const [stroke, widthPx] of [["#1c1f24", deciding ? 9 : 7], [colour, deciding ? 6 : 4]]) {
          const bar = el("svg:line", {
            class: stroke === colour ? "window" : "window-outline", x1: x(w.start_s), x2: x(w.end_s),
            y1: y(w.temporal_probability), y2: y(w.temporal_probability),
            stroke, "stroke-width": widthPx, "data-track": String(k),
          });
          bar.append(el("svg:title", {}, `track ${k} · temporal ${secs(w.start_s)}–${secs(w.end_s)} · ${pct(w.temporal_probability)} fake`));
          svg.append(bar);
        }
      }
    }
    if (summary) line["data-track"] = String(k);
    svg.append(el("svg:polyline", line));
    for (const [f, i] of faces) {
      const dot = el("svg:circle", {
        class: "point", cx: x(f.time_s), cy: y(f.fake_probability), r: 4,
        fill: scoreColour(f.fake_probability), stroke: colour, "stroke-width": 1.5,
      });
      dot.append(el("svg:title", {}, `track ${k}${deciding ? " (decides)" : ""} · ${secs(f.time_s)} · ${pct(f.fake_probability)} fake`));
      dot.addEventListener("click", () => showFace(i));
      svg.append(dot);
    }
    const item = el("span", deciding ? { class: "decisive" } : {});
    const role = summary ? ` (${trackRole(summary)})` : "";
    item.append(el("span", { class: "swatch", style: `background:${colour}` }), `track ${k}${role}`);
    legend.append(item);
    if (summary && summary.windows && summary.windows.length) {
      const n = summary.windows.length;
      const windows = el("span", { class: "temporal" });
      windows.append(
        el("span", { class: "swatch window", style: `background:${colour}` }),
        `track ${k} temporal (${n} window${n > 1 ? "s" : ""})`,
      );
      legend.append(windows);
    }
  }
  const flag = el("span");
  flag.append(el("span", { class: "swatch flag" }), "flagged");
  const thr = el("span");
  thr.append(el("span", { class: "swatch", style: "background:#c62828" }), `threshold ${thr2(t)}`);
  legend.append(flag, thr);
  svg.append(el("svg:line", {
    id: "cursor", x1: -10, x2: -10, y1: pad.top, y2: height - pad.bottom, stroke: "#1c1f24", "stroke-width": 1,
  }));
  svg.dataset.x0 = pad.left;
  svg.dataset.scale = (width - pad.left - pad.right) / duration;
  holder.append(svg);
  if (state.shownFace != null) markTimeline(record.faces[state.shownFace].time_s);
}

// 1, 2 or 5 times a power of ten, at least ``raw``: readable tick spacing.
function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-6)));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function markTimeline(time) {
  const svg = $("timeline").querySelector("svg");
  const cursor = svg && svg.querySelector("#cursor");
  if (!cursor) return;
  const cx = Number(svg.dataset.x0) + Number(svg.dataset.scale) * time;
  cursor.setAttribute("x1", cx);
  cursor.setAttribute("x2", cx);
}

// ------------------------------------------------------------------ gallery

function renderGallery(record) {
  const crops = (record.annotated && record.annotated.crops) || [];
  const gallery = $("gallery");
  gallery.replaceChildren();
  $("gallery-box").hidden = !crops.length;
  const multiTrack = new Set(record.faces.map((f) => f.track)).size > 1;
  for (const crop of crops) {
    const face = record.faces[crop.face];
    const fig = el("figure", { title: `fake probability ${face.fake_probability.toFixed(3)}` });
    const img = el("img", { src: `data:image/jpeg;base64,${crop.jpeg}`, alt: `face ${crop.face + 1}` });
    img.style.borderColor = scoreColour(face.fake_probability);
    let caption = pct(face.fake_probability);
    if (record.kind === "video") caption += ` · ${Number(face.time_s).toFixed(1)}s`;
    if (multiTrack) caption += ` #${face.track}`;
    fig.append(img, el("figcaption", {}, caption));
    fig.addEventListener("click", () => showFace(crop.face));
    gallery.append(fig);
  }
}

// ------------------------------------------------------------------ evidence maps

// Each explained face's crop with its evidence map (explain=true), and in words where the
// evidence of the most suspicious one is.
function renderExplain(record) {
  const faces = record.faces
    .map((face, i) => [face, i])
    .filter(([face]) => face.explain && face.explain.map)
    .sort((a, b) => b[0].fake_probability - a[0].fake_probability);
  const box = $("explain-box");
  box.hidden = !faces.length;
  if (!faces.length) return;
  const where = (e) => e.peak_region || "ringed region";
  const at = (e) => (e.peak_region === "outside the face" ? e.peak_region : `at the ${where(e)}`);
  const [top] = faces[0];
  const who = record.kind === "video" ? "the deciding face's most suspicious frame" : (faces.length > 1 ? "the most suspicious face" : "this face");
  // in a file judged likely real, the map shows what little evidence there is
  const strongest = record.verdict !== "likely real"
    ? "the evidence is strongest" : "which looks real, what evidence of forgery there is lies mostly";
  $("explain-text").textContent = top.explain.peak_logit_drop > 0
    ? `On ${who}, ${strongest} ${at(top.explain)}` +
      ` (hiding it lowers the score by ${top.explain.peak_logit_drop.toFixed(2)} in log-odds).`
    : `On ${who}, no region pushes the score towards forged.`;
  for (const [face, i] of faces) {
    const fig = el("figure", { title: `fake probability ${face.fake_probability.toFixed(3)}` });
    const img = el("img", { src: face.explain.map, alt: `evidence map of face ${i + 1}` });
    let caption = `${where(face.explain)} · ${pct(face.fake_probability)}`;
    if (record.kind === "video") caption += ` · ${Number(face.time_s).toFixed(1)}s`;
    fig.append(img, el("figcaption", {}, caption));
    fig.addEventListener("click", () => showFace(i));
    $("explain").append(fig);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupDrop();
  loadSettings();
});
