// The dashboard of shared_map_api in a real browser (Debian's chromium, driven
// by playwright-core), against objs/nginx with the module loaded.
//
//   TEST_NGINX_BINARY=objs/nginx TEST_NGINX_MODULE=objs/ngx_http_shared_map_module.so \
//   DASHBOARD_PORT=7984 node --test t/browser/
//
// Leaves a screenshot in build/dashboard.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '../..');
const nginx = resolve(root, process.env.TEST_NGINX_BINARY || 'objs/nginx');
const module = resolve(root, process.env.TEST_NGINX_MODULE || 'objs/ngx_http_shared_map_module.so');
const port = Number(process.env.DASHBOARD_PORT || 7984);
const origin = `http://127.0.0.1:${port}`;
const prefix = resolve(root, 'build/browser');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const config = `
load_module ${module};
worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    shared_map hits tinymap?space=1m&entries=1000;
    shared_map notes hashmap?space=1m&stale=1h;
    server {
        listen 127.0.0.1:${port};
        location /count/ { shared_map_count hits $uri; return 204; }
        location /maps/ { shared_map_api; }
        location /ro/ { shared_map_api readonly; }
    }
}
`;

let browser;

function nginxCtl(...args) {
  const r = spawnSync(nginx, ['-p', prefix + '/', '-c', prefix + '/nginx.conf', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `nginx ${args.join(' ')}: ${r.stderr}`);
}

async function api(method, path, body) {
  const r = await fetch(origin + path, { method, body });
  assert.ok(r.status < 300, `${method} ${path}: ${r.status}`);
  return r;
}

async function count(uri, times) {
  for (let i = 0; i < times; i++) await api('GET', '/count' + uri);
}

// A page with every listener a test needs: requests, script errors, CSP
// violations, navigations and dialogs.
async function open(path) {
  const page = await browser.newPage();
  const seen = { requests: [], errors: [], navigations: 0, dialogs: [] };
  page.on('request', req => seen.requests.push(req.url()));
  page.on('pageerror', err => seen.errors.push('pageerror: ' + err.message));
  page.on('console', msg => { if (msg.type() === 'error') seen.errors.push('console: ' + msg.text()); });
  page.on('framenavigated', frame => { if (frame === page.mainFrame()) seen.navigations++; });
  page.on('dialog', dialog => { seen.dialogs.push(dialog.message()); dialog.accept(); });
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective));
  });
  await page.goto(origin + path);
  await page.locator('section.map').first().waitFor();
  return { page, seen };
}

