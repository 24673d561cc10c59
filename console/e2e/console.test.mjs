// console/e2e/console.test.mjs — the operator console (factum-console) in a real browser.
//
// Run by scripts/console-e2e.sh, which starts the example service with the console
// mounted at /console, inserts one hostile event, and passes:
//   BASE                    the service, e.g. http://127.0.0.1:41234
//   CONSOLE_TOKEN           the operator token
//   CONSOLE_READONLY_TOKEN  the read-only token
//   HOSTILE_ID              the stream id (aggregate type Order) of the hostile event
//   HOSTILE_EVENT_ID        (optional) its event id; looked up on the streams page if unset
//   HOSTILE_CORRELATION_ID  (optional) the correlation id in its metadata
//   SCREENSHOTS             where the screenshots go (login.png, overview.png, ...)
//   CHROMIUM                (optional) the browser, default /usr/bin/chromium
//
// The tests run in order and share one operator session (logged in by the login test);
// each takes a screenshot with a stable name, and a failing one also FAILED-<name>.png.
// The console's JavaScript runs under its Content-Security-Policy as shipped; the
// hostile-payload test also looks again with the policy bypassed, so that escaping alone
// is checked too.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function required(name) {
    const value = process.env[name];
    if (!value) throw new Error(`${name} must be set (scripts/console-e2e.sh sets it)`);
    return value;
}

const BASE = required('BASE').replace(/\/+$/, '');
const TOKEN = required('CONSOLE_TOKEN');
const READONLY_TOKEN = required('CONSOLE_READONLY_TOKEN');
const HOSTILE_ID = required('HOSTILE_ID');
const SCREENSHOTS = required('SCREENSHOTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** The pages every console page links to from its `<nav>`. */
const NAV = ['/console/', '/console/streams', '/console/tail', '/console/projections', '/console/processes'];
/** The example's projections. */
const PROJECTIONS = ['order_summary', 'customer_history', 'audit_log'];
/** The hostile strings that must show as text. */
const HOSTILE = {
    script: '<script>window.__xss=1</script>',
    attribute: '"><img src=x onerror="window.__xss=2">',
    quote: "'; window.__xss=3; '",
    pre: '</pre><script>alert(1)</script>',
    metadata: '<script>alert(2)</script>',
};
const SUBMIT = 'button[type=submit], button:not([type]), input[type=submit]';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const at = (path) => new URL(path, BASE).href;
const pathOf = (url) => new URL(url).pathname;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const hex = (bytes = 6) => randomBytes(bytes).toString('hex');
const streamsUrl = (filters) =>
    '/console/streams?' +
    new URLSearchParams({
        aggregate_type: '',
        aggregate_id: '',
        event_type: '',
        topic: '',
        correlation_id: '',
        from: '',
        to: '',
        page: '0',
        ...filters,
    });

/** Calls `fn` until it returns something truthy; a throw counts as not yet (the last one is reported). */
async function eventually(what, timeoutMs, fn, intervalMs = 500) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        let last;
        try {
            const value = await fn();
            if (value) return value;
        } catch (error) {
            last = error;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}` + (last ? `: ${last.message}` : ''));
        }
        await sleep(intervalMs);
    }
}

/** The example's HTTP API: `body` as JSON; answers the parsed reply, refusing anything but 2xx. */
async function api(method, path, body) {
    const response = await fetch(at(path), {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : {};
}

/** A customer and an order with one item, made through the API. */
async function placeOrder() {
    const customer = await api('POST', '/customers', { name: 'E2E Customer', email: `e2e-${hex()}@example.com` });
    const order = await api('POST', '/orders', { customer_id: customer.id });
    const item = await api('POST', `/orders/${order.id}/items`, { sku: 'teapot', quantity: 2, unit_price: 3500 });
    return { customer, order, item };
}

/** Asserts the response's Content-Security-Policy: scripts from the console's origin only. */
async function checkCsp(response, what) {
    const headers = typeof response.allHeaders === 'function' ? await response.allHeaders() : response.headers();
    const csp = headers['content-security-policy'];
    assert.ok(csp, `${what}: no Content-Security-Policy header`);
    assert.match(csp, /(^|;)\s*script-src\s[^;]*'self'/, `${what}: the CSP has no script-src 'self': ${csp}`);
    assert.doesNotMatch(csp, /unsafe-inline/i, `${what}: the CSP allows unsafe-inline: ${csp}`);
}

/** Navigates to `path`, asserting the status and the CSP of the page's response. */
async function open(page, path, status = 200) {
    const response = await page.goto(at(path));
    assert.ok(response, `GET ${path}: no response`);
    assert.equal(response.status(), status, `GET ${path}: status`);
    await checkCsp(response, `GET ${path}`);
    return response;
}

/**
 * Runs `action` (a click that submits a form) and waits for the navigation it causes.
 * Answers `first`, the response to the submission itself (a 303, say), and `final`, the
 * page's response after any redirects; checks the CSP of the final page.
 */
async function navigate(page, action, what) {
    const [final] = await Promise.all([page.waitForNavigation(), action()]);
    assert.ok(final, `${what}: no response`);
    let request = final.request();
    while (request.redirectedFrom()) request = request.redirectedFrom();
    const first = (await request.response()) ?? final;
    await checkCsp(final, what);
    return { first, final };
}

/** Clicks the submit button of `form` and waits for the page it leads to. */
function submit(page, form, what) {
    return navigate(page, () => form.locator(SUBMIT).first().click(), what);
}

async function shot(page, name, fullPage = true) {
    try {
        await page.screenshot({ path: join(SCREENSHOTS, name), fullPage });
    } catch (error) {
        // A screenshot is evidence, not a check: say so and go on.
        process.stderr.write(`console-e2e: screenshot ${name} failed: ${error.message}\n`);
    }
}

async function text(locator) {
    return ((await locator.textContent()) ?? '').trim();
}

/** Asserts the navigation and the logout form every logged-in page has. */
async function checkChrome(page, what) {
    const hrefs = await page.locator('nav a[href]').evaluateAll((links) => links.map((a) => a.href));
    const paths = hrefs.map(pathOf);
    for (const path of NAV) assert.ok(paths.includes(path), `${what}: <nav> has no link to ${path} (it has ${paths.join(', ')})`);
    const logout = page.locator('form#logout');
    assert.equal(await logout.count(), 1, `${what}: no form#logout`);
    assert.equal((await logout.getAttribute('method'))?.toLowerCase(), 'post', `${what}: form#logout is not method=post`);
    assert.equal(new URL((await logout.getAttribute('action')) ?? '', page.url()).pathname, '/console/logout', `${what}: form#logout action`);
    await checkCsrfInput(logout, `${what}: form#logout`);
}

