// shared_map_api in front of a real browser (issue 20, finding 1): pages of
// another origin make Debian's chromium send cross-site writes (an
// auto-submitted form, a text/plain form, a no-cors fetch, sendBeacon), and a
// DNS-rebinding page reads and writes same-origin under its own host name;
// nginx refuses them all with 403 and the map is unchanged. The dashboard,
// same-origin, still writes.
//
//   TEST_NGINX_BINARY=objs/nginx TEST_NGINX_MODULE=objs/ngx_http_shared_map_module.so \
//   DASHBOARD_PORT=7984 node --test t/browser/
//
// The API listens on DASHBOARD_PORT + 1, the attacker's site on + 2 (another
// port is another origin). The browser resolves "evil.example" and
// "rebind.attacker.test" to 127.0.0.1 (--host-resolver-rules): the attack page
// is served both as http://127.0.0.1:PORT+2 (Sec-Fetch-Site: same-site, a
// site ignores ports) and as http://evil.example:PORT+2 (cross-site); the
// rebinding page as rebind.attacker.test, as a rebinding DNS answer would
// make it. On plain HTTP Chromium sends Sec-Fetch-* only to addresses and
// localhost, and Origin on no GET: the rebinding page's reads carry neither,
// only Chromium's User-Agent.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '../..');
const nginx = resolve(root, process.env.TEST_NGINX_BINARY || 'objs/nginx');
const module = resolve(root, process.env.TEST_NGINX_MODULE || 'objs/ngx_http_shared_map_module.so');
const port = Number(process.env.DASHBOARD_PORT || 7984) + 1;
const evilPort = port + 1;
const api = `http://127.0.0.1:${port}`;
const evil = `http://127.0.0.1:${evilPort}`;
const evilName = `http://evil.example:${evilPort}`;
const rebind = `http://rebind.attacker.test:${port}`;
const prefix = resolve(root, 'build/browser-attacker');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const config = `
load_module ${module};
worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    log_format probe '$request_method $uri $status "$http_origin" "$http_sec_fetch_site" "$host"';
    shared_map blocked hashmap?space=1m&match=ip;
    shared_map hits tinymap?space=1m&entries=1000;
    server {
        listen 127.0.0.1:${port};
        access_log logs/api.log probe;
        location /maps/ {
            allow 127.0.0.1;
            deny all;
            shared_map_api;
        }
        # The rebinding page, as the attacker's server had served it before
        # the name was made to resolve to this server.
        location = /rebind.html { root html; }
    }
    server {
        listen 127.0.0.1:${evilPort};
        access_log off;
        root html;
    }
}
`;

// The attacker's page: every way a page makes a browser send a cross-site
// write without CORS's consent. Each form posts into an iframe of its own, so
// the page stays; the page counts what it has sent in window.__sent.
const attackPage = `<!doctype html>
<title>cute cats</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="f1" method="POST" target="sink1" action="${api}/maps/blocked?key=0.0.0.0/0&incr=1">
  <input name="a" value="1"></form>
<form id="f2" method="POST" target="sink2" enctype="text/plain" action="${api}/maps/hits?key=form-text&incr=1">
  <input name="a" value="1"></form>
<script>
window.__sent = 0;
for (const name of ['sink1', 'sink2']) {
  document.querySelector('iframe[name=' + name + ']').addEventListener('load', () => window.__sent++);
}
document.getElementById('f1').submit();
document.getElementById('f2').submit();
fetch('${api}/maps/blocked?key=10.0.0.0/8&incr=1', { method: 'POST', mode: 'no-cors' })
  .then(() => window.__sent++, () => window.__sent++);
fetch('${api}/maps/hits?key=no-cors&incr=1', { method: 'POST', mode: 'no-cors', body: 'x',
  headers: { 'Content-Type': 'text/plain' } }).then(() => window.__sent++, () => window.__sent++);
if (navigator.sendBeacon('${api}/maps/hits?key=beacon&incr=1', 'x')) window.__beacon = true;
</script>`;

// After rebinding the page is same-origin with the API, as far as the browser
// knows: it reads the listing and writes freely, unless the Host is checked.
const rebindPage = `<!doctype html>
<title>rebinding</title>
<script>
window.__results = (async () => {
  const read = await fetch('/maps/');
  const write = await fetch('/maps/hits?key=rebound&incr=1', { method: 'POST' });
  const put = await fetch('/maps/hits?key=rebound-put', { method: 'PUT', body: '1' });
  return { read: read.status, readBody: await read.text(), write: write.status, put: put.status };
})();
</script>`;

let browser;

