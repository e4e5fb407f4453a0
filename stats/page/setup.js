'use strict';
// Builds the setup view from /api/preview with createElement, textContent and setAttribute only.
// The same words as names.CLASS_LABELS and the status page (tests/test_page.py checks).
const LABELS = {correct: 'worn correctly', nose: 'nose exposed', nose_mouth: 'mask on the chin (nose and mouth exposed)',
  chin: 'chin exposed', no_mask: 'no mask'};
function clock(seconds) {  // 24 h, as on the status page
  const time = new Date(seconds * 1000);
  return [time.getHours(), time.getMinutes(), time.getSeconds()].map(n => String(n).padStart(2, '0')).join(':');
}
function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}
function card(name, camera) {
  const article = el('article', {class: 'card preview', 'data-camera': name});
  article.appendChild(el('h3', {}, name));
  const figure = el('figure');
  figure.appendChild(el('img', {src: `/preview/${encodeURIComponent(name)}.jpg?t=${camera.taken}`,
    alt: `recent frame of ${name}, faces pixelated`, width: camera.width, height: camera.height}));
  const counts = {};
  for (const face of camera.faces) counts[face.class] = (counts[face.class] || 0) + 1;
  const faces = Object.entries(counts).map(([k, n]) => `${n} ${LABELS[k] ?? k} (${k})`).join(', ') || 'none';
  const zones = Object.keys(camera.zones).join(', ') || 'none (the whole frame is zone "all")';
  const caption = el('figcaption', {class: 'basis'},
    `${clock(camera.taken)} · faces: ${faces} · zones: ${zones}`);
  figure.appendChild(caption);
  article.appendChild(figure);
  return article;
}
async function refresh() {
  try {
    const status = await (await fetch('/api/preview')).json();
    const cards = Object.entries(status.cameras).map(([name, camera]) => card(name, camera));
    document.getElementById('cameras').replaceChildren(...cards);
    const count = cards.length === 1 ? '1 camera' : `${cards.length} cameras`;
    document.getElementById('summary').textContent = cards.length ? count : 'no frame yet';
  } catch (error) {
    document.getElementById('summary').textContent = `server unreachable (${error.message})`;
  }
}
refresh();
setInterval(refresh, 2000);