async function checkCsrfInput(form, what) {
    const csrf = form.locator('input[type=hidden][name=csrf]');
    assert.equal(await csrf.count(), 1, `${what}: no hidden csrf input`);
    assert.ok(await csrf.getAttribute('value'), `${what}: the csrf input is empty`);
}

/** Asserts that nothing hostile ran or became markup on the page. */
async function checkNoXss(page, dialogs, what) {
    assert.deepEqual(dialogs, [], `${what}: a dialog opened`);
    assert.equal(await page.evaluate(() => window.__xss), undefined, `${what}: window.__xss was set`);
    assert.equal(await page.locator('img[src="x"]').count(), 0, `${what}: an injected <img src=x> exists`);
}

/** The live build of the projection page shown, or null; at most one is live. */
async function liveBuild(page) {
    const live = page.locator('#builds tr.build[data-state=live]');
    const n = await live.count();
    assert.ok(n <= 1, `${n} live builds`);
    return n === 1 ? live.getAttribute('data-build') : null;
}

async function builds(page) {
    return (await page.locator('#builds tr.build').evaluateAll((rows) => rows.map((r) => r.dataset.build))).sort();
}

let browser;
/** The operator's session, shared by the tests in order; logged in by the login test. */
let operator;
let operatorLoggedIn = false;
/** Every dialog but a confirm() any page opened, with where: the last test wants none. */
const dialogLog = [];

async function newContext(options = {}) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
    context.setDefaultTimeout(15_000);
    context.setDefaultNavigationTimeout(30_000);
    return context;
}

/**
 * Opens a page in `context` and runs `fn(page, dialogs)`; on failure takes
 * FAILED-<name>.png and names the page in the error. A confirm() is accepted; any other
 * dialog (alert, prompt, beforeunload) is dismissed and recorded in `dialogs`.
 */
