'use strict';
// Builds the page from /api/status with createElement, textContent and setAttribute only: every name and URL
// comes from config or Redis, and is shown as the text it is, never parsed as markup.
const CLASSES = ['correct', 'nose', 'nose_mouth', 'chin', 'no_mask'];
// The same words as names.CLASS_LABELS (tests/test_page.py checks): the setup view, Grafana and the docs use them.
const LABELS = {correct: 'worn correctly', nose: 'nose exposed', nose_mouth: 'mask on the chin (nose and mouth exposed)',
  chin: 'chin exposed', no_mask: 'no mask'};
// Okabe-Ito: told apart with every common colour-vision deficiency; every colour also has a word or a shape beside it.
const COLOURS = {correct: '#009E73', nose: '#E69F00', nose_mouth: '#D55E00', chin: '#CC79A7', no_mask: '#0072B2'};
const GOOD = '#007a5a', BAD = '#b34700';
const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 300, HEIGHT = 90, LEFT = 30, BOTTOM = 14;
const NBSP = '\u00a0';

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
// "27.5 %" with a no-break space: the figure never breaks from its unit.
function percent(share) {
  return share === null || share === undefined ? '–' : (100 * Number(share)).toFixed(1) + NBSP + '%';
}
function pad(number) {
  return String(number).padStart(2, '0');
}
// One clock everywhere: 24 h, local time.
function clock(seconds, withSeconds) {
  const time = new Date(seconds * 1000);
  const text = `${pad(time.getHours())}:${pad(time.getMinutes())}`;
  return withSeconds ? `${text}:${pad(time.getSeconds())}` : text;
}
function verdict(share, threshold) {
  if (share === null || share === undefined) return ['none', ''];
  return share >= threshold ? ['good', '✓ at or above the alert line'] : ['bad', '✗ below the alert line'];
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
  const middle = Math.floor((count - 1) / 2);
  svg.appendChild(svgEl('text', {x: LEFT, y: HEIGHT + 11}, clock(chart.start_minute * 60)));
  svg.appendChild(svgEl('text', {x: xOf(middle, count) - 12, y: HEIGHT + 11}, clock((chart.start_minute + middle) * 60)));
  svg.appendChild(svgEl('text', {x: WIDTH - 24, y: HEIGHT + 11}, 'now'));
}
function peopleIn(chart, index) {
  return CLASSES.reduce((sum, name) => sum + chart.people[name][index], 0);
}
// A point at or above the line is a circle, one below it a triangle pointing down: shape as well as colour.
function marker(x, y, good) {
  if (good) return svgEl('circle', {cx: x.toFixed(1), cy: y.toFixed(1), r: 2.4, class: 'point good', fill: GOOD});
  const path = `M${(x - 3).toFixed(1)},${(y - 2.5).toFixed(1)} h6 l-3,5 z`;
  return svgEl('path', {d: path, class: 'point bad', fill: BAD});
}

// Compliance of people minute by minute: a mark for each minute with people (its title says how many), the alert
// line dashed.
function complianceChart(chart, threshold) {
  const svg = chartFrame('compliance of people per minute, last hour, in percent');
  const count = chart.faces.length;
  for (const level of [0, 0.5, 1]) {
    svg.appendChild(svgEl('text', {x: 0, y: HEIGHT - level * (HEIGHT - 6) + 3}, `${100 * level}${NBSP}%`));
  }
  const yThreshold = HEIGHT - threshold * (HEIGHT - 6);
  svg.appendChild(svgEl('line', {x1: LEFT, y1: yThreshold, x2: WIDTH, y2: yThreshold, stroke: '#555',
    'stroke-dasharray': '4 3', class: 'threshold'}));
  const points = [];
  for (let index = 0; index < count; index++) {
    const people = peopleIn(chart, index);
    if (!people) continue;
    const share = chart.people.correct[index] / people;
    points.push([xOf(index, count), HEIGHT - share * (HEIGHT - 6), share, people, index]);
  }
  if (points.length > 1) {
    svg.appendChild(svgEl('polyline', {points: points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '),
      fill: 'none', stroke: '#335', 'stroke-width': 1.2}));
  }
  for (const [x, y, share, people, index] of points) {
    const mark = marker(x, y, share >= threshold);
    mark.appendChild(svgEl('title', {}, `${clock((chart.start_minute + index) * 60)}: ${percent(share)} of ${people} people`));
    svg.appendChild(mark);
  }
  timeAxis(svg, chart, count);
  return svg;
}

// People counted per minute, stacked by mask position.
function peopleChart(chart) {
  const svg = chartFrame('people per minute by mask position, last hour');
  const count = chart.faces.length;
  const totals = chart.faces.map((_, index) => peopleIn(chart, index));
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
      bar.appendChild(svgEl('title', {}, `${clock((chart.start_minute + index) * 60)}: ${people} ${LABELS[name]}`));
      svg.appendChild(bar);
    }
  });
  timeAxis(svg, chart, count);
  return svg;
}

function charts(chart, threshold) {
  return [
    el('h4', {class: 'chart-title'}, 'Compliance of people, % per minute (dashed: alert line)'),
    complianceChart(chart, threshold),
    el('h4', {class: 'chart-title'}, 'People per minute, by mask position'),
    peopleChart(chart),
  ];
}

function legend() {
  const list = el('ul', {class: 'legend', id: 'legend'});
  for (const name of CLASSES) {
    const item = el('li', {'data-class': name});
    const swatch = el('i');
    swatch.style.background = COLOURS[name];
    item.append(swatch, LABELS[name]);
    list.appendChild(item);
  }
  return list;
}