function nginxCtl(...args) {
  const r = spawnSync(nginx, ['-p', prefix + '/', '-c', prefix + '/nginx.conf', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `nginx ${args.join(' ')}: ${r.stderr}`);
}

// The map's entries, read as a script would (no Origin, no Sec-Fetch-Site).
async function entries(map) {
  const r = await fetch(`${api}/maps/${map}`);
  assert.equal(r.status, 200);
  return (await r.json()).entries.map(e => `${e.key}=${e.value}`).sort();
}

// The API's access log lines for `needle` (method, URI, status, Origin,
// Sec-Fetch-Site, host), once `count` of them are there.
async function logged(needle, count) {
  for (let i = 0; i < 50; i++) {
    const lines = readFileSync(prefix + '/logs/api.log', 'utf8').split('\n').filter(l => l.includes(needle));
    if (lines.length >= count) return lines;
    await new Promise(r => setTimeout(r, 100));
  }
  assert.fail(`fewer than ${count} requests for ${needle} in the access log`);
}

before(async () => {
  rmSync(prefix, { recursive: true, force: true });
  mkdirSync(prefix + '/logs', { recursive: true });
  mkdirSync(prefix + '/html', { recursive: true });
  chmodSync(prefix, 0o755);
  writeFileSync(prefix + '/nginx.conf', config);
  writeFileSync(prefix + '/html/attack.html', attackPage);
  writeFileSync(prefix + '/html/rebind.html', rebindPage);
  nginxCtl();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--host-resolver-rules=MAP rebind.attacker.test 127.0.0.1, MAP evil.example 127.0.0.1'],
  });
});

after(async () => {
  await browser?.close();
  nginxCtl('-s', 'stop');
});

for (const [site, from, fetchSite] of [['another port of the host', evil, 'same-site'], ['another site', evilName, 'cross-site']]) {
  test(`a page of ${site} cannot write: forms, text/plain, no-cors fetch and sendBeacon get 403`, async () => {
    const before = [await entries('blocked'), await entries('hits')];
    const page = await browser.newPage();
    await page.goto(from + '/attack.html');
    await page.waitForFunction(() => window.__sent === 4, null, { timeout: 10000 });
    assert.equal(await page.evaluate(() => window.__beacon), true, 'the beacon was queued');

    // Every write reached nginx from the browser, with the page's Origin, and was refused.
    const lines = await logged(`"${from}"`, 5);
    for (const uri of ['/maps/blocked', '/maps/hits']) {
      assert.ok(lines.some(l => l.startsWith(`POST ${uri} 403 "${from}" "${fetchSite}"`)), `${uri}: ${lines.join('\n')}`);
    }
    assert.deepEqual(lines.filter(l => !/^POST \S+ 403 /.test(l)), [], 'every cross-site write got 403');

    assert.deepEqual([await entries('blocked'), await entries('hits')], before, 'the maps are unchanged');
    // The block list still lets everyone in: nothing was written to it.
    assert.deepEqual(await entries('blocked'), []);
    await page.close();
  });
}

test('a DNS-rebinding page can neither read nor write', async () => {
  const page = await browser.newPage();
  await page.goto(rebind + '/rebind.html');
  const results = await page.evaluate(() => window.__results);
  assert.deepEqual(results, {
    read: 403,
    readBody: 'host "rebind.attacker.test" is not a name of this server\n',
    write: 403,
    put: 403,
  });
  const dash = await page.goto(rebind + '/maps/');
  assert.equal(dash.status(), 403, 'nor open the dashboard');
  assert.deepEqual(await entries('hits'), [], 'nothing written');
  await page.close();
});

test('the dashboard, same-origin, still writes', async () => {
  const put = await fetch(`${api}/maps/hits?key=%2Fcount%2Fx&type=long`, { method: 'PUT', body: '5' });
  assert.equal(put.status, 201, 'a script (no Origin) writes');
  const page = await browser.newPage();
  page.on('dialog', dialog => dialog.accept());
  await page.goto(api + '/maps/');
  const row = page.locator('section[data-map="hits"] tr', { has: page.locator('td.key', { hasText: '/count/x' }) });
  await row.locator('td.num').first().filter({ hasText: /^5$/ }).waitFor({ timeout: 6000 });
  await row.locator('button', { hasText: 'reset' }).click();
  await row.locator('td.num').first().filter({ hasText: /^0$/ }).waitFor({ timeout: 6000 });
  assert.equal(await (await fetch(`${api}/maps/hits?key=%2Fcount%2Fx`)).text(), '0');
  const [line] = await logged('PUT /maps/hits', 2).then(l => l.filter(x => x.includes('same-origin')));
  assert.match(line, new RegExp(`^PUT /maps/hits 204 "${api}" "same-origin" "127.0.0.1"$`), 'with its Origin');
  await page.close();
});