async function withPage(context, name, fn) {
    const page = await context.newPage();
    const dialogs = [];
    page.on('dialog', (dialog) => {
        const what = `${dialog.type()}: ${dialog.message()}`;
        if (dialog.type() === 'confirm') {
            // The console may ask before an action: say yes, as an operator would.
            process.stderr.write(`console-e2e: ${name}: accepted ${what}\n`);
            dialog.accept().catch(() => {});
            return;
        }
        dialogs.push(what);
        dialogLog.push(`${name} at ${page.url()}: ${what}`);
        dialog.dismiss().catch(() => {});
    });
    try {
        return await fn(page, dialogs);
    } catch (error) {
        await shot(page, `FAILED-${name}.png`, false);
        error.message += `\n    (page: ${page.url()}; screenshot FAILED-${name}.png)`;
        throw error;
    } finally {
        await page.close().catch(() => {});
    }
}

/** Logs in through the login form; answers the page, on the overview. */
async function login(page, token, what) {
    await open(page, '/console/login');
    const form = page.locator('form#login');
    await form.locator('input[name=token]').fill(token);
    const { first, final } = await submit(page, form, `${what}: POST /console/login`);
    assert.equal(first.status(), 303, `${what}: the login answered ${first.status()}, not 303`);
    assert.equal(pathOf(final.url()), '/console/', `${what}: the login did not lead to /console/`);
    assert.equal(final.status(), 200, `${what}: /console/ after the login`);
    assert.ok((await page.context().cookies(at('/console/'))).length > 0, `${what}: no session cookie`);
    return page;
}

/** The operator's session, logged in first if the login test did not. */
async function operatorSession() {
    if (!operatorLoggedIn) {
        await withPage(operator, 'operator-login', (page) => login(page, TOKEN, 'operator login'));
        operatorLoggedIn = true;
    }
    return operator;
}

let hostileEventId = process.env.HOSTILE_EVENT_ID || null;
/** The hostile event's id: from the script, or the only event of its stream. */
async function hostileEvent(page) {
    if (!hostileEventId) {
        await open(page, streamsUrl({ aggregate_type: 'Order', aggregate_id: HOSTILE_ID }));
        const rows = page.locator('#events tr.event');
        assert.equal(await rows.count(), 1, `the hostile stream Order/${HOSTILE_ID} has not exactly one event`);
        hostileEventId = await rows.first().getAttribute('data-event-id');
    }
    return hostileEventId;
}