// The text of a map's row for `key`, once it shows `value`.
async function waitForValue(page, map, key, value) {
  const exact = new RegExp('^' + key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$');
  const row = page.locator(`section[data-map="${map}"] tr`, { has: page.locator('td.key', { hasText: exact }) });
  await row.locator('td.num').first().filter({ hasText: new RegExp(`^${value}$`) }).waitFor({ timeout: 6000 });
}

async function assertClean(page, seen) {
  assert.deepEqual(seen.errors, [], 'no script error');
  assert.deepEqual(await page.evaluate(() => window.__violations), [], 'no CSP violation');
  const foreign = seen.requests.filter(u => !u.startsWith(origin + '/'));
  assert.deepEqual(foreign, [], 'no request to another origin');
}

before(async () => {
  rmSync(prefix, { recursive: true, force: true });
  mkdirSync(prefix + '/logs', { recursive: true });
  chmodSync(prefix, 0o755);
  writeFileSync(prefix + '/nginx.conf', config);
  nginxCtl();
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  nginxCtl('-s', 'stop');
});

test('the page answers a browser and names every map; JSON clients still get JSON', async () => {
  const json = await fetch(origin + '/maps/');
  assert.match(json.headers.get('content-type'), /^application\/json/);
  const html = await fetch(origin + '/maps/', { headers: { Accept: 'text/html' } });
  assert.match(html.headers.get('content-type'), /^text\/html/);
  assert.match(html.headers.get('content-security-policy'), /default-src 'none'/);

  await count('/a', 3);
  const { page, seen } = await open('/maps/');
  assert.deepEqual(await page.locator('section.map h2').allTextContents(), ['hits', 'notes']);
  assert.equal(await page.locator('section[data-map="hits"] .type').textContent(), 'tinymap');
  await waitForValue(page, 'hits', '/count/a', 3);
  const stats = await page.locator('section[data-map="hits"] dl.stats dt').allTextContents();
  for (const name of ['hits', 'misses', 'evictions', 'expirations', 'refused', 'lock waits', 'time waited', 'longest hold']) {
    assert.ok(stats.includes(name), `the statistics show ${name}: ${stats}`);
  }
  await assertClean(page, seen);
  await page.close();
});

test('a counter changed through the API shows its new value without a reload', async () => {
  const { page, seen } = await open('/maps/');
  await waitForValue(page, 'hits', '/count/a', 3);
  await api('POST', '/maps/hits?key=%2Fcount%2Fa&incr=40');
  await waitForValue(page, 'hits', '/count/a', 43);
  await count('/b', 2);
  await waitForValue(page, 'hits', '/count/b', 2);
  assert.equal(seen.navigations, 1, 'the page was not reloaded');
  await assertClean(page, seen);
  await page.close();
});

test('a hostile key is shown as text, never as markup', async () => {
  const hostile = '/<img src=x onerror=alert(1)>';
  await api('GET', '/count' + encodeURI(hostile));
  const { page, seen } = await open('/maps/');
  await waitForValue(page, 'hits', '/count/<img src=x onerror=alert(1)>', 1);
  assert.equal(await page.locator('section.map img').count(), 0);
  assert.deepEqual(seen.dialogs, []);
  await assertClean(page, seen);
  await page.close();
});

test('the prefix search lists only the keys under it', async () => {
  const { page, seen } = await open('/maps/');
  await page.fill('#prefix', '/count/b');
  await page.locator('section[data-map="hits"] td.key').first().filter({ hasText: '/count/b' }).waitFor();
  await page.waitForFunction(() =>
    [...document.querySelectorAll('section[data-map="hits"] td.key')].every(td => td.textContent.startsWith('/count/b')));
  await assertClean(page, seen);
  await page.close();
});

test('where the API takes writes, a counter resets behind a confirmation', async () => {
  const { page, seen } = await open('/maps/');
  const row = page.locator('section[data-map="hits"] tr', { has: page.locator('td.key', { hasText: '/count/b' }) });
  await row.locator('button', { hasText: 'reset' }).click();
  await waitForValue(page, 'hits', '/count/b', 0);
  assert.equal(seen.dialogs.length, 1, 'asked first');
  assert.equal(await (await fetch(origin + '/maps/hits?key=%2Fcount%2Fb')).text(), '0');
  await assertClean(page, seen);
  await page.close();
});

test('after some traffic the page charts it (screenshot in build/dashboard.png)', async () => {
  const { page, seen } = await open('/maps/');
  await page.setViewportSize({ width: 1100, height: 640 });
  await api('PUT', '/maps/notes?key=motd', 'deploy at 17:00');
  for (let round = 1; round <= 12; round++) {
    await Promise.all(['/', '/login', '/api/orders', '/api/users', '/static/app.js']
      .map((uri, i) => count(uri, (round % 6 + 1) * (5 - i))));
    await page.waitForTimeout(900);
  }
  await waitForValue(page, 'hits', '/count/', 210);
  await page.screenshot({ path: resolve(root, 'build/dashboard.png') });
  await assertClean(page, seen);
  await page.close();
});

test('an expired entry the map still holds is marked stale; live ones are not', async () => {
  await api('PUT', '/maps/notes?key=old&type=long&ttl=1', '7');
  await api('PUT', '/maps/notes?key=fresh&type=long', '8');
  const { page, seen } = await open('/maps/');
  const row = key => page.locator('section[data-map="notes"] tr', { has: page.locator('td.key', { hasText: key }) });
  await row('old').locator('span.stale').waitFor({ timeout: 6000 });
  assert.match(await row('old').locator('td.num').first().textContent(), /^stale 7$/);
  assert.equal(await row('fresh').locator('span.stale').count(), 0);
  assert.equal((await fetch(origin + '/maps/notes?key=old')).status, 404, 'a plain read finds nothing');
  await assertClean(page, seen);
  await page.close();
});

test('under readonly the page offers no writes', async () => {
  const { page, seen } = await open('/ro/');
  await waitForValue(page, 'hits', '/count/', 210);
  assert.equal(await page.locator('button').count(), 0);
  assert.match(await page.locator('#status').textContent(), /read-only/);
  await assertClean(page, seen);
  await page.close();
});
