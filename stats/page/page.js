'use strict';
// Builds the page from /api/status with createElement, textContent and setAttribute only: every name and URL
// comes from config or Redis, and is shown as the text it is, never parsed as markup.
const CLASSES = ['correct', 'nose', 'nose_mouth', 'chin', 'no_mask'];
const LABELS = {correct: 'worn correctly', nose: 'nose out', nose_mouth: 'nose and mouth out', chin: 'on the chin',
  no_mask: 'no mask'};
const COLOURS = {correct: '#1e8a4c', nose: '#e0a800', nose_mouth: '#e67e22', chin: '#c0392b', no_mask: '#6d1b1b'};
const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 300, HEIGHT = 90, LEFT = 28, BOTTOM = 14;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}
function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}
function percent(share) {
  return share === null || share === undefined ? '–' : (100 * Number(share)).toFixed(1) + ' %';
}
function clock(minute) {
  return new Date(minute * 60000).toTimeString().slice(0, 5);
}
function chartFrame(label) {
  const svg = svgEl('svg', {viewBox: `0 0 ${WIDTH} ${HEIGHT + BOTTOM}`, role: 'img', 'aria-label': label});
  svg.appendChild(svgEl('line', {x1: LEFT, y1: HEIGHT, x2: WIDTH, y2: HEIGHT, stroke: '#bbb'}));
  return svg;
}
function xOf(index, count) {
  return LEFT + (count > 1 ? index / (count - 1) : 0.5) * (WIDTH - LEFT - 4);
}
function timeAxis(svg, chart, count) {
  svg.appendChild(svgEl('text', {x: LEFT, y: HEIGHT + 11}, clock(chart.start_minute)));
  svg.appendChild(svgEl('text', {x: WIDTH - 24, y: HEIGHT + 11}, 'now'));
}

// Compliance minute by minute: a point for each minute with faces (its title says how many), the threshold dashed.
function complianceChart(chart, threshold) {
  const svg = chartFrame('compliance per minute, last hour');
  const count = chart.faces.length;
  for (const level of [0, 0.5, 1]) {
    svg.appendChild(svgEl('text', {x: 0, y: HEIGHT - level * (HEIGHT - 6) + 3}, (100 * level) + '%'));
  }
  const yThreshold = HEIGHT - threshold * (HEIGHT - 6);
  svg.appendChild(svgEl('line', {x1: LEFT, y1: yThreshold, x2: WIDTH, y2: yThreshold, stroke: '#c62828',
    'stroke-dasharray': '4 3', class: 'threshold'}));
  const points = [];
  chart.faces.forEach((faces, index) => {
    if (!faces) return;
    const share = chart.correct[index] / faces;
    points.push([xOf(index, count), HEIGHT - share * (HEIGHT - 6), share, faces, index]);
  });
  if (points.length > 1) {
    svg.appendChild(svgEl('polyline', {points: points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '),
      fill: 'none', stroke: '#335', 'stroke-width': 1.2}));
  }
  for (const [x, y, share, faces, index] of points) {
    const dot = svgEl('circle', {cx: x.toFixed(1), cy: y.toFixed(1), r: 2.2, class: 'point',
      fill: share >= threshold ? COLOURS.correct : '#c62828'});
    dot.appendChild(svgEl('title', {}, `${clock(chart.start_minute + index)}: ${percent(share)} of ${faces} faces`));
    svg.appendChild(dot);
  }
  timeAxis(svg, chart, count);
  return svg;
}

// People counted per minute, stacked by mask position.
function peopleChart(chart) {
  const svg = chartFrame('people per minute by mask position, last hour');
  const count = chart.faces.length;
  const totals = chart.faces.map((_, index) => CLASSES.reduce((sum, name) => sum + chart.people[name][index], 0));
  const most = Math.max(1, ...totals);
  svg.appendChild(svgEl('text', {x: 0, y: 9}, most));
  svg.appendChild(svgEl('text', {x: 0, y: HEIGHT}, 0));
  const barWidth = Math.max(1, (WIDTH - LEFT - 4) / Math.max(count, 1) - 1);
  totals.forEach((total, index) => {
    let top = HEIGHT;
    for (const name of CLASSES) {
      const people = chart.people[name][index];
      if (!people) continue;
      const height = people / most * (HEIGHT - 6);
      top -= height;
      const bar = svgEl('rect', {x: (xOf(index, count) - barWidth / 2).toFixed(1), y: top.toFixed(1),
        width: barWidth.toFixed(1), height: height.toFixed(1), fill: COLOURS[name], class: 'bar'});
      bar.appendChild(svgEl('title', {}, `${clock(chart.start_minute + index)}: ${people} ${LABELS[name]}`));
      svg.appendChild(bar);
    }
  });
  timeAxis(svg, chart, count);
  return svg;
}