describe('factum console', { concurrency: false }, () => {
    before(async () => {
        await mkdir(SCREENSHOTS, { recursive: true });
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: ['--no-sandbox', '--disable-background-networking'],
        });
        operator = await newContext();
    });

    after(async () => {
        await browser?.close();
    });

    test('refused without credentials', async () => {
        const context = await newContext();
        try {
            await withPage(context, 'refused', async (page) => {
                await open(page, '/console/', 401);
                assert.equal(await page.locator('form#login').count(), 1, 'the 401 page shows no form#login');
                assert.equal(await page.locator('form#login input[name=token][type=password]').count(), 1);
                await shot(page, 'refused.png');

                for (const path of ['/console/streams', '/console/tail', '/console/projections',
                    '/console/projections/audit_log', '/console/processes', `/console/events/${randomUUID()}`]) {
                    const response = await page.request.get(at(path), { maxRedirects: 0 });
                    assert.equal(response.status(), 401, `GET ${path} without credentials`);
                }
                const post = await page.request.post(at('/console/projections/audit_log/rebuild'), {
                    form: { csrf: 'none' },
                    maxRedirects: 0,
                });
                assert.equal(post.status(), 401, 'POST /console/projections/audit_log/rebuild without credentials');
                await checkCsp(post, 'the refused POST');
                const wrong = await page.request.get(at('/console/'), {
                    headers: { authorization: `Bearer wrong-${hex(16)}` },
                    maxRedirects: 0,
                });
                assert.equal(wrong.status(), 401, 'GET /console/ with a wrong bearer token');
            });
        } finally {
            await context.close();
        }
    });

    test('a bearer token authenticates without a session', async () => {
        const context = await newContext();
        try {
            const response = await context.request.get(at('/console/'), {
                headers: { authorization: `Bearer ${TOKEN}` },
                maxRedirects: 0,
            });
            assert.equal(response.status(), 200, 'GET /console/ with the operator bearer token');
            assert.match(await response.text(), /<main[^>]*\bid="?overview/, 'the overview, by bearer token');
        } finally {
            await context.close();
        }
    });

    test('log in through the form', async () => {
        await withPage(operator, 'login', async (page) => {
            await open(page, '/console/login');
            const form = page.locator('form#login');
            assert.equal(await form.count(), 1, 'no form#login');
            assert.equal((await form.getAttribute('method'))?.toLowerCase(), 'post', 'form#login is not method=post');
            assert.equal(await form.locator('input[name=token][type=password]').count(), 1, 'no password input named token');
            assert.ok((await form.locator(SUBMIT).count()) > 0, 'form#login has no submit button');
            await shot(page, 'login.png');

            await form.locator('input[name=token]').fill(`wrong-${hex(16)}`);
            const wrong = await submit(page, form, 'a wrong token');
            assert.equal(wrong.first.status(), 401, 'a wrong token');
            assert.equal(await page.locator('p.error').count(), 1, 'a wrong token: no p.error');
            assert.equal(await page.locator('form#login').count(), 1, 'a wrong token: no form#login to try again');
            assert.equal((await operator.cookies(at('/console/'))).length, 0, 'a wrong token set a cookie');

            await login(page, TOKEN, 'the operator token');
            operatorLoggedIn = true;
            assert.equal(await page.locator('main#overview').count(), 1, 'no main#overview after the login');
        });
    });

    test('every page has the navigation, the logout form and the CSP', async () => {
        await withPage(await operatorSession(), 'pages', async (page) => {
            // The overview shows what the console sampled, every few seconds from the start.
            const rows = page.locator('table#projections tr[data-projection]');
            let names = [];
            await eventually(`the overview to list ${PROJECTIONS.join(', ')}`, 20_000, async () => {
                await open(page, '/console/');
                names = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.projection));
                return PROJECTIONS.every((name) => names.includes(name));
            }, 1_000);
            await checkChrome(page, 'the overview');
            assert.equal(await page.locator('main#overview').count(), 1, 'no main#overview');
            for (const name of names) {
                const state = page.locator(`table#projections tr[data-projection="${name}"] td.state`);
                assert.equal(await state.count(), 1, `the overview's ${name} row has no td.state`);
                assert.ok(await text(state), `the overview's ${name} row has an empty td.state`);
            }
            assert.ok((await page.locator('svg.sparkline').count()) >= 1, 'the overview has no svg.sparkline');
            // The sampler starts with the first view: within a few samples the throughput
            // card has its figure and the sparklines their lines.
            await eventually('the throughput figure', 20_000, async () => {
                await open(page, '/console/');
                return (await page.locator('#throughput .figure').count()) === 1
                    && (await page.locator('svg.sparkline polyline[points*=" "]').count()) >= 1;
            }, 1_000);
            await shot(page, 'overview.png');

            await open(page, '/console/projections');
            await checkChrome(page, 'the projections');
            for (const name of PROJECTIONS) {
                const row = page.locator(`table#projections tr[data-projection="${name}"]`);
                assert.equal(await row.count(), 1, `the projections page has no row for ${name}`);
                const links = await row.locator('a[href]').evaluateAll((as) => as.map((a) => a.href));
                assert.ok(links.map(pathOf).includes(`/console/projections/${name}`), `the ${name} row has no link to its page`);
            }

            for (const name of PROJECTIONS) {
                await open(page, `/console/projections/${name}`);
                await checkChrome(page, `the ${name} page`);
                assert.equal(await page.locator(`main#projection[data-name="${name}"]`).count(), 1, `no main#projection[data-name=${name}]`);
                // Builds only where the projection keeps them apart; failures only when some were recorded.
                for (const id of name === 'audit_log' ? ['#state', '#checkpoint', 'table#builds'] : ['#state', '#checkpoint']) {
                    assert.equal(await page.locator(id).count(), 1, `the ${name} page has no ${id}`);
                }
                for (const form of await page.locator('form.action').all()) {
                    assert.equal((await form.getAttribute('method'))?.toLowerCase(), 'post', `the ${name} page: an action form is not method=post`);
                    await checkCsrfInput(form, `the ${name} page: form.action[data-action=${await form.getAttribute('data-action')}]`);
                    assert.ok((await form.locator('button[type=submit]').count()) > 0, `the ${name} page: an action form has no submit button`);
                }
            }

            await open(page, '/console/streams');
            await checkChrome(page, 'the streams');
            await open(page, '/console/tail');
            await checkChrome(page, 'the tail');

            await open(page, '/console/processes');
            await checkChrome(page, 'the processes');
            assert.equal(await page.locator('main#processes').count(), 1, 'no main#processes');
            await shot(page, 'processes.png');
        });
    });

    test("find an order's stream and open an event", async () => {
        const { customer, order } = await placeOrder();
        await withPage(await operatorSession(), 'streams', async (page) => {
            await open(page, '/console/streams');
            const filters = page.locator('form#filters');
            assert.equal(await filters.count(), 1, 'no form#filters');
            assert.equal((await filters.getAttribute('method'))?.toLowerCase(), 'get', 'form#filters is not method=get');
            for (const name of ['aggregate_type', 'aggregate_id', 'event_type', 'topic', 'correlation_id', 'from', 'to', 'page']) {
                assert.ok((await filters.locator(`[name="${name}"]`).count()) > 0, `form#filters has no input named ${name}`);
            }
            await filters.locator('[name=aggregate_type]').fill('Order');
            await filters.locator('[name=aggregate_id]').fill(order.id);
            if ((await filters.locator(SUBMIT).count()) > 0) {
                await submit(page, filters, 'the filters');
            } else {
                await navigate(page, () => filters.locator('[name=aggregate_id]').press('Enter'), 'the filters');
            }
            const query = new URL(page.url()).searchParams;
            assert.equal(query.get('aggregate_type'), 'Order', 'the filtered URL');
            assert.equal(query.get('aggregate_id'), order.id, 'the filtered URL');

            const rows = page.locator('table#events tr.event');
            assert.equal(await rows.count(), 2, `Order/${order.id}: not its 2 events (placed, item added)`);
            const types = [];
            for (const row of await rows.all()) {
                const id = await row.getAttribute('data-event-id');
                assert.match(id ?? '', UUID, 'a row has no event id');
                const link = row.locator('a.event-link');
                assert.equal(pathOf(await link.evaluate((a) => a.href)), `/console/events/${id}`, 'the row links elsewhere');
                assert.ok(await text(row.locator('td.position')), 'a row has no td.position');
                assert.ok((await text(row.locator('td.stream'))).includes(order.id), 'a row of another stream');
                types.push(await text(row.locator('td.type')));
            }
            assert.deepEqual([...types].sort(), ['OrderItemAdded', 'OrderPlaced'], 'the event types');
            await shot(page, 'streams.png');

            const placed = rows.filter({ has: page.locator('td.type', { hasText: /^\s*OrderPlaced\s*$/ }) });
            const placedId = await placed.getAttribute('data-event-id');
            await navigate(page, () => placed.locator('a.event-link').click(), 'the event link');
            assert.equal(pathOf(page.url()), `/console/events/${placedId}`);
            assert.equal(await page.locator('main#event').count(), 1, 'no main#event');
            await checkChrome(page, 'the event');
            assert.ok((await text(page.locator('pre#payload'))).includes(customer.id), 'the payload does not show the customer id');
            assert.ok((await text(page.locator('pre#metadata'))).includes(order.correlation_id), 'the metadata does not show the correlation id');
            const correlation = page.locator('a#correlation');
            assert.equal(await correlation.count(), 1, 'no a#correlation');
            const target = new URL(await correlation.evaluate((a) => a.href));
            assert.equal(target.pathname, '/console/streams', 'a#correlation leads elsewhere');
            assert.equal(target.searchParams.get('correlation_id'), order.correlation_id, 'a#correlation filters on another id');
            assert.equal(await page.locator('a#causation').count(), 1, 'no a#causation (the API records a causation id)');
            await shot(page, 'event.png');

            await navigate(page, () => correlation.click(), 'the correlation link');
            const correlated = await page.locator('table#events tr.event').evaluateAll((trs) => trs.map((tr) => tr.dataset.eventId));
            assert.ok(correlated.includes(placedId), 'the correlation id finds not the event it came from');
        });
    });

    test('live tail shows new events', { timeout: 90_000 }, async () => {
        await withPage(await operatorSession(), 'tail', async (page) => {
            await open(page, '/console/tail?aggregate_type=Order&event_type=&topic=');
            assert.equal(await page.locator('main#tail').count(), 1, 'no main#tail');
            const status = page.locator('span#tail-status');
            assert.equal(await status.count(), 1, 'no span#tail-status');
            await eventually('#tail-status to say live', 20_000, async () => (await text(status)) === 'live', 250);

            const { customer, order } = await placeOrder();
            const rows = page.locator('tbody#tail-rows tr.event');
            const streamRows = async () =>
                rows.evaluateAll((trs) => trs.map((tr) => ({
                    stream: tr.querySelector('td.stream')?.textContent ?? '',
                    type: (tr.querySelector('td.type')?.textContent ?? '').trim(),
                    position: (tr.querySelector('td.position')?.textContent ?? '').trim(),
                })));
            const seen = await eventually(`the tail to show Order/${order.id}'s two events`, 20_000, async () => {
                const all = await streamRows();
                const mine = all.filter((r) => r.stream.includes(order.id));
                return mine.length >= 2 ? all : null;
            });
            const mine = seen.filter((r) => r.stream.includes(order.id));
            assert.deepEqual(mine.map((r) => r.type), ['OrderItemAdded', 'OrderPlaced'], 'the tail is not newest first');
            assert.ok(mine.every((r) => r.position), 'a tail row has no td.position');
            assert.ok(!seen.some((r) => r.stream.includes(customer.id)), 'the tail filtered on Order shows a Customer event');
            assert.equal(await text(status), 'live', '#tail-status after the events');
            await shot(page, 'tail.png');
        });
    });

    test('rebuild audit_log blue/green', { timeout: 120_000 }, async () => {
        await withPage(await operatorSession(), 'rebuild', async (page) => {
            const path = '/console/projections/audit_log';
            let before = null;
            await eventually('audit_log to have a live build', 60_000, async () => {
                await open(page, path);
                before = await liveBuild(page);
                return before;
            });
            const form = page.locator('form.action[data-action=rebuild]');
            assert.equal(await form.count(), 1, 'no form.action[data-action=rebuild]');
            await checkCsrfInput(form, 'the rebuild form');
            const { first, final } = await navigate(page, () => form.locator('button[type=submit]').first().click(), 'rebuild');
            assert.equal(first.status(), 303, 'the rebuild answered no 303');
            assert.equal(pathOf(final.url()), path, 'the rebuild did not lead back to the projection');
            assert.equal(await page.locator('p.flash').count(), 1, 'no p.flash after the rebuild');
            const errors = await page.locator('p.error').allTextContents();
            assert.deepEqual(errors, [], 'an error after the rebuild');

            const now = await eventually(`a build other than ${before} to go live`, 60_000, async () => {
                await open(page, path);
                const live = await liveBuild(page);
                return live && live !== before ? live : null;
            }, 1_000);
            const old = page.locator(`#builds tr.build[data-build="${before}"]`);
            if ((await old.count()) > 0) {
                const state = await old.getAttribute('data-state');
                assert.ok(['replaced', 'retired'].includes(state), `the old build ${before} is ${state}, not replaced or retired`);
            }
            assert.notEqual(now, before);
            await shot(page, 'projection.png');
        });
    });

    test('retry a recorded failure', { timeout: 150_000 }, async () => {
        await withPage(await operatorSession(), 'failure', async (page, dialogs) => {
            const event = await hostileEvent(page);
            const path = '/console/projections/order_summary';
            const row = page.locator(`#failures tr.failure[data-event-id="${event}"]`);
            // The failed time: td.failed-at, or a <time datetime>, if the row has one; else
            // the row's text without the attempts.
            const stamp = () =>
                row.evaluate((tr) => {
                    const cell = tr.querySelector('td.failed-at');
                    if (cell) return cell.textContent.trim();
                    const time = tr.querySelector('time[datetime]');
                    if (time) return time.getAttribute('datetime');
                    const copy = tr.cloneNode(true);
                    copy.querySelectorAll('td.attempts, form').forEach((el) => el.remove());
                    return copy.textContent.replace(/\s+/g, ' ').trim();
                });
            const attempts = async () => {
                const value = Number.parseInt(await text(row.locator('td.attempts')), 10);
                assert.ok(Number.isInteger(value), 'td.attempts is not a number');
                return value;
            };
            await eventually(`order_summary to record the failure of the hostile event ${event}`, 60_000, async () => {
                await open(page, path);
                return (await row.count()) === 1;
            }, 1_000);
            await checkNoXss(page, dialogs, 'the order_summary page');
            const attemptsBefore = await attempts();
            const stampBefore = await stamp();

            let retry = row.locator('form.action[data-action=retry]');
            if ((await retry.count()) === 0) retry = page.locator(`form.action[data-action=retry]:has(input[value="${event}"])`);
            if ((await retry.count()) === 0) retry = page.locator('form.action[data-action=retry]');
            assert.ok((await retry.count()) >= 1, 'no form.action[data-action=retry]');
            await checkCsrfInput(retry.first(), 'the retry form');
            const { first, final } = await navigate(page, () => retry.first().locator('button[type=submit]').first().click(), 'retry');
            assert.equal(first.status(), 303, 'the retry answered no 303');
            assert.equal(pathOf(final.url()), path, 'the retry did not lead back to the projection');
            assert.equal(await page.locator('p.flash').count(), 1, 'no p.flash after the retry');

            await eventually(`the failure to be retried (attempts ${attemptsBefore}, at ${stampBefore})`, 60_000, async () => {
                await open(page, path);
                if ((await row.count()) === 0) return false;
                return (await attempts()) > attemptsBefore || (await stamp()) !== stampBefore;
            }, 1_000);
            await checkNoXss(page, dialogs, 'the order_summary page');
            await shot(page, 'failure.png');

            await eventually(`customer_history to record the failure of the hostile event ${event}`, 60_000, async () => {
                await open(page, '/console/projections/customer_history');
                return (await page.locator(`#failures tr.failure[data-event-id="${event}"]`).count()) === 1;
            }, 1_000);
            await checkNoXss(page, dialogs, 'the customer_history page');
        });
    });

    test('a read-only session cannot act', async () => {
        const context = await newContext();
        try {
            await withPage(context, 'readonly', async (page) => {
                await login(page, READONLY_TOKEN, 'the read-only token');
                const path = '/console/projections/audit_log';
                await open(page, path);
                const live = await liveBuild(page);
                const all = await builds(page);
                const form = page.locator('form.action[data-action=rebuild]');
                assert.equal(await form.count(), 1, 'the read-only session sees no rebuild form');
                const { first } = await navigate(page, () => form.locator('button[type=submit]').first().click(), 'a read-only rebuild');
                assert.equal(first.status(), 403, 'a read-only rebuild');
                const error = page.locator('p.error');
                assert.equal(await error.count(), 1, 'the refusal has no p.error');
                assert.match(await text(error), /read[- ]only/i, 'the refusal does not say read-only');
                await shot(page, 'readonly-refused.png');

                const bearer = await page.request.post(at(`${path}/rebuild`), {
                    headers: { authorization: `Bearer ${READONLY_TOKEN}` },
                    maxRedirects: 0,
                });
                assert.equal(bearer.status(), 403, 'a rebuild with the read-only bearer token');

                await sleep(2_000);
                await open(page, path);
                assert.equal(await liveBuild(page), live, 'the live build changed');
                assert.deepEqual(await builds(page), all, 'a build was started');
            });
        } finally {
            await context.close();
        }
    });

    test('an action without its CSRF token is refused', async () => {
        await withPage(await operatorSession(), 'csrf', async (page) => {
            const path = '/console/projections/audit_log';
            await open(page, path);
            const live = await liveBuild(page);
            const all = await builds(page);

            for (const [what, form] of [['no csrf field', {}], ['a forged csrf', { csrf: `forged-${hex(16)}` }]]) {
                const response = await page.request.post(at(`${path}/rebuild`), { form, maxRedirects: 0 });
                assert.equal(response.status(), 403, `a rebuild with ${what}`);
                assert.match(await response.text(), /csrf/i, `the refusal of ${what} does not mention CSRF`);
                await checkCsp(response, `the refusal of ${what}`);
            }

            // The same through the page: the form, its token taken out.
            const form = page.locator('form.action[data-action=rebuild]');
            await form.locator('input[name=csrf]').evaluate((input) => input.remove());
            const { first } = await navigate(page, () => form.locator('button[type=submit]').first().click(), 'a rebuild without csrf');
            assert.equal(first.status(), 403, 'the rebuild form without its csrf input');
            assert.match(await text(page.locator('p.error')), /csrf/i, 'the refusal does not mention CSRF');
            await shot(page, 'csrf-refused.png');

            await sleep(2_000);
            await open(page, path);
            assert.equal(await liveBuild(page), live, 'the live build changed');
            assert.deepEqual(await builds(page), all, 'a build was started');
        });
    });

    test('hostile payloads show as text', async () => {
        const look = async (context, name, screenshots) =>
            withPage(context, name, async (page, dialogs) => {
                await open(page, streamsUrl({ aggregate_type: 'Order', aggregate_id: HOSTILE_ID }));
                const rows = page.locator('table#events tr.event');
                assert.equal(await rows.count(), 1, `Order/${HOSTILE_ID}: not its one event`);
                const id = await rows.first().getAttribute('data-event-id');
                if (process.env.HOSTILE_EVENT_ID) assert.equal(id, process.env.HOSTILE_EVENT_ID, 'the hostile event id');
                assert.equal(await text(rows.first().locator('td.type')), 'OrderPlaced');
                await checkNoXss(page, dialogs, `${name}: the stream page`);
                if (screenshots) await shot(page, 'hostile-stream.png', false);

                await navigate(page, () => rows.first().locator('a.event-link').click(), 'the hostile event link');
                assert.equal(pathOf(page.url()), `/console/events/${id}`);
                assert.equal(await page.locator('main#event').count(), 1, 'no main#event');
                await checkNoXss(page, dialogs, `${name}: the event page`);
                const payload = (await page.locator('pre#payload').textContent()) ?? '';
                for (const key of ['script', 'attribute', 'quote', 'pre']) {
                    // The attribute string shows JSON-escaped: \"><img ... \">.
                    const literal = key === 'attribute' ? '<img src=x onerror=' : HOSTILE[key];
                    assert.ok(payload.includes(literal), `#payload does not show ${JSON.stringify(literal)} as text`);
                }
                assert.equal(await page.locator('pre#payload *:is(script, img, iframe, svg)').count(), 0, '#payload holds markup');
                const metadata = (await page.locator('pre#metadata').textContent()) ?? '';
                assert.ok(metadata.includes(HOSTILE.metadata), `#metadata does not show ${HOSTILE.metadata} as text`);
                const correlation = page.locator('a#correlation');
                assert.equal(await correlation.count(), 1, 'the hostile event has a correlation id but no a#correlation');
                if (process.env.HOSTILE_CORRELATION_ID) {
                    const target = new URL(await correlation.evaluate((a) => a.href));
                    assert.equal(target.searchParams.get('correlation_id'), process.env.HOSTILE_CORRELATION_ID);
                }
                assert.equal(await page.locator('a#causation').count(), 0, 'the hostile event has no causation id, yet an a#causation');
                if (screenshots) await shot(page, 'hostile-event.png', false);
                await sleep(500); // an onerror handler would have fired by now
                await checkNoXss(page, dialogs, `${name}: the event page, after a while`);
            });

        // As shipped, under the console's CSP...
        await look(await operatorSession(), 'hostile', true);
        // ...and with the CSP bypassed: the escaping alone must hold.
        const bare = await newContext({ bypassCSP: true });
        try {
            await withPage(bare, 'hostile-login', (page) => login(page, TOKEN, 'the operator token (CSP bypassed)'));
            await look(bare, 'hostile-no-csp', false);
        } finally {
            await bare.close();
        }
    });

    test('log out', async () => {
        const context = await newContext();
        try {
            await withPage(context, 'logout', async (page) => {
                await login(page, TOKEN, 'a second operator session');
                const form = page.locator('form#logout');
                await navigate(page, () => form.locator(SUBMIT).first().click(), 'logout');
                await open(page, '/console/', 401);
                assert.equal(await page.locator('form#login').count(), 1, 'no form#login after the logout');
            });
        } finally {
            await context.close();
        }
        // The operator's own session is another and still works.
        await withPage(await operatorSession(), 'after-logout', async (page) => {
            await open(page, '/console/');
        });
        assert.deepEqual(dialogLog, [], 'dialogs opened');
    });
});