// The big figure: compliance of people over the last minutes, against the alert line, with its basis.
function nowFigure(now, threshold, minutes) {
  const people = now.people;
  const [tone, word] = verdict(people.compliance, threshold);
  const figure = el('p', {class: `figure ${tone}`}, percent(people.compliance));
  if (people.compliance !== null && !people.enough) figure.classList.add('few');
  if (word) figure.appendChild(el('span', {class: 'verdict'}, word));
  let basis = `of ${people.total} people, last ${minutes} min`;
  if (people.interval) basis += `; 95 % interval ${percent(people.interval[0])} – ${percent(people.interval[1])}`;
  basis += ` (alert under ${percent(threshold)}` + (people.enough || people.compliance === null ? ')'
    : ', too few people to page)');
  const faces = el('p', {class: 'basis faces'},
    `faces, each frame counted: ${percent(now.faces.compliance)} of ${now.faces.total}`);
  return [figure, el('p', {class: 'basis'}, basis), faces];
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

// Health facts that say why: the camera's last error (when the server reports it) and its last frame's age, or
// "no frame yet"; without those fields, the age of its last report, named as such.
function lastFrame(camera) {
  if ('last_frame_age_s' in camera) {
    return camera.last_frame_age_s === null ? 'no frame yet' : `${camera.last_frame_age_s}${NBSP}s ago`;
  }
  return camera.seen_ago_s === null ? 'never reported' : `last report ${camera.seen_ago_s}${NBSP}s ago`;
}
function errorText(camera) {
  const error = camera.last_error;
  if (!error) return null;
  const since = error.since ? ` since ${clock(error.since, true)}` : '';
  return `${error.reason}${since}${error.message ? ': ' + error.message : ''}`;
}
const BADGES = {up: '● up', down: '✕ down', ended: '■ ended'};  // a shape beside the colour, and the word
function badge(camera, withReason = true) {
  const error = camera.last_error;
  const state = camera.up ? 'up' : error && error.reason === 'file_ended' ? 'ended' : 'down';
  const span = el('span', {class: 'badge ' + state}, BADGES[state]);
  if (withReason && state === 'down' && error) span.textContent += ` · ${error.reason.replaceAll('_', ' ')}`;
  return span;
}

function cameraCard(name, camera, status) {
  const card = el('article', {class: 'card camera', 'data-camera': name});
  const title = el('h3', {}, name);
  title.appendChild(badge(camera, false));
  card.appendChild(title);
  const reason = camera.last_error;
  if (reason) card.appendChild(el('p', {class: 'reason', 'data-reason': reason.reason}, reason.message));
  card.append(...nowFigure(camera.now, status.threshold, status.now_minutes));
  card.append(...charts(camera.chart, status.threshold));
  const error = errorText(camera);
  card.appendChild(rows([
    ['site', camera.site],
    ...(error ? [['last error', error]] : []),
    ['last frame', lastFrame(camera)],
    [`frames, last ${status.now_minutes} min`, frames(camera.now.frames)],
    ['frames, all time', frames(camera.frames)],
    ['reconnects', `${camera.now.reconnects} in ${status.now_minutes} min, ${camera.reconnects} all time`],
    [`people, last ${status.now_minutes} min`, camera.now.people.total],
    ['people, all time', camera.people.total],
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
  card.append(...charts(site.chart, status.threshold));
  card.appendChild(rows([['cameras', `${site.cameras.join(', ')} (${site.up} of ${site.cameras.length} up)`]]));
  return card;
}

function headlineItem(label, value, extra) {
  const item = el('div', {class: 'headline-item'});
  item.append(el('span', {class: 'label'}, label), el('span', {class: 'value'}, value));
  if (extra) item.appendChild(extra);
  return item;
}

// The venue's first line: compliance of people now and today, cameras up, people in the last hour.
function renderVenue(venue, status) {
  const [tone, word] = verdict(venue.now.compliance, status.threshold);
  const now = headlineItem(`compliance of people, last ${status.now_minutes} min`, percent(venue.now.compliance),
    el('span', {class: 'verdict'}, word || `of ${venue.now.total} people`));
  now.classList.add('now', tone);
  const since = venue.today.since ? ` (since ${clock(venue.today.since)})` : '';
  document.getElementById('venue').replaceChildren(
    now,
    headlineItem(`today${since}`, percent(venue.today.compliance), el('span', {class: 'verdict'},
      `of ${venue.today.total} people`)),
    headlineItem('cameras up', `${venue.up} of ${venue.cameras}`),
    headlineItem('people in the last hour', venue.people_last_hour),
  );
}

// On a phone, this list comes first: every camera's health on one line each.
function renderGlance(cameras, status) {
  const items = cameras.map(([name, camera]) => {
    const item = el('li', {'data-camera': name});
    item.append(badge(camera), el('strong', {}, name),
      el('span', {class: 'figure-small'}, percent(camera.now.people.compliance)),
      el('span', {class: 'muted'}, errorText(camera) ?? lastFrame(camera)));
    return item;
  });
  document.getElementById('glance').replaceChildren(...(items.length ? items : [el('li', {class: 'muted'},
    'no cameras yet')]));
}

function render(status) {
  const cameras = Object.entries(status.cameras);
  const local = status.source === 'local' ? ' · local figures: Redis is away, these are this server’s own cameras and counts' : '';
  document.getElementById('summary').textContent = `updated ${clock(status.now, true)}${local}`;
  document.getElementById('summary').classList.toggle('local', Boolean(local));
  document.getElementById('summary').setAttribute('data-source', status.source || 'redis');
  if (status.venue) renderVenue(status.venue, status);
  renderGlance(cameras, status);
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
document.getElementById('legend-place').replaceWith(legend());
refresh();
setInterval(refresh, 5000);