function legend() {
  const list = el('ul', {class: 'legend'});
  for (const name of CLASSES) {
    const item = el('li');
    const swatch = el('i');
    swatch.style.background = COLOURS[name];
    item.append(swatch, LABELS[name]);
    list.appendChild(item);
  }
  return list;
}

// The big figure: compliance over the last minutes, coloured against the alert threshold, with its basis.
function nowFigure(now, threshold, minutes) {
  const figure = el('p', {class: 'figure'}, percent(now.compliance));
  figure.classList.add(now.compliance === null ? 'none' : now.compliance >= threshold ? 'good' : 'bad');
  if (now.compliance !== null && !now.enough) figure.classList.add('few');
  let basis = `last ${minutes} min: ${now.faces_total} faces`;
  if (now.interval) basis += `, 95 % interval ${percent(now.interval[0])} – ${percent(now.interval[1])}`;
  basis += ` (alert under ${percent(threshold)}` + (now.enough || now.compliance === null ? ')' : ', too few faces to page)');
  return [figure, el('p', {class: 'basis'}, basis)];
}

function rows(pairs) {
  const table = el('table');
  for (const [label, value] of pairs) {
    const tr = el('tr');
    tr.append(el('td', {}, label), el('td', {}, value));
    table.appendChild(tr);
  }
  return table;
}

function frames(counts) {
  return `${counts.processed} processed, ${counts.dropped} dropped, ${counts.failed} failed`;
}

function cameraCard(name, camera, status) {
  const card = el('article', {class: 'card camera', 'data-camera': name});
  const title = el('h3', {}, name);
  const error = camera.last_error;
  const state = camera.up ? 'up' : error && error.reason === 'file_ended' ? 'ended' : 'down';
  title.appendChild(el('span', {class: 'badge ' + state}, state));
  card.appendChild(title);
  if (error) card.appendChild(el('p', {class: 'reason', 'data-reason': error.reason}, error.message));
  card.append(...nowFigure(camera.now, status.threshold, status.now_minutes));
  card.append(complianceChart(camera.chart, status.threshold), peopleChart(camera.chart), legend());
  const people = CLASSES.map(k => camera.now.people[k]).reduce((a, b) => a + b, 0);
  card.appendChild(rows([
    ['site', camera.site],
    ['last frame', camera.last_frame_age_s === null ? 'no frame yet' : `${camera.last_frame_age_s} s ago`],
    [`frames, last ${status.now_minutes} min`, frames(camera.now.frames)],
    ['frames, all time', frames(camera.frames)],
    ['reconnects', `${camera.now.reconnects} in ${status.now_minutes} min, ${camera.reconnects} all time`],
    [`people, last ${status.now_minutes} min`, people],
    ['source', camera.url ?? 'run by another ingester'],
    ['detector', camera.detector ?? '–'],
    ['model', camera.model ?? '–'],
  ]));
  return card;
}

function siteCard(name, site, status) {
  const card = el('article', {class: 'card site', 'data-site': name});
  card.appendChild(el('h3', {}, name));
  card.append(...nowFigure(site.now, status.threshold, status.now_minutes));
  card.append(complianceChart(site.chart, status.threshold), peopleChart(site.chart), legend());
  card.appendChild(rows([['cameras', `${site.cameras.join(', ')} (${site.up} of ${site.cameras.length} up)`]]));
  return card;
}

function render(status) {
  const cameras = Object.entries(status.cameras);
  const up = cameras.filter(([, camera]) => camera.up).length;
  const local = status.source === 'local' ? 'Redis away: this server\'s own cameras and counts since · ' : '';
  document.getElementById('summary').textContent =
    `${local}${up} of ${cameras.length} cameras up · updated ${new Date(status.now * 1000).toLocaleTimeString()}`;
  document.getElementById('summary').setAttribute('data-source', status.source || 'redis');
  const cameraCards = cameras.map(([name, camera]) => cameraCard(name, camera, status));
  document.getElementById('cameras').replaceChildren(...(cameraCards.length ? cameraCards
    : [el('p', {class: 'muted'}, 'no cameras yet')]));
  const siteCards = Object.entries(status.sites).map(([name, site]) => siteCard(name, site, status));
  document.getElementById('sites').replaceChildren(...(siteCards.length ? siteCards
    : [el('p', {class: 'muted'}, 'no sites configured')]));
  const preview = document.getElementById('preview');
  preview.replaceChildren();
  if (status.preview) {
    preview.append('Setup view (this machine only): ', el('a', {href: status.preview}, status.preview));
  }
}

async function refresh() {
  try {
    const reply = await fetch('/api/status');
    const status = await reply.json();
    if (!reply.ok) throw new Error(status.error || reply.statusText);
    render(status);
  } catch (error) {
    document.getElementById('summary').textContent = `server unreachable or Redis away (${error.message})`;
  }
}
refresh();
setInterval(refresh, 5000);
